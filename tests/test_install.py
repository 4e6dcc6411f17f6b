"""Packaging and extras: the wheel holds every package and frontend file, a missing extra's
module fails with the install command, and a fresh virtual environment with only the [torch]
extra logs, reads back, shows and exports PyTorch activations without TensorFlow, Keras or JAX."""

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

from tb_activations.format import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_ONLY_SCRIPT = os.path.join(REPO, "tests", "torch_only_venv.py")
# What a checkout holds beside its sources; tb_activations/static is a developer's symlink to
# frontend/ (the wheel maps the package onto frontend/ itself).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "runs", "test-output",
                                     "results", "static")


def setuptools_config():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as file:
        return tomllib.load(file)["tool"]["setuptools"]


def test_every_package_under_tb_activations_is_listed_for_the_wheel():
    on_disk = {os.path.relpath(root, REPO).replace(os.sep, ".")
               for root, _, files in os.walk(os.path.join(REPO, "tb_activations"))
               if "__init__.py" in files}
    assert set(setuptools_config()["packages"]) == on_disk | {"tb_activations.static"}


def test_every_frontend_file_is_package_data():
    patterns = setuptools_config()["package-data"]["tb_activations.static"]
    frontend = os.path.join(REPO, "frontend")
    shipped = [os.path.relpath(os.path.join(root, name), frontend)
               for root, _, files in os.walk(frontend) for name in files
               if name != "__init__.py" and not name.endswith(".pyc")]
    assert shipped and [path for path in shipped
                        if not any(fnmatch.fnmatch(path, pattern) for pattern in patterns)] == []


BLOCKED_IMPORT = """
import sys
sys.modules[sys.argv[1]] = None  # as if that package were not installed
import tb_activations as tba
from tb_activations import cli
{}
"""


@pytest.mark.parametrize("missing, use, extra", [
    ("keras", "tba.ActivationsCallback", "[tensorflow]' (or [jax], or keras with torch)"),
    ("tensorflow", "tba.log_activations", "[tensorflow]' (or [jax], or keras with torch)"),
    ("torch", "import tb_activations.torch", "tb_activations.torch needs PyTorch: pip install "
                                             "'tb-activations[torch]'"),
    ("lightning", "import tb_activations.torch.lightning",
     "tb_activations.torch.lightning needs PyTorch Lightning: pip install "
     "'tb-activations[lightning]'"),
    ("pytorch_lightning", "import tb_activations.torch.pytorch_lightning",
     "tb_activations.torch.pytorch_lightning needs PyTorch Lightning under its older name: pip "
     "install 'tb-activations[torch]' pytorch-lightning"),
    ("PIL", "sys.exit(cli.main(['export', '--logdir', '.', '--out', 'out']))",
     "exporting activations needs Pillow: pip install 'tb-activations[export]'"),
    ("sklearn", "sys.exit(cli.main(['demo', '--no-serve', '--logdir', 'unused']))",
     "pip install 'tb-activations[demo]'"),
])
def test_a_missing_extra_fails_with_the_command_that_installs_it(tmp_path, missing, use, extra):
    result = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT.format(use), missing],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO, COLUMNS="300"))
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert extra in output and "no module named '%s'" % missing in output
    assert ("error: " if "cli.main" in use else "ImportError: ") in output
    assert not os.listdir(tmp_path)


def torch_requirement():
    """The running interpreter's torch release, so pip takes the build it already has on disk
    or in its cache instead of downloading another."""
    import torch

    return "torch==" + torch.__version__.partition("+")[0]


@pytest.fixture
def torch_only_python(tmp_path):
    """The python of a fresh venv with only `pip install "<this checkout>[torch]"`, not
    editable, so what is tested is what the wheel holds; removed after (a CUDA torch is 5 GB)."""
    source, venv = tmp_path / "source", tmp_path / "venv"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = str(venv / "bin" / "python")
        pip = subprocess.run([python, "-m", "pip", "install", "%s[torch]" % source,
                              torch_requirement()], capture_output=True, text=True,
                             timeout=1800, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        assert pip.returncode == 0, (pip.stdout + pip.stderr)[-4000:]
        print("fresh [torch] venv installed in %.0f s" % (time.monotonic() - started))
        yield python
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def test_the_torch_extra_alone_logs_reads_serves_and_exports(tmp_path, torch_only_python):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([torch_only_python, TORCH_ONLY_SCRIPT, str(logdir)],
                            capture_output=True, text=True, cwd=str(tmp_path), env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["torch"].partition("+")[0] == torch_requirement().partition("==")[2]
    layers = summary["layers"]
    assert layers == ["0", "1", "2", "3", "5"]  # Flatten (4) computes no new value
    assert summary["loaded_frameworks"] == []
    assert "'tb-activations[tensorflow]'" in summary["keras_error"]
    for run, steps in (("plain", [0, 1]), ("writer", [2])):
        loaded = summary["loader_steps"][run]
        assert {layer: loaded.get(metadata.layer_tag(layer)) for layer in layers} == {
            layer: steps for layer in layers}
        assert summary["reader_steps"][run] == [[layer, step] for layer in layers
                                                for step in steps]
    assert summary["entry_point_is_ours"] and "ActivationsLoader" in summary["dynamic_plugins"]
    assert summary["tab_runs"] == {"plain": len(layers), "writer": len(layers)}
    frontend = os.path.join(REPO, "frontend")
    assert summary["static_files"] == sorted(
        [name for name in os.listdir(frontend) if name.endswith((".js", ".css"))]
        + ["views/" + name for name in os.listdir(os.path.join(frontend, "views"))
           if name.endswith(".js")])
    assert summary["index_js_bytes"] == os.path.getsize(os.path.join(frontend, "index.js"))

    command = os.path.join(os.path.dirname(torch_only_python), "tb-activations")
    subprocess.run([command, "export", "--logdir", str(logdir), "--out", str(tmp_path / "out"),
                    "--steps", "last", "--format", "png"], check=True, env=env, timeout=600)
    figures = sorted(path.relative_to(tmp_path / "out").as_posix()
                     for path in (tmp_path / "out").rglob("*.png"))
    assert figures == ["%s/%s/step-%06d_sample-%d.png" % (run, layer, step, sample)
                       for run, step in (("plain", 1), ("writer", 2)) for layer in layers
                       for sample in (0, 1)]
