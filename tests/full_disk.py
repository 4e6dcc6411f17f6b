"""Filling the tiny_disk fixture's file system (conftest.py)."""

import contextlib
import os


def fill(folder, leaving):
    """Fills `folder`'s file system up to `leaving` free bytes; the filler's path."""
    filler = folder / "filler"
    space = os.statvfs(folder)
    with open(filler, "wb") as file, contextlib.suppress(OSError):  # ENOSPC for leaving=0
        file.write(b"\0" * (space.f_bavail * space.f_frsize - leaving))
    return filler
