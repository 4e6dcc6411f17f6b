"""`tba.export` / `tb-activations export`: a logdir's activations as PNG, GIF, npz and one HTML
page. Imports no framework.
"""
