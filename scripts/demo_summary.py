"""Print what `make demo` made: the pair, matching accuracy, DEM accuracy, and where the files are."""

import json
import sys
from pathlib import Path

demo = Path(sys.argv[1])
pair = json.loads((demo / "report.json").read_text())
match = json.loads((demo / "match_report.json").read_text())
dem = json.loads((demo / "dem_report.json").read_text())
refine = json.loads((demo / "refine_report.json").read_text())
matcher = (demo / "matchpair.log").read_text().split("matcher: ")[1].split()[0]
print(f"pair: overlap {pair['overlap_fraction']:.2f}, intersection angle "
      f"{pair['intersection_angle_deg']['median']:.1f} deg, {pair['height_sensitivity_m_per_px']['median']:.2f} m "
      "of height per pixel of disparity")
found = refine["corrections"]["secondary"]
recovered = ", ".join(f"{name.replace('_', ' ')} {v['px']:+.2f} px (± {v['sd_px']:.2f})" for name, v in found.items())
mis = refine["misclosure_px"]
print("refinement: the secondary's model was made 6 lines late and 3 samples far (azimuth offset +6 px, range "
      "offset +3 px)")
print(f"  recovered: {recovered or 'nothing'}; misclosure {mis['before']['median_abs']:.2f} -> "
      f"{mis['after']['median_abs']:.2f} lines, {refine['tie_points_used']} tie points, {refine['seconds']:.1f} s")
a = match["accuracy_at_px"]
print(f"matching ({matcher}): accuracy at 1/3/5/10 px {a['1']:.3f} / {a['3']:.3f} / {a['5']:.3f} / {a['10']:.3f}, "
      f"coverage {match['coverage']:.3f}")
print("DEM against the source DEM:")
print("  | median abs error | NMAD | RMSE | LE90 | blunder share | coverage | within 1 m | 2 m | 5 m | 10 m | 20 m |")
f = dem["fraction_within_m"]
print(f"  | {dem['median_abs_error_m']:.2f} m | {dem['nmad_m']:.2f} m | {dem['rmse_m']:.2f} m | {dem['le90_m']:.2f} m "
      f"| {dem['blunder_share']:.4f} | {dem['coverage']:.3f} | "
      + " | ".join(f"{f[t]:.3f}" for t in ("1", "2", "5", "10", "20")) + " |")
print(f"outputs in {demo}:")
for name in ("reference.tif", "secondary.tif", "ground_truth.tif", "source_dem.tif", "matches.tif", "dem.tif",
             "count.tif", "uncertainty.tif", "quality.tif", "error.tif", "dem_report.json", "dem_report.html",
             "dem_report.png", "match_report.json", "report.json", "footprints.gpkg", "secondary_biased.sensor.json",
             "reference_refined.sensor.json", "secondary_refined.sensor.json", "tie_points.gpkg", "refine_report.html"):
    print(f"  {demo / name}")
