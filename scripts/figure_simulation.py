"""Figure of a simulated SAR stereo pair over a real Alpine DEM.

Usage: python scripts/figure_simulation.py OUT.png [--dem DEM.tif]

Panels: the reference (35 degrees) and secondary (55 degrees) amplitude images in dB (grey,
2-98 % stretch), and the ground truth in the reference geometry: valid correspondences, layover,
shadow, and pixels that do not see the DEM. The DEM defaults to the Oetztal clip in
../shared/data/dem (or $SARSTEREO_SHARED_DATA/dem), else the embedded Jacksboro DEM.
"""

import argparse
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.simulate import simulate_pair  # noqa: E402

SHARED = Path(os.environ.get("SARSTEREO_SHARED_DATA", ROOT.parent / "shared" / "data"))
DESIGN = FlightDesign(altitude_m=12000.0, reference_incidence_deg=35.0, secondary_incidence_deg=55.0,
                      pixel_spacing_m=5.0, rows=800, cols=800)
CLASSES = [("no match (secondary misses it)", "#9e9e9e"), ("valid ground truth", "#f5f5f5"),
           ("layover", "#d62728"), ("shadow", "#1f4e9c"), ("outside the DEM", "#000000")]


def db_image(amplitude):
    db = 20.0 * np.log10(np.maximum(amplitude, 1e-6))
    lo, hi = np.percentile(db, [2, 98])
    return db, lo, hi


def truth_classes(bands):
    """0 no match, 1 valid, 2 layover, 3 shadow, 4 outside the DEM."""
    out = np.where(bands[2] == 1, 1, 0)
    out[bands[4] == 1] = 2
    out[bands[5] == 1] = 3
    out[np.isnan(bands[4])] = 4
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--dem", help="DEM raster (default: the Oetztal clip)")
    args = parser.parse_args()
    dem = args.dem or SHARED / "dem" / "oetztal_srtm3.tif"
    if not Path(dem).exists():
        print(f"{dem} not found: using the embedded Jacksboro DEM", file=sys.stderr)
        dem = None
    result = simulate_pair(dem, DESIGN, looks=4, seed=1, return_arrays=True)
    a, stats = result.arrays, result.stats
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.6), constrained_layout=True)
    for ax, role, inc in zip(axes, ("reference", "secondary"), (DESIGN.reference_incidence_deg,
                                                                 DESIGN.secondary_incidence_deg)):
        db, lo, hi = db_image(a[role]["amplitude"])
        ax.imshow(db, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{role}: {inc:g} deg incidence\n4 looks, amplitude in dB, 2-98 % stretch")
        ax.set_xlabel("range sample (far range to the right)")
        ax.set_ylabel("azimuth line")
    classes = truth_classes(a["ground_truth"])
    axes[2].imshow(classes, cmap=ListedColormap([c for _, c in CLASSES]), vmin=-0.5, vmax=len(CLASSES) - 0.5,
                   interpolation="nearest")
    axes[2].set_title(f"ground truth in the reference geometry\nvalid {stats['valid_fraction']:.0%}, "
                      f"layover {stats['layover_fraction']:.1%}, shadow {stats['shadow_fraction']:.1%} "
                      "(of pixels seeing the DEM)")
    axes[2].legend(handles=[Patch(color=c, label=n) for n, c in CLASSES], loc="lower left", fontsize=8,
                   framealpha=0.9)
    fig.suptitle(f"Simulated SAR stereo pair over {Path(str(dem or 'Jacksboro (default DEM)')).name}, "
                 f"level flight at {DESIGN.altitude_m:g} m, {DESIGN.pixel_spacing_m:g} m pixels")
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
