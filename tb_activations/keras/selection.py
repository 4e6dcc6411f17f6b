"""Which layers a Keras model has (as `outer/inner` paths) and which of them the user asked
for (the rules for `layers=` are path_selection's)."""

import keras

from tb_activations.capture import path_selection

# Layers whose output is a copy, reshape or pad of their input at inference: drawing them
# again costs bytes and shows nothing new, so the default selection skips them.
PASS_THROUGH_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Identity", "Masking",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
    "GaussianDropout", "GaussianNoise", "ActivityRegularization",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
) if hasattr(keras.layers, name))


def child_layers(layer):
    # Keras 3 tracks sublayers of Models and of composite custom layers alike here.
    return list(layer._flatten_layers(include_self=False, recursive=False))


def walk_layers(model):
    """[(path, layer)] for every layer inside `model`, depth first, each layer object once.

    A nested model or composite layer comes before its own sublayers, whose paths are
    prefixed with its path and a slash.
    """
    found = []
    seen = set()

    def visit(layer, prefix):
        for child in child_layers(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + child.name
            found.append((path, child))
            visit(child, path + "/")

    visit(model, "")
    return found


def is_container(layer):
    """A nested model: its output is already drawn as its last inner layer's."""
    return isinstance(layer, keras.Model) and bool(child_layers(layer))


def is_default_layer(layer):
    return not isinstance(layer, PASS_THROUGH_LAYERS) and not is_container(layer)


def recurrent_step_paths(candidates):
    """Paths inside recurrent layers (their cells): a cell's first call is one time step,
    not the sequence the RNN layer itself outputs, so the default selection leaves it out."""
    prefixes = tuple(path + "/" for path, layer in candidates
                     if isinstance(layer, keras.layers.RNN))
    return {path for path, _ in candidates if prefixes and path.startswith(prefixes)}


def select_layers(candidates, layers=None):
    """The (path, layer) pairs of `candidates` picked by `layers`, in candidates' order.

    `layers` is None (the default selection: every layer that computes a new value), or one
    or a list of items as in path_selection.select.
    """
    if layers is None:
        steps = recurrent_step_paths(candidates)
        chosen = [(path, layer) for path, layer in candidates
                  if is_default_layer(layer) and path not in steps]
        if not chosen:
            raise ValueError("the model has no layer that computes a new value; its layers are: "
                             + path_selection.describe([path for path, _ in candidates]))
        return chosen
    return path_selection.select(candidates, layers)
