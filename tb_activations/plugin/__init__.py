"""The Activations tab's backend, a dynamic TensorBoard plugin (see docs/http_api.md).

loader.py     the entry point TensorBoard loads: flags, keep every step
backend.py    the plugin: its routes, reading through TensorBoard's data provider
queries.py    what a request may ask, checked; errors answered as JSON
answers.py    the JSON shapes of the answers, paged under a size cap
run_reader.py runs the Rust data server cannot key, read from their own event files
static_files.py  the bundled frontend, served by exact name
"""

from tb_activations.plugin.loader import ActivationsLoader

__all__ = ["ActivationsLoader"]
