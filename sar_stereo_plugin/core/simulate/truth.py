"""Ground truth: the one visible ground point of each reference pixel, and where the secondary sees it."""

import numpy as np

from .. import ellipsoid
from ..facets import cross3, dot3, llh3, normal3, surface3, unit3
from ..pixels import inside


def _project(model, x):
    """Exact image (row, col) of ECEF points (3, n), with the Jacobians d(row)/dX and d(col)/dX."""
    t, rng = model.ecef_to_time_range(x.T)
    ok = np.isfinite(t)
    tt = np.where(ok, t, model.orbit.span[0])
    p, v, a = (arr.T for arr in model.orbit.state(tt))
    d = x - p
    k = -model.range_rate
    r = np.sqrt(dot3(d, d))
    vd = dot3(v, d)
    dt_dx = -(v - k * d / r) / (dot3(a, d) - dot3(v, v) + k * vd / r)
    dr_dx = d / r - (vd / r) * dt_dx
    return (model.time_to_row(t), model.range_to_col(rng, t),
            dt_dx / model.line_interval_s, dr_dx / model.sample_spacing_m)


def _pixel_ground_points(model, img, pixels, iterations=3):
    """Ground point of each listed pixel: facet centroid, moved on the facets' mean plane until it
    projects exactly onto the pixel centre."""
    count = img.n_vis.ravel()[pixels]
    x = img.sum_x[:, pixels] / count + img.origin[:, None]
    normal = unit3(img.sum_normal[:, pixels])
    row, col = np.divmod(pixels, model.cols)
    for _ in range(iterations):
        r, c, g_r, g_c = _project(model, x)
        dr, dc = row - r, col - c
        # solve [g_r; g_c; normal] dx = [dr; dc; 0] (Cramer)
        gc_n, n_gr = cross3(g_c, normal), cross3(normal, g_r)
        det = dot3(g_r, gc_n)
        x = x + (dr * gc_n + dc * n_gr) / det
        if not np.nanmax(np.abs(dr) + np.abs(dc), initial=0.0) > 1e-6:
            break  # the linear step left ~ (1e-6 px)^2
    return x


def _onto_dem(model, dem, x, pixels, iterations=8, step_rad=1e-8):
    """Ground points (3, n) near the DEM moved onto its bilinear surface, still imaged at their
    pixel centres: Newton on (row, col, height - DEM) in geodetic coordinates, the DEM's slope by
    forward differences. NaN where it does not converge."""
    row, col = np.divmod(pixels, model.cols)
    lon, lat, h = llh3(x)
    out = np.full(x.shape, np.nan)
    todo = np.arange(row.size)
    for _ in range(iterations):
        lo, la, hh = lon[todo], lat[todo], h[todo]
        xyz, d_lon, d_lat = ellipsoid.geodetic_frame(lo, la, hh)
        r, c, g_r, g_c = _project(model, xyz.T)
        dem_h = dem.sample(np.degrees(lo), np.degrees(la))
        up = normal3(lo, la)
        a1, a2 = (np.stack([dot3(g, d_lon.T), dot3(g, d_lat.T), dot3(g, up)]) for g in (g_r, g_c))
        a3 = np.stack([(dem_h - dem.sample(np.degrees(lo + step_rad), np.degrees(la))) / step_rad,
                       (dem_h - dem.sample(np.degrees(lo), np.degrees(la + step_rad))) / step_rad, np.ones_like(hh)])
        b1, b2, b3 = row[todo] - r, col[todo] - c, dem_h - hh
        done = (np.abs(b1) + np.abs(b2) < 1e-7) & (np.abs(b3) < 1e-4)
        out[:, todo[done]] = xyz[done].T
        c23, c31, c12 = cross3(a2, a3), cross3(a3, a1), cross3(a1, a2)
        step = (b1 * c23 + b2 * c31 + b3 * c12) / dot3(a1, c23)  # Cramer's rule
        keep = ~done & np.all(np.isfinite(step), axis=0)
        todo = todo[keep]
        lon[todo], lat[todo], h[todo] = (v[keep] + dv[keep] for v, dv in zip((lo, la, hh), step))
        if not todo.size:
            break
    return out


def _secondary_visible(view, x, sec_rows):
    """Whether ground points are visible in a rendered view: all four surrounding facets are."""
    lon, lat, _ = llh3(x)
    foot = surface3(lon, lat, 0.0)
    line = (sec_rows + 0.5) / view.rows_per_line - 0.5 - view.index[0]
    m0 = np.floor(np.nan_to_num(line, nan=-10.0)).astype(np.int64)
    ok = (m0 >= 0) & (m0 + 1 < view.n_lines)
    n_cross = view.c_main.size
    result = ok.copy()
    for m in (m0, m0 + 1):
        m = np.clip(m, 0, view.n_lines - 1)
        sigma = dot3(foot - view.P[:, m], view.side[:, m])
        first, last = view.sigma_ends[0, m], view.sigma_ends[1, m]
        j = (sigma - first) / (last - first) * (n_cross - 1)
        j0 = np.floor(np.nan_to_num(j, nan=-10.0)).astype(np.int64)
        inside = (j0 >= 0) & (j0 + 1 < n_cross)
        j0 = np.clip(j0, 0, n_cross - 2)
        result &= inside & view.visible[m, j0] & view.visible[m, j0 + 1]
    return result


def ground_truth(ref_view, ref, sec_view, sec, dem, block=1_000_000):
    """Ground-truth bands (see the module doc), computed in blocks of reference pixels."""
    shape = (ref_view.model.rows, ref_view.model.cols)
    bands = np.full((6,) + shape, np.nan, np.float32)
    bands[2] = 0.0
    bands[4] = np.where(ref.seen, ref.layover, np.nan)
    bands[5] = np.where(ref.seen, ref.shadow, np.nan)
    extra = np.full((3,) + shape, np.nan)  # lon, lat, DEM height at the truth points
    pixels = np.flatnonzero(ref.single.ravel())
    errors = [np.zeros(0)]
    for start in range(0, pixels.size, block):
        errors.append(_truth_block(ref_view, ref, sec_view, dem, pixels[start:start + block],
                                   bands.reshape(6, -1), extra.reshape(3, -1)))
    errors = np.concatenate(errors)
    return {"bands": bands, "lonlat": extra[:2], "dem_height": extra[2],
            "surface_error_m": float(np.median(errors)) if errors.size else float("nan")}


def _truth_block(ref_view, ref, sec_view, dem, pixels, flat, extra):
    ref_model, sec_model = ref_view.model, sec_view.model
    x = _pixel_ground_points(ref_model, ref, pixels)
    lon, lat, h = ellipsoid.ecef_to_llh(x.T)
    # the facets' plane must stand for the DEM here (not at its edge or across a sharp crest)
    error = np.abs(h - dem.sample(lon, lat))
    on_dem = error <= max(0.5, 0.05 * ref_model.sample_spacing_m)
    # then the point goes onto the DEM itself (bilinear), along its pixel's range/Doppler circle;
    # one that has to move further than a range cell for it (grazing ground) is not kept
    x_d = _onto_dem(ref_model, dem, x[:, on_dem], pixels[on_dem])
    lon_d, lat_d, h_d = ellipsoid.ecef_to_llh(x_d.T)
    with np.errstate(invalid="ignore"):
        kept = np.sqrt(dot3(x_d - x[:, on_dem], x_d - x[:, on_dem])) <= ref_model.sample_spacing_m
    on_dem[on_dem] = kept
    x, lon, lat, h = x_d[:, kept], lon_d[kept], lat_d[kept], h_d[kept]
    t2, range2 = sec_model.ecef_to_time_range(x.T)
    r2, c2 = sec_model.time_to_row(t2), sec_model.range_to_col(range2, t2)
    valid = inside(r2, c2, (sec_model.rows, sec_model.cols))
    valid[valid] = _secondary_visible(sec_view, x[:, valid], r2[valid])
    good, on = pixels[on_dem][valid], pixels[on_dem]
    flat[0, good], flat[1, good], flat[2, good] = r2[valid], c2[valid], 1.0
    flat[3, on] = h
    for row, values in zip(extra, (lon, lat, dem.sample(lon, lat))):
        row[on] = values
    return error[on_dem]
