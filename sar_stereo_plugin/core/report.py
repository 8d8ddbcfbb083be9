"""The DEM accuracy report: JSON figures, a PNG figure and an HTML page that shows both.

The figure has the plots a reader of a DEM assessment expects: the share of cells under each
absolute-error threshold (as in the method's Figure 5), the error histogram, the DEM and its
error map side by side (the error on a diverging ramp with symmetric limits, so zero is white),
and the map of the blunders (cells whose error lies more than 3 NMAD from the median error), above
the reference in red, below it in blue.
matplotlib's object API is used without pyplot, so no GUI backend is touched.
"""

import base64
import html
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_outputs, final_name

_LABELS = {"median_abs_error_m": "median |error| (m)", "rmse_m": "RMSE (m)", "nmad_m": "NMAD (m)",
           "le90_m": "LE90 (m)", "mean_error_m": "mean error (m)", "median_error_m": "median error (m)",
           "blunder_share": "blunder share (|error - median| > 3 NMAD)", "coverage": "coverage",
           "cells_evaluated": "cells evaluated", "area_cells": "cells in the area"}


def report_siblings(path):
    """(figure, page) written beside a report ``path``: ``<stem>.png`` and ``<stem>.html``."""
    path = Path(path)
    return path.with_suffix(".png"), path.with_suffix(".html")


def write_dem_report(path, stats, heights, error, area, blunders=None):
    """Write ``path`` (JSON), and ``<stem>.png`` and ``<stem>.html`` beside it; return their paths.
    ``blunders``: -1 / 0 / +1 per cell (blunder below / none / above the reference), NaN outside."""
    figure, page = report_siblings(path)
    paths = {"figure": str(final_name(figure)), "html": str(final_name(page))}
    with atomic_outputs(path, figure, page) as (json_tmp, figure_tmp, page_tmp):
        _figure(heights, error, area, blunders, stats.get("blunder_share")).savefig(figure_tmp, dpi=110)
        page_tmp.write_text(_page(stats, figure_tmp), encoding="utf-8")
        json_tmp.write_text(json.dumps({**stats, **paths}, indent=2), encoding="utf-8")
    return paths


def _figure(heights, error, area, blunders=None, blunder_share=None):
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    e = error[area & np.isfinite(error)]
    a = np.abs(e)
    fig = Figure(figsize=(16, 8.5), layout="constrained")
    axes = fig.subplot_mosaic([["curve", "hist", "blunders"], ["dem", "error", "blunders"]])
    curve, hist, dem_ax, err_ax, blunder_ax = (axes[k] for k in ("curve", "hist", "dem", "error", "blunders"))
    top = max(20.0, float(np.percentile(a, 99))) if a.size else 20.0
    t = np.linspace(0.0, top, 400)
    share = np.searchsorted(np.sort(a), t, side="right") / max(a.size, 1)
    curve.plot(t, 100 * share, color="tab:blue")
    for mark in (1, 2, 5, 10, 20):
        curve.axvline(mark, color="0.85", lw=0.8, zorder=0)
    curve.set(xlabel="absolute height error threshold (m)", ylabel="cells within threshold (%)", ylim=(0, 100),
              xlim=(0, top), title="Share of cells under each error threshold")
    limit = float(np.percentile(a, 98)) if a.size else 1.0
    limit = max(limit, 1e-3)
    hist.hist(np.clip(e, -2 * limit, 2 * limit), bins=80, color="tab:gray")
    hist.set(xlabel="DEM - reference (m)", ylabel="cells", title="Error histogram")
    shown = dem_ax.imshow(heights, cmap="terrain", interpolation="nearest")
    fig.colorbar(shown, ax=dem_ax, label="height above ellipsoid (m)", shrink=0.8)
    dem_ax.set(title="DEM", xticks=[], yticks=[])
    shown = err_ax.imshow(np.where(area, error, np.nan), cmap="RdBu_r", vmin=-limit, vmax=limit,
                          interpolation="nearest")
    fig.colorbar(shown, ax=err_ax, label="DEM - reference (m)", shrink=0.8)
    err_ax.set(title="Error map", xticks=[], yticks=[])
    if blunders is not None:
        blunder_ax.imshow(blunders, cmap=ListedColormap(["#2166ac", "#d9d9d9", "#b2182b"]), vmin=-1.5, vmax=1.5,
                          interpolation="nearest")
    title = "Blunders (|error - median| > 3 NMAD)" + (f": {100 * blunder_share:.2f} %"
                                                      if blunder_share is not None else "")
    blunder_ax.set(title=title, xticks=[], yticks=[])
    blunder_ax.set_xlabel("red: above the reference, blue: below, grey: none")
    return fig


def _page(stats, figure):
    rows = [(label, stats.get(key)) for key, label in _LABELS.items()]
    rows += [(f"share within {t} m", v) for t, v in stats.get("fraction_within_m", {}).items()]
    rows += [(f"DEM cells: {name}", cells) for name, cells in (stats.get("elevation") or {}).get("quality", {}).items()]
    shift = stats.get("shift_m")
    rows.append(("shift to the reference, east / north / up (m; Nuth & Kääb)",
                 " / ".join(f"{shift[k]:.2f}" for k in ("dx", "dy", "dz")) if shift else None))
    table = "\n".join(f"<tr><th>{html.escape(label)}</th><td>{_fmt(value)}</td></tr>" for label, value in rows)
    image = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DEM accuracy: {html.escape(Path(stats['dem']).name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
th,td{{padding:2px 12px;border-bottom:1px solid #ddd;text-align:left}} td{{text-align:right}}</style></head>
<body><h1>DEM accuracy</h1>
<p>DEM <code>{html.escape(stats['dem'])}</code> against <code>{html.escape(str(stats['reference_dem']))}</code>
(resampled bilinearly onto the DEM's grid). Figures are over the cells of the imaged area where both have a
height; coverage is the share of the imaged area where the DEM has one.</p>
<table>{table}</table>
<img src="data:image/png;base64,{image}" alt="error curve, histogram, DEM and error map" style="max-width:100%">
</body></html>
"""


def _fmt(value):
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))
