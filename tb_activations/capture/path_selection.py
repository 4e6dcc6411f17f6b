"""Which of a model's (path, layer) pairs `layers=` picks, for any framework.

A framework's capture walks its model into (path, layer) candidates in call order and says
which ones its default selection keeps; the rules for names, path globs, classes and
predicates are the same everywhere.
"""

import fnmatch

_GLOB_CHARACTERS = set("*?[")


def matches(item, path, layer):
    """Whether one `layers=` item picks the layer at `path`."""
    if isinstance(item, str):
        if _GLOB_CHARACTERS & set(item):
            return fnmatch.fnmatchcase(path, item)
        return item == path or item == path.rsplit("/", 1)[-1]
    if isinstance(item, type):
        return isinstance(layer, item)
    return bool(item(layer))


def output_owners(names):
    """The layer paths that produce the outputs `names`: an output is named by its layer's
    path, or by that path, ":" and which of the layer's outputs it is."""
    names = set(names)
    return names | {name[:end] for name in names
                    for end, character in enumerate(name) if character == ":"}


def describe(paths, limit=40):
    """The first `limit` paths, comma-separated, and how many more there are."""
    shown = ", ".join(paths[:limit])
    more = len(paths) - limit
    return shown + (" ... and %d more" % more if more > 0 else "")


def select(candidates, layers):
    """The (path, layer) pairs of `candidates` picked by `layers`, in candidates' order.

    `layers` is one or a list of: a layer name, a full path, a path glob
    ("backbone/block_*"), a layer class, or a predicate taking the layer. Raises naming the
    item that matches nothing.
    """
    items = list(layers) if isinstance(layers, (list, tuple, set, frozenset)) else [layers]
    if not items:
        raise ValueError("layers= is an empty list: pass None for the default selection")
    for item in items:
        if not isinstance(item, (str, type)) and not callable(item):
            raise TypeError("layers= takes names, path globs, layer classes or predicates; "
                            "got %r of type %s" % (item, type(item).__name__))
    chosen = []
    for item in items:
        hits = [pair for pair in candidates if matches(item, *pair)]
        if not hits:
            raise ValueError("layers=%r matches no layer of the model; its layers are: %s"
                             % (item, describe([path for path, _ in candidates])))
        chosen.extend(hit for hit in hits if hit not in chosen)
    order = {path: index for index, (path, _) in enumerate(candidates)}
    return sorted(chosen, key=lambda pair: order[pair[0]])
