"""State vectors of products, made fit for the project's orbit interpolation.

:class:`..orbit.Orbit` interpolates between neighbouring state vectors with a cubic Hermite
polynomial: exact to well below a millimetre for vectors 10 s apart, but some products give one
every 60 s (ALOS / NISAR RSLC), where the cubic errs by about a metre along the track. Such lists
are densified here with the Hermite polynomial through the positions and velocities of the four
nearest vectors (degree 7), which follows an orbit to millimetres over those spans.
"""

import numpy as np
from scipy.interpolate import KroghInterpolator

MAX_SPACING_S = 10.0
NEIGHBOURS = 4


def densify(times, positions, velocities, max_spacing=MAX_SPACING_S):
    """(times, positions, velocities) with vectors added wherever two are more than ``max_spacing``
    seconds apart; the original vectors are kept as they are."""
    t, p, v = (np.asarray(a, np.float64) for a in (times, positions, velocities))
    if t.size < NEIGHBOURS or not (np.diff(t) > max_spacing).any():
        return t, p, v
    out = [[], [], []]
    for k in range(t.size - 1):
        parts = int(np.ceil((t[k + 1] - t[k]) / max_spacing))
        lo = min(max(k - NEIGHBOURS // 2 + 1, 0), t.size - NEIGHBOURS)
        idx = np.arange(lo, lo + NEIGHBOURS)
        x = np.repeat(t[idx] - t[k], 2)  # repeated nodes: value, then derivative
        dt = (t[k + 1] - t[k]) * np.arange(1, parts) / parts
        new_p, new_v = np.empty((dt.size, 3)), np.empty((dt.size, 3))
        for i in range(3):
            y = np.empty(2 * NEIGHBOURS)
            y[0::2], y[1::2] = p[idx, i], v[idx, i]
            hermite = KroghInterpolator(x, y)
            new_p[:, i], new_v[:, i] = hermite(dt), hermite.derivative(dt)
        for acc, a in zip(out, (np.concatenate([[t[k]], t[k] + dt]), np.vstack([p[k:k + 1], new_p]),
                                np.vstack([v[k:k + 1], new_v]))):
            acc.append(a)
    return (np.concatenate(out[0] + [t[-1:]]), np.vstack(out[1] + [p[-1:]]), np.vstack(out[2] + [v[-1:]]))
