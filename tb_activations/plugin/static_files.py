"""The frontend files shipped in the package, served by exact name."""

import importlib.resources
import re

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png"}
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)$")
# Frontend folders served besides the top level (one level deep, names as above).
_STATIC_FOLDERS = ("views",)


def static_files():
    """{name: (content type, bytes)} of the frontend files shipped in the package.

    Read once at load; requests pick from this table by exact name, so no request ever
    names a path on disk.
    """
    files = {}
    root = importlib.resources.files("tb_activations.static")
    for prefix, folder in [("", root)] + [(name + "/", root / name) for name in _STATIC_FOLDERS]:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _STATIC_NAME.match(entry.name)
            if entry.is_file() and match and match.group(1) in _STATIC_TYPES:
                files[prefix + entry.name] = (_STATIC_TYPES[match.group(1)], entry.read_bytes())
    return files
