"""Exception hierarchy of the core library.

One root, ``SarStereoError``; each subclass also inherits the builtin a caller would naturally
catch (``ValueError`` for bad metadata, ``OSError`` for unreadable files), as rasterio does.
"""


class SarStereoError(Exception):
    """Root of every error raised by sar_stereo_plugin.core."""


class SensorModelError(SarStereoError, ValueError):
    """A sensor model is missing, malformed or inconsistent. The message names file and field."""


class GeometryError(SarStereoError, ValueError):
    """A geometric computation cannot be carried out (time outside the orbit, no overlap, ...)."""


class RasterError(SarStereoError, OSError):
    """A raster cannot be read or written, or lacks what the step needs."""


def located(source, field, problem):
    """Format an error message as '<source>: field '<field>': <problem>'."""
    where = f"{source}: " if source else ""
    return f"{where}field '{field}': {problem}"
