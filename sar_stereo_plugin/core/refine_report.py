"""The refinement report's figure and HTML page (the JSON is the result itself)."""

import base64
import html
from pathlib import Path

import numpy as np


def write_figure(path, ties, before, after, used):
    """Misclosure before and after (histogram, and along the image), and DEM differences."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    (hist, along), (dem_hist, dem_map) = fig.subplots(2, 2)
    top = _limit(before[0][used], after[0][used])
    bins = np.linspace(-top, top, 81)
    for values, label, colour in ((before[0], "before", "tab:gray"), (after[0], "after", "tab:blue")):
        hist.hist(np.clip(values[used & np.isfinite(values)], -top, top), bins=bins, alpha=0.6, label=label,
                  color=colour)
    hist.set(xlabel="misclosure (secondary lines)", ylabel="tie points", title="Misclosure of the tie points")
    hist.legend()
    along.scatter(ties[0][used], before[0][used], s=3, color="tab:gray", label="before")
    along.scatter(ties[0][used], after[0][used], s=3, color="tab:blue", label="after")
    along.scatter(ties[0][~used], after[0][~used], s=6, marker="x", color="tab:red", label="rejected")
    along.set(xlabel="reference row", ylabel="misclosure (lines)", ylim=(-top, top), title="Misclosure along the image")
    along.legend(markerscale=3)
    if before[1] is not None:
        top = _limit(before[1][used], after[1][used])
        bins = np.linspace(-top, top, 81)
        for values, label, colour in ((before[1], "before", "tab:gray"), (after[1], "after", "tab:blue")):
            dem_hist.hist(np.clip(values[used & np.isfinite(values)], -top, top), bins=bins, alpha=0.6, label=label,
                          color=colour)
        dem_hist.set(xlabel="tie point height - reference DEM (m)", ylabel="tie points",
                     title="Height differences to the reference DEM")
        dem_hist.legend()
        shown = dem_map.scatter(ties[1][used], ties[0][used], c=after[1][used], s=4, cmap="RdBu_r", vmin=-top,
                                vmax=top)
        dem_map.invert_yaxis()
        fig.colorbar(shown, ax=dem_map, label="after (m)")
        dem_map.set(xlabel="reference column", ylabel="reference row", title="Height differences after")
    else:
        for ax in (dem_hist, dem_map):
            ax.set_axis_off()
        dem_hist.text(0.5, 0.5, "no reference DEM: heights not controlled", ha="center", va="center")
    fig.savefig(path, dpi=100, format="png")


def _limit(*arrays):
    values = np.abs(np.concatenate([a[np.isfinite(a)] for a in arrays]))
    return max(float(np.percentile(values, 99)) if values.size else 1.0, 0.5)


def write_page(path, result, figure_name, figure_file):
    """The HTML page: corrections with standard deviations, residuals before and after, the figure."""
    rows = []
    for role, terms in result.corrections.items():
        for name, v in terms.items():
            rows.append(f"<tr><td>{role}</td><td>{name}</td><td>{v['value']:.6g} {v['unit']}</td>"
                        f"<td>{v['sd']:.2g} {v['unit']}</td><td>{v['px']:.3f}</td><td>{v['sd_px']:.3f}</td></tr>")
    checks = [("misclosure (lines)", result.misclosure_px)]
    if result.dem_difference_m:
        checks.append(("height - reference DEM (m)", result.dem_difference_m))
    if result.gcp_difference_m:
        checks.append(("height - GCPs (m)", result.gcp_difference_m))
    resid = "".join(f"<tr><td>{html.escape(label)}</td>{_cells(d['before'])}{_cells(d['after'])}</tr>"
                    for label, d in checks)
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings) or "<li>none</li>"
    image = base64.b64encode(Path(figure_file).read_bytes()).decode("ascii")
    held = "; ".join(f"{k} ({v})" for k, v in result.unobservable.items()) or "none"
    Path(path).write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sensor-model refinement</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
th,td{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}}</style></head>
<body><h1>Sensor-model refinement</h1>
<p>{result.tie_points} tie points, {result.tie_points_used} used; coarse offset of the secondary
{result.coarse_offset_px['rows']:.2f} lines, {result.coarse_offset_px['cols']:.2f} samples; {result.iterations}
iterations, {result.seconds:.1f} s.</p>
<h2>Corrections</h2>
<table><tr><th>image</th><th>term</th><th>value</th><th>std. dev.</th><th>pixels</th><th>std. dev. (px)</th></tr>
{''.join(rows)}</table>
<p>Held fixed, and why: {html.escape(held)}</p>
<h2>Residuals</h2>
<table><tr><th></th><th colspan="2">before: median |.|, RMS</th><th colspan="2">after: median |.|, RMS</th></tr>
{resid}</table>
<h2>Warnings</h2><ul>{warn}</ul>
<img src="data:image/png;base64,{image}" alt="{html.escape(str(figure_name))}" style="max-width:100%">
</body></html>
""", encoding="utf-8")


def _cells(d):
    if not d:
        return "<td>&ndash;</td><td>&ndash;</td>"
    return f"<td>{d['median_abs']:.3f}</td><td>{d['rms']:.3f}</td>"
