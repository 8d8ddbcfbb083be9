"""Every exception the core library raises.

One root, ``SarStereoError``; each subclass also inherits the builtin a caller would naturally
catch (``ValueError`` for bad metadata or settings, ``OSError`` for unreadable files), as rasterio
does. ``Canceled`` is the one cancel every stage raises; the stage names are its subclasses.
"""


class SarStereoError(Exception):
    """Root of every error raised by sar_stereo_plugin.core."""


class SettingsError(SarStereoError, ValueError):
    """A setting or option has a value the step cannot work with; the message names it."""


class Canceled(SarStereoError):
    """The caller's ``is_canceled`` returned True; no output was written (the message says what
    was kept, e.g. a training checkpoint to resume from)."""


class SensorModelError(SarStereoError, ValueError):
    """A sensor model is missing, malformed or inconsistent. The message names file and field."""


class GeometryError(SarStereoError, ValueError):
    """A geometric computation cannot be carried out (time outside the orbit, no overlap, ...)."""


class RasterError(SarStereoError, OSError):
    """A raster cannot be read or written, or lacks what the step needs."""


class DatasetError(RasterError):
    """A dataset folder is missing, incomplete or not a dataset; the message says what to do."""


class MatcherUnavailable(SarStereoError, RuntimeError):
    """A matcher cannot run here (missing package, weights or device); the message says what to do."""


class InvalidMatcherOption(MatcherUnavailable, SettingsError):
    """An option of a matcher has a value it cannot work with; the message names it."""


class FinetuneError(SettingsError):
    """A fine-tuning input or option is unusable; the message names it and says what to do."""


# the cancel of each stage, by the name it had before ``Canceled`` was shared
class SimulationCanceled(Canceled):
    """Simulation canceled; no output was written."""


class MatchingCanceled(Canceled):
    """Matching canceled; no output was written."""


class ElevationCanceled(Canceled, GeometryError):
    """Elevation generation canceled; nothing was written."""


class DatasetCanceled(Canceled):
    """Dataset building canceled; nothing was written."""


class RefinementCanceled(Canceled):
    """Sensor-model refinement canceled; nothing was written."""


class ImportCanceled(Canceled):
    """Product import canceled; no output was written."""


class FinetuneCanceled(Canceled):
    """Fine-tuning canceled; ``last.pth`` holds the state at the cancel and resumes from there."""


def located(source, field, problem):
    """Format an error message as '<source>: field '<field>': <problem>'."""
    where = f"{source}: " if source else ""
    return f"{where}field '{field}': {problem}"
