"""capture.path_selection.output_owners against its definition, on names users write."""

import hypothesis
from hypothesis import strategies as st

from tb_activations.capture import path_selection

PARTS = st.text(alphabet="ab/:_.0", min_size=1, max_size=6)


@hypothesis.given(names=st.lists(PARTS, max_size=6), paths=st.lists(PARTS, max_size=8))
def test_a_layer_owns_the_outputs_named_by_its_path_or_its_path_and_a_colon(names, paths):
    owners = path_selection.output_owners(iter(names))  # any iterable, read once
    for path in paths + names:
        owns = any(name == path or name.startswith(path + ":") for name in names)
        assert (path in owners) == owns, path
