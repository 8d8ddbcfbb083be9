"""Vectorised kernels of the range/Doppler geometry shared by every step that uses it.

:func:`blockwise` runs a kernel over flat blocks of points (finite ones only), so ~50 work arrays
of a block stay in cache; :class:`Circle` is where an image point's target can lie: its range sphere
cut by its Doppler cone.
"""

import numpy as np

BLOCK = 1 << 14  # points per block: the ~50 work arrays of a block stay in cache, not RAM


def blockwise(func, *arrays, **kwargs):
    """Run func on flat blocks of same-shape arrays, only where all are finite; NaN elsewhere.

    func returns a tuple of 1-D arrays; the result is that tuple reshaped to the input shape.
    """
    shape = arrays[0].shape
    flat = [np.ravel(a) for a in arrays]
    ok = np.ones(flat[0].size, bool)
    for a in flat:
        ok &= np.isfinite(a)
    idx = None if ok.all() else np.flatnonzero(ok)
    count = ok.size if idx is None else idx.size
    outs = None
    for start in range(0, count, BLOCK):
        sel = slice(start, start + BLOCK) if idx is None else idx[start:start + BLOCK]
        res = func(*(a[sel] for a in flat), **kwargs)
        if outs is None:
            outs = [np.full(ok.size, np.nan) for _ in res]
        for o, r in zip(outs, res):
            o[sel] = r
    if outs is None:  # nothing finite: learn the number of outputs from an empty call
        outs = [np.full(ok.size, np.nan) for _ in func(*(a[:0] for a in flat), **kwargs)]
    return tuple(o.reshape(shape) for o in outs)


class Circle:
    """One image's geometry at given azimuth times and slant ranges, as component arrays.

    Range sphere |X - p| = rng and Doppler condition vhat.(X - p) = k rng (k the sine of the
    squint, -rdot / |v| for range rate ``rdot``; the model's own where not given) meet in a
    circle: centre p + k rng vhat, radius rng sqrt(1 - k^2), in the plane spanned by 'up' (p
    without its along-track part) and 'side' (towards the look side).
    """

    def __init__(self, model, t, rng, rdot=None):
        p, v = model.orbit.position(t), model.orbit.velocity(t)
        px, py, pz = (np.ascontiguousarray(p[:, i]) for i in range(3))
        speed = np.sqrt(v[:, 0] ** 2 + v[:, 1] ** 2 + v[:, 2] ** 2)
        vx, vy, vz = v[:, 0] / speed, v[:, 1] / speed, v[:, 2] / speed
        k = -(model.range_rate if rdot is None else rdot) / speed  # v.(X - p) = -rng * rdot
        pv = px * vx + py * vy + pz * vz
        self.p, self.v, self.rng = (px, py, pz), (vx, vy, vz), rng
        self.doppler = pv + k * rng  # Doppler plane: vhat.X = doppler
        off = k * rng
        self.centre = (px + off * vx, py + off * vy, pz + off * vz)
        self.rho = rng * np.sqrt(np.maximum(1.0 - k * k, 0.0))
        ux, uy, uz = px - pv * vx, py - pv * vy, pz - pv * vz
        un = np.sqrt(ux * ux + uy * uy + uz * uz)
        ux, uy, uz = ux / un, uy / un, uz / un
        sign = 1.0 if model.look_side == "right" else -1.0  # vhat x up points right
        self.up = (ux, uy, uz)
        self.side = (sign * (vy * uz - vz * uy), sign * (vz * ux - vx * uz), sign * (vx * uy - vy * ux))

    def cut(self, qx, qy, qz, radius, exact):
        """Circle coordinates (a along side, b along up) where a sphere crosses the circle.

        Of the two crossings take the one on the look side (a > 0), and of two such the lower
        (the other mirrors it above the platforms). Where the sphere misses the circle: NaN if
        ``exact``, else the circle's point nearest to the sphere.
        """
        (cx, cy, cz), (ux, uy, uz), (sx, sy, sz) = self.centre, self.up, self.side
        dx, dy, dz = cx - qx, cy - qy, cz - qz
        ds, du = dx * sx + dy * sy + dz * sz, dx * ux + dy * uy + dz * uz
        rho2 = self.rho * self.rho
        # |d + a side + b up|^2 = radius^2 with a^2 + b^2 = rho^2: the line ds a + du b = w
        w = 0.5 * (radius * radius - (dx * dx + dy * dy + dz * dz) - rho2)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = np.sqrt(ds * ds + du * du)
            ns, nu = ds / norm, du / norm
            foot = w / norm
            half2 = rho2 - foot * foot
            half = np.sqrt(np.where(half2 >= 0, half2, np.nan if exact else 0.0))
        a1, b1 = foot * ns - half * nu, foot * nu + half * ns
        a2, b2 = foot * ns + half * nu, foot * nu - half * ns
        first = np.where((a1 > 0) != (a2 > 0), a1 > 0, b1 < b2)
        return np.where(first, a1, a2), np.where(first, b1, b2)

    def point(self, a, b):
        (cx, cy, cz), (ux, uy, uz), (sx, sy, sz) = self.centre, self.up, self.side
        return cx + a * sx + b * ux, cy + a * sy + b * uy, cz + a * sz + b * uz
