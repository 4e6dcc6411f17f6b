"""Files an export writes: safe names, whole files only, and writers that grow a file step by
step (animations, arrays, the index) so that nothing of a run is held in memory.

Every file is written under a temporary name in its own folder and renamed when complete;
`Temporaries.remove_all` deletes whatever is unfinished when an export fails or is
interrupted, so a reader only ever sees whole files.
"""

import csv
import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile

import numpy as np

# Names Windows refuses whatever their extension ("nul.png" too).
_RESERVED = ({"CON", "PRN", "AUX", "NUL"} | {"COM%s" % i for i in "0123456789¹²³"}
             | {"LPT%s" % i for i in "0123456789¹²³"})
# Path separators, characters Windows forbids, and every control, format, surrogate or
# unassigned code point (Unicode category C*).
_FORBIDDEN = set('<>:"/\\|?*')
_MAX_NAME_BYTES = 96
_TEMPORARY_SUFFIX = ".part"


def _allowed(character):
    return character not in _FORBIDDEN and not unicodedata.category(character).startswith("C")


def _cut(name, limit):
    """`name` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def name_key(name):
    """What two names share when a case-insensitive, normalising file system (Windows,
    macOS) would take them for one file."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def safe_name(text, taken):
    """A file or folder name for `text` that common file systems accept, unique in `taken`.

    Separators, forbidden and control characters become "_", as do leading and trailing dots
    and spaces ("..", ".hidden"); Windows' reserved names (CON, NUL, COM1, ...) get a "_"
    in front; a name longer than _MAX_NAME_BYTES is cut and keeps a hash of `text`; a
    name whose key (name_key) is in `taken` gets "~2", "~3", .... The key of the returned
    name is added to `taken`.
    """
    name = "".join(c if _allowed(c) else "_" for c in unicodedata.normalize("NFC", text))
    name = re.sub(r"^[. ]+|[. ]+$", lambda match: "_" * len(match.group()), name) or "_"
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = _cut(name, _MAX_NAME_BYTES - 9) + "~" + digest
    unique, count = name, 1
    while name_key(unique) in taken:
        count += 1
        suffix = "~%d" % count
        unique = _cut(name, _MAX_NAME_BYTES - len(suffix)) + suffix
    taken.add(name_key(unique))
    return unique


class Temporaries:
    """The unfinished files of an export: each is created beside its final name (so the
    rename is atomic), and removed by remove_all if the export does not finish."""

    def __init__(self):
        self._paths = set()

    def create(self, final_path):
        """The path of a new, empty temporary file for `final_path`."""
        folder, name = os.path.split(final_path)
        handle, path = tempfile.mkstemp(prefix="." + name + ".", suffix=_TEMPORARY_SUFFIX,
                                        dir=folder)
        os.close(handle)
        self._paths.add(path)
        return path

    def finish(self, path, final_path):
        os.replace(path, final_path)
        self._paths.discard(path)

    def write(self, final_path, data):
        """Writes `data` (bytes) to `final_path` as a whole."""
        path = self.create(final_path)
        with open(path, "wb") as file:
            file.write(data)
        self.finish(path, final_path)

    def remove_all(self):
        for path in self._paths:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        self._paths.clear()


class GifWriter:
    """An animated GIF grown one frame at a time: each frame ("P" image, all on one palette)
    is encoded by Pillow and appended to the temporary file at once, so an animation of any
    number of steps holds one frame in memory."""

    def __init__(self, temporaries, final_path, frame_ms, comment):
        self._temporaries = temporaries
        self._final_path = final_path
        self._path = temporaries.create(final_path)
        self._frame_ms = frame_ms
        self._comment = comment
        self.frames = 0

    def add(self, frame):
        from PIL import GifImagePlugin

        chunks = []
        if not self.frames:
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0,
                                                              "comment": self._comment})
            chunks.extend(header)
        chunks.extend(GifImagePlugin.getdata(frame, duration=self._frame_ms))
        with open(self._path, "ab") as file:
            file.write(b"".join(chunks))
        self.frames += 1

    def close(self):
        with open(self._path, "ab") as file:
            file.write(b";")
        self._temporaries.finish(self._path, self._final_path)


class NpzWriter:
    """An .npz whose arrays grow by one row per step: rows are appended to spool files in a
    scratch folder, and the archive (arrays of shape (steps,) + row shape) is written from
    them at close, so memory holds one row."""

    def __init__(self, temporaries, final_path, scratch, constants):
        self._temporaries = temporaries
        self._final_path = final_path
        self._spools = {}
        self._scratch = tempfile.mkdtemp(dir=scratch)
        self._constants = constants
        self.rows = 0

    def add(self, **row):
        for key, value in row.items():
            value = np.asarray(value)
            if key not in self._spools:
                self._spools[key] = (value.dtype, value.shape,
                                     os.path.join(self._scratch, "%s.raw" % key))
            with open(self._spools[key][2], "ab") as file:
                file.write(value.tobytes())
        self.rows += 1

    def close(self):
        path = self._temporaries.create(self._final_path)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for key, value in self._constants.items():
                with archive.open(key + ".npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            for key, (dtype, shape, spool) in self._spools.items():
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (self.rows,) + shape}
                with archive.open(key + ".npy", "w", force_zip64=True) as member, \
                        open(spool, "rb") as source:
                    np.lib.format.write_array_header_1_0(member, header)
                    shutil.copyfileobj(source, member, 1 << 20)
        shutil.rmtree(self._scratch)
        self._temporaries.finish(path, self._final_path)


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): such text
# is written after a "'", which spreadsheets hide (a reader takes one leading "'" off).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def index_cell(value):
    """`value` as index.csv holds it: text a spreadsheet would run as a formula starts with "'"."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS + ("'",)):
        return "'" + value
    return value


class CsvIndex:
    """index.csv: one row per written file, with the real run and layer names it holds (see
    index_cell for names a spreadsheet would take for formulas)."""

    COLUMNS = ("run", "layer", "layer_class", "step", "sample", "format", "file")

    def __init__(self, temporaries, final_path):
        self._temporaries = temporaries
        self._final_path = final_path
        self._path = temporaries.create(final_path)
        self._file = open(self._path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)

    def add(self, **row):
        self._writer.writerow([index_cell(row.get(column, "")) for column in self.COLUMNS])

    def close(self):
        self._file.close()
        self._temporaries.finish(self._path, self._final_path)

    def abandon(self):
        self._file.close()
