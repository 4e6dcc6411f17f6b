"""The entry point TensorBoard loads (the `tensorboard_plugins` group): flags and sampling."""

from tensorboard.plugins import base_plugin

from tb_activations.format import metadata
from tb_activations.plugin import backend


class ActivationsLoader(base_plugin.TBLoader):
    """Keeps every activations step unless the user set `--samples_per_plugin activations=N`.

    TensorBoard keeps 10 steps per blob-sequence tag by default; a training run's
    activations are only useful with all of them.
    """

    def define_flags(self, parser):
        group = parser.add_argument_group(metadata.PLUGIN_NAME)
        group.add_argument(
            "--" + backend.LIVE_FLAG, choices=("true", "false"), default="true",
            help="Let the Activations tab run a run's saved model.keras on an input a user "
                 "draws or uploads (default: true). Set false on servers that must not run "
                 "models.")

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(metadata.PLUGIN_NAME, 0)

    def load(self, context):
        return backend.ActivationsPlugin(context)
