"""The import rules docs/architecture.md states, read from the source (no import is run), and
the public names that stay whatever the package's inside looks like."""

import ast
import importlib
import pathlib
import sys
import tomllib

import pytest

import tb_activations

PACKAGE = pathlib.Path(tb_activations.__file__).parent
REPO = PACKAGE.parent
FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "lightning", "pytorch_lightning")
# Stages that run where no framework is installed (the core install: the tab, the reader,
# export) or must not pay for one (rendering is pure numpy).
FRAMEWORK_FREE = ("format", "capture", "rendering", "writing", "reading", "exporting", "plugin")
# Framework packages of ours, which import their framework at the top.
FRAMEWORK_PACKAGES = tuple("tb_activations." + name
                           for name in ("keras", "tensorflow", "jax", "torch"))


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name, top_level_only):
    """The modules `name` imports ("a.b" for `from a import b` when a.b is one of ours),
    those inside functions too unless `top_level_only`."""
    tree = ast.parse(MODULES[name].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                child = "%s.%s" % (node.module, alias.name)
                found.add(child if child in MODULES else node.module)
    return found


def own_imports(name, top_level_only=False):
    return {module for module in imported_modules(name, top_level_only) if module in MODULES}


def import_cycle():
    """One import cycle among our modules (as a list of names), or None."""
    state = {}

    def visit(name, stack):
        state[name] = "open"
        for child in sorted(own_imports(name) - {"tb_activations"}):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child, stack + [child])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(MODULES):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def test_no_module_of_the_package_imports_itself_back():
    assert import_cycle() is None, " -> ".join(import_cycle())


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    """The rule above could pass by finding nothing: a made-up cycle must be found."""
    real = own_imports
    monkeypatch.setitem(globals(), "own_imports", lambda name, top_level_only=False: (
        real(name) | {"tb_activations.keras.log"} if name == "tb_activations.writing.events"
        else real(name)))
    cycle = import_cycle()
    assert cycle and "tb_activations.writing.events" in cycle


def top_level_closure(name):
    """Every module loaded by importing `name` (its parents' __init__ included), as far as
    our own modules' top-level imports tell."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        if current in MODULES:
            todo.extend(imported_modules(current, top_level_only=True))
    return seen


@pytest.mark.parametrize("stage", FRAMEWORK_FREE)
def test_framework_free_stages_load_no_framework(stage):
    names = [name for name in MODULES if name.startswith("tb_activations.%s" % stage)]
    assert names
    for name in names:
        loaded = top_level_closure(name)
        frameworks = sorted(module for module in loaded
                            if module.split(".")[0] in FRAMEWORKS
                            or module.startswith(FRAMEWORK_PACKAGES))
        assert not frameworks, "%s loads %s at import" % (name, ", ".join(frameworks))


def test_rendering_is_numpy_and_the_standard_library():
    """And python-isal, the PNGs' deflate where it has a wheel (zlib's elsewhere)."""
    for name in MODULES:
        if not name.startswith(("tb_activations.rendering", "tb_activations.format.layout")):
            continue
        third_party = {module.split(".")[0] for module in imported_modules(name, False)
                       if module.split(".")[0] not in ("tb_activations", "numpy", "isal")
                       and module.split(".")[0] not in sys.stdlib_module_names}
        assert not third_party, "%s imports %s" % (name, ", ".join(sorted(third_party)))

PUBLIC = {
    "tb_activations": ["ActivationRecord", "ActivationsCallback", "HeadNumbers",
                       "RenderOptions", "close", "export", "flush", "get_activations", "is_chief",
                       "log_activations", "log_reference", "read_activations", "read_heads",
                       "read_reference"],
    "tb_activations.torch": ["close", "flush", "get_activations", "log_activations",
                             "log_reference"],
    "tb_activations.torch.lightning": ["ActivationsCallback"],
    "tb_activations.torch.pytorch_lightning": ["ActivationsCallback"],
    "tb_activations.plugin": ["ActivationsLoader"],
    "tb_activations.cli": ["main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_stay(module):
    loaded = importlib.import_module(module)
    for name in PUBLIC[module]:
        assert callable(getattr(loaded, name)), "%s.%s" % (module, name)
    if hasattr(loaded, "__all__"):
        assert sorted(loaded.__all__) == sorted(PUBLIC[module])


def test_the_entry_points_name_the_public_names():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"tb-activations": "tb_activations.cli:main"}
    assert project["entry-points"]["tensorboard_plugins"] == {
        "activations": "tb_activations.plugin:ActivationsLoader"}
