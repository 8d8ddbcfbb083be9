"""Inputs read safely: regular files only, text bounded in size, JSON bounded in nesting.

A sidecar symlinked to /dev/zero would be read until memory runs out, a FIFO would block forever,
and deeply nested JSON overflows Python's recursion: each becomes the caller's error class with
the file named and what to do.
"""

import json
import os
import stat

from .errors import SarStereoError, SensorModelError, located

MAX_TEXT_BYTES = 64 << 20  # a sensor model, manifest or log: far below; a bigger file is not one


def regular(path, field="file", error=SensorModelError):
    """Refuse ``path`` where it exists and is neither a regular file nor a folder (a device, a FIFO,
    a socket): reading it could block or never end. Names that are not files pass (GDAL datasets)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise error(located(path, field, "is not a regular file (a device, FIFO or socket); give the file itself"))


def read_text(path, field="file", error=SensorModelError, limit=MAX_TEXT_BYTES):
    """The UTF-8 text of a regular file of at most ``limit`` bytes (a byte-order mark dropped)."""
    regular(path, field, error)
    try:
        if os.path.isdir(path):
            raise error(located(path, field, "is a folder; give the file itself"))
        if os.path.getsize(path) > limit:
            raise error(located(path, field, f"is {os.path.getsize(path) / 2**20:.0f} MB; a {field} is at most "
                                             f"{limit >> 20} MB, so this is not one"))
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except SarStereoError:
        raise
    except OSError as exc:
        raise error(located(path, field, f"cannot be read ({exc.strerror or exc})")) from None
    if len(data) > limit:
        raise error(located(path, field, f"is larger than {limit >> 20} MB, so this is not one"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(located(path, field, "is not UTF-8 text; give the JSON file")) from None


def parse_json(text, source, field="<root>", error=SensorModelError):
    """The JSON document in ``text`` (a byte-order mark dropped); errors name ``source``."""
    try:
        return json.loads(text.lstrip("\ufeff") if isinstance(text, str) else text)
    except json.JSONDecodeError as exc:
        raise error(located(source, field, f"cannot be read: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                                           f"{exc.msg})")) from None
    except RecursionError:
        raise error(located(source, field, "cannot be read: JSON nested too deeply to be what it should be")
                    ) from None


def read_json(path, field="file", error=SensorModelError, limit=MAX_TEXT_BYTES):
    """:func:`parse_json` of :func:`read_text`."""
    return parse_json(read_text(path, field, error, limit), str(path), field, error)
