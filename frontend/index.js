// placeholder until the tab lands
