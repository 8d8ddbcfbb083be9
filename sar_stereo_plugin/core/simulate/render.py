"""Rendering one view: facet energy summed into slant-range cells, shadow and layover flags."""

import numpy as np

from ..facets import cross3, dot3

CHUNK_FACETS = 800_000  # facets per processing chunk (bounds memory)


def _muhleman(cos_loc):
    """Muhleman's backscatter law sigma0(theta_loc); zero at and beyond grazing."""
    c = np.clip(cos_loc, 0.0, 1.0)
    s = np.sqrt(1.0 - c * c)
    return 0.0133 * c / (s + 0.1 * c) ** 3


class _Image:
    """Per-pixel sums of one view."""

    def __init__(self, model, ground_sums):
        self.model = model
        n = model.rows * model.cols
        self.intensity = np.zeros(n)
        self.area = np.zeros(n)
        self.n_vis = np.zeros(n, np.int32)
        self.n_hid = np.zeros(n, np.int32)
        self.n_lay = np.zeros(n, np.int32)
        self.layover_m = np.zeros(n)
        self.shadow_m = np.zeros(n)
        self.sum_x = np.zeros((3, n)) if ground_sums else None
        self.sum_normal = np.zeros((3, n)) if ground_sums else None
        self.origin = None

    def finish(self, a_ref, lines_per_row):
        shape = (self.model.rows, self.model.cols)
        self.intensity = (self.intensity / a_ref).reshape(shape)
        for name in ("area", "n_vis", "n_hid", "n_lay", "layover_m", "shadow_m"):
            setattr(self, name, getattr(self, name).reshape(shape))
        half = 0.5 * self.model.sample_spacing_m * lines_per_row  # half a pixel's range, all its lines
        self.seen = (self.n_vis + self.n_hid) > 0
        self.layover = self.layover_m > half
        self.shadow = ~self.layover & (self.shadow_m > half)
        self.single = (self.n_vis > 0) & (self.n_hid == 0) & (self.n_lay == 0)

    def arrays(self, amplitude, noise):
        return {"amplitude": amplitude, "intensity": self.intensity, "expected_intensity": self.intensity + noise,
                "area_m2": self.area, "seen": self.seen, "layover": self.layover, "shadow": self.shadow,
                "facets_visible": self.n_vis, "facets_hidden": self.n_hid}


def render(view, texture, options, keep_visibility=False, ground_sums=False, report=None):
    """Render one view: intensities, facet counts and (optionally) ground-point sums."""
    model = view.model
    img = _Image(model, ground_sums)
    n_cross = view.c_main.size
    if keep_visibility:
        view.visible = np.zeros((view.n_lines, n_cross), bool)
        view.sigma_ends = np.zeros((2, view.n_lines))
    if ground_sums:
        img.origin = view.main[0:3, view.main.shape[1] // 2, view.main.shape[2] // 2].copy()
    tau_px = options.layover_threshold_px * model.sample_spacing_m
    step = max(1, CHUNK_FACETS // n_cross)
    for i0 in range(0, view.n_lines, step):
        i1 = min(i0 + step, view.n_lines)
        f = _facets(view, texture, i0, i1, tau_px)
        _accumulate(img, f)
        if keep_visibility:
            view.visible[i0:i1] = f["visible"]
            view.sigma_ends[:, i0:i1] = f["sigma_ends"]
        if report is not None:
            report(i1 / view.n_lines)
    img.finish(view.az_ground_spacing() * model.sample_spacing_m, 1.0 / view.rows_per_line)
    return img


def _facets(view, texture, i0, i1, tau_m):
    """Everything about the facets of lines i0..i1-1 (arrays shaped lines x facets)."""
    n_cross = view.c_main.size
    a, b = max(i0 - 1, 0), min(i1 + 1, view.n_lines)  # one halo line each side for the normals
    x_all, pr, pc, foot = view.positions(view.main, n_cross, a, b)
    core = slice(i0 - a, i0 - a + (i1 - i0))
    grad_i = np.gradient(x_all, axis=1)[:, core]
    x = x_all[:, core]
    pr, pc, foot = pr[core], pc[core], foot[:, core]
    normal = view.sign * cross3(grad_i, np.gradient(x, axis=2))
    area = np.sqrt(dot3(normal, normal))
    normal = normal / area
    tau, rng, d = view.doppler_time(x, i0, i1)
    cos_loc = -dot3(normal, d) / rng
    # shadow: running maximum of tan(off-nadir) along each line, seeded by the terrain before it
    q = view.tan_off_nadir(x, i0, i1)
    finite = np.isfinite(q) & (q >= view.beam[0]) & (q <= view.beam[1])  # on the DEM and in the beam
    horizon = np.maximum.accumulate(np.where(finite, q, -np.inf), axis=1)
    before = np.empty_like(horizon)
    before[:, 0] = view.prefix_horizon(i0, i1)
    np.maximum(horizon[:, :-1], before[:, :1], out=before[:, 1:])
    visible = finite & (q >= before - 1e-10 * np.abs(before)) & (cos_loc > 0)
    # layover: the range is reached again by a visible facet clearly elsewhere on the line
    r_vis = np.where(visible, rng, -np.inf)
    prev_max = np.full_like(rng, -np.inf)
    prev_max[:, 1:] = np.maximum.accumulate(r_vis, axis=1)[:, :-1]
    r_vis[~visible] = np.inf
    next_min = np.full_like(rng, np.inf)
    next_min[:, :-1] = np.minimum.accumulate(r_vis[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fold = visible & ((prev_max - rng > tau_m) | (rng - next_min > tau_m))
    extent = np.nan_to_num(np.gradient(rng, axis=1))  # slant range each facet stands for, signed
    m = view.model
    energy = np.where(visible, _muhleman(cos_loc) * texture.sample(pr, pc) * area, 0.0)
    sigma = dot3(foot[:, :, [0, -1]] - view.P[:, i0:i1, None], view.side[:, i0:i1, None])
    return {"row": view.line_rows[i0:i1, None] + tau / m.line_interval_s,
            "col": (rng - m.first_sample_range_m) / m.sample_spacing_m,
            "energy": energy, "area": area, "visible": visible, "hidden": finite & ~visible,
            "fold": fold, "extent": extent, "x": x, "normal": normal, "sigma_ends": sigma.T}


def _accumulate(img, f):
    """Add the facets of one chunk into the image sums (only the band of rows they reach)."""
    rows, cols = img.model.rows, img.model.cols
    ir = np.rint(np.nan_to_num(f["row"], nan=-9.0))
    inside_row = (ir >= 0) & (ir < rows) & np.isfinite(f["col"])
    if not inside_row.any():
        return
    sel = np.flatnonzero(inside_row.ravel())
    ir = ir.ravel()[sel].astype(np.int64)
    col = f["col"].ravel()[sel]
    lo, hi = int(ir.min()), int(ir.max())
    base, n = lo * cols, (hi - lo + 1) * cols
    ic = np.rint(col).astype(np.int64)
    inside = (ic >= 0) & (ic < cols)
    idx = np.where(inside, (ir - lo) * cols + ic, n)  # n: a bin for facets off the image
    vis = f["visible"].ravel()[sel]
    band = slice(base, base + n)
    for target, mask in ((img.n_vis, vis), (img.n_hid, f["hidden"].ravel()[sel]), (img.n_lay, f["fold"].ravel()[sel])):
        target[band] += np.bincount(idx[mask], minlength=n + 1)[:n].astype(np.int32)
    idx_v = idx[vis]
    img.area[band] += np.bincount(idx_v, f["area"].ravel()[sel][vis], minlength=n + 1)[:n]
    # range extent in layover (the reversed sheet of each fold) and in shadow, in metres
    extent, hid, fold = f["extent"].ravel()[sel], f["hidden"].ravel()[sel], f["fold"].ravel()[sel]
    reversed_fold = fold & (extent < 0)
    img.layover_m[band] -= np.bincount(idx[reversed_fold], extent[reversed_fold], minlength=n + 1)[:n]
    img.shadow_m[band] += np.bincount(idx[hid], extent[hid], minlength=n + 1)[:n]
    # energy: nearest row, split linearly between the two nearest range cells
    energy, col_v, ir_v = f["energy"].ravel()[sel][vis], col[vis], ir[vis]
    c0 = np.floor(col_v)
    w = col_v - c0
    c0 = c0.astype(np.int64)
    for cc, weight in ((c0, 1.0 - w), (c0 + 1, w)):
        j = np.where((cc >= 0) & (cc < cols), (ir_v - lo) * cols + cc, n)
        img.intensity[band] += np.bincount(j, energy * weight, minlength=n + 1)[:n]
    if img.sum_x is not None:
        x = f["x"].reshape(3, -1)[:, sel][:, vis]
        normal = f["normal"].reshape(3, -1)[:, sel][:, vis]
        for c in range(3):
            img.sum_x[c, band] += np.bincount(idx_v, x[c] - img.origin[c], minlength=n + 1)[:n]
            img.sum_normal[c, band] += np.bincount(idx_v, normal[c], minlength=n + 1)[:n]


def speckle(rng, shape, looks):
    """Multiplicative speckle of L-look intensity: Gamma(L, 1/L), mean 1, variance 1/L."""
    return rng.gamma(float(looks), 1.0 / float(looks), size=shape)
