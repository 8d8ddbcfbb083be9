"""Platform trajectory from ECEF state vectors.

Positions are interpolated with a piecewise cubic Hermite polynomial that honours both the
positions and the velocities of the state vectors; velocity and acceleration are its
derivatives, so they stay consistent with the position. Times outside the span of the state
vectors raise ``GeometryError``: extrapolating an orbit is a silent error we refuse to make.
"""

import numpy as np
from scipy.interpolate import CubicHermiteSpline

from .errors import GeometryError


def within_span(t, span, what, advice=""):
    """Times ``t`` (seconds) as float64, refused where a finite one falls outside ``span`` (of ``what``)."""
    t = np.asarray(t, dtype=np.float64)
    finite = t[np.isfinite(t)]
    if finite.size and (finite.min() < span[0] or finite.max() > span[1]):
        raise GeometryError(f"time {finite.min():.6f}..{finite.max():.6f} s is outside {what} "
                            f"{span[0]:.6f}..{span[1]:.6f} s{advice}")
    return t


class Orbit:
    """Interpolated ECEF trajectory. Times are seconds after the model's reference epoch."""

    def __init__(self, time_s, position_m, velocity_m_s):
        self.time = np.asarray(time_s, dtype=np.float64)
        spline = CubicHermiteSpline(self.time, np.asarray(position_m, dtype=np.float64),
                                    np.asarray(velocity_m_s, dtype=np.float64), axis=0)
        self._pos, self._vel, self._acc = spline, spline.derivative(1), spline.derivative(2)

    @property
    def span(self):
        return float(self.time[0]), float(self.time[-1])

    def _check(self, t):
        return within_span(t, self.span, "the orbit's state vectors",
                           "; supply state vectors that cover the whole acquisition")

    def position(self, t):
        return self._pos(self._check(t))

    def velocity(self, t):
        return self._vel(self._check(t))

    def state(self, t):
        """Position, velocity and acceleration at times t, each of shape t.shape + (3,)."""
        t = self._check(t)
        return self._pos(t), self._vel(t), self._acc(t)
