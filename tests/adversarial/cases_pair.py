"""Attacks on sarstereo:inspectpair, sarstereo:refinepair, sarstereo:importproduct and
sarstereo:simulatepair."""

import json
import shutil

import numpy as np
import tools as t
from harness import case
from osgeo import gdal

POC = 2


# ================================================================ inspectpair
def inspect(ctx, **params):
    base = {"REFERENCE": ctx / "ref.tif", "SECONDARY": ctx / "sec.tif", "FOOTPRINTS": ctx / "fp.gpkg",
            "REPORT": ctx / "report.json"}
    return ctx.qgis("inspectpair", **{**base, **params})


def _inspected(ctx, answer):
    doc = json.loads((ctx / "report.json").read_text())
    return None if doc["overlap_fraction"] > 0.5 else f"overlap {doc['overlap_fraction']}"


@case("inspectpair", "the pair as it is", succeed=_inspected)
def plain(ctx):
    return inspect(ctx)


@case("inspectpair", "REPORT is the reference's sensor-model sidecar", refuse=r"REPORT.*sidecar.*REFERENCE")
def report_is_sidecar(ctx):
    return inspect(ctx, REPORT=ctx / "ref.sensor.json")


@case("inspectpair", "REPORT is the secondary image", refuse=r"REPORT.*SECONDARY")
def report_is_secondary(ctx):
    return inspect(ctx, REPORT=ctx / "sec.tif")


@case("inspectpair", "REPORT is a hard link of the secondary's sidecar", refuse=r"REPORT.*SECONDARY")
def report_hardlink_sidecar(ctx):
    return inspect(ctx, REPORT=t.hardlink(ctx / "sec.sensor.json", ctx / "r.json"))


@case("inspectpair", "REPORT is a symbolic link to the reference image", refuse=r"REPORT.*REFERENCE")
def report_symlink_reference(ctx):
    return inspect(ctx, REPORT=t.symlink(ctx / "ref.tif", ctx / "r.json"))


@case("inspectpair", "REPORT is the SECONDARY_MODEL file", refuse=r"REPORT.*SECONDARY_MODEL")
def report_is_model(ctx):
    model = shutil.copy(ctx / "sec.sensor.json", ctx / "s.json")
    return inspect(ctx, SECONDARY_MODEL=model, REPORT=model)


@case("inspectpair", "FOOTPRINTS is the DEM", refuse=r"FOOTPRINTS.*DEM")
def footprints_is_dem(ctx):
    shutil.copy(ctx / "dem.tif", ctx / "dem.gpkg")
    return inspect(ctx, DEM=ctx / "dem.tif", FOOTPRINTS=ctx / "dem.tif")


@case("inspectpair", "REPORT is a folder", refuse=r"REPORT.*folder")
def report_is_folder(ctx):
    (ctx / "r.json").mkdir()
    return inspect(ctx, REPORT=ctx / "r.json")


@case("inspectpair", "the same image as reference and secondary", refuse=r"same direction|same image")
def same_image(ctx):
    return inspect(ctx, SECONDARY=ctx / "ref.tif")


@case("inspectpair", "a reference model whose shape is not the image's", refuse=r"shape")
def model_shape(ctx):
    def edit(doc):
        doc["shape"]["cols"] += 40
    return inspect(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("inspectpair", "the secondary's look side is wrong", refuse=r"look_side")
def look_side(ctx):
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", t.opposite_look))


@case("inspectpair", "velocities that disagree with the positions", refuse=r"velocity")
def velocity(ctx):
    def edit(doc):
        doc["orbit"]["velocity_m_s"] = np.array(doc["orbit"]["velocity_m_s"])[:, [1, 0, 2]].tolist()
    return inspect(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("inspectpair", "a model JSON with a byte-order mark", succeed=_inspected)
def model_bom(ctx):
    return inspect(ctx, SECONDARY_MODEL=t.write_json(ctx / "s.json", t.model_doc(ctx / "sec.tif"), prefix="\ufeff"))


@case("inspectpair", "a model JSON nested 100 000 deep", refuse=r"s\.json.*(nested|JSON)")
def model_nested(ctx):
    (ctx / "s.json").write_text(t.nested_json())
    return inspect(ctx, SECONDARY_MODEL=ctx / "s.json")


@case("inspectpair", "a model JSON with an unknown field", refuse=r"field 'orbit.acceleration'")
def model_unknown_field(ctx):
    def edit(doc):
        doc["orbit"]["acceleration"] = [0, 0, 0]
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


@case("inspectpair", "a model with fewer than four state vectors", refuse=r"orbit\.time_s.*state vectors")
def model_three_vectors(ctx):
    def edit(doc):
        for key in ("time_s", "position_m", "velocity_m_s"):
            doc["orbit"][key] = doc["orbit"][key][:3]
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


@case("inspectpair", "a model with orbit times out of order", refuse=r"orbit\.time_s.*increase")
def model_times_unordered(ctx):
    def edit(doc):
        doc["orbit"]["time_s"][2], doc["orbit"]["time_s"][3] = doc["orbit"]["time_s"][3], doc["orbit"]["time_s"][2]
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


@case("inspectpair", "a model with a negative pixel spacing", refuse=r"range\.sample_spacing_m.*positive")
def model_negative_spacing(ctx):
    def edit(doc):
        doc["range"]["sample_spacing_m"] *= -1
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


@case("inspectpair", "a model with positions in kilometres", refuse=r"orbit\.position_m.*metres")
def model_positions_km(ctx):
    def edit(doc):
        doc["orbit"]["position_m"] = (np.array(doc["orbit"]["position_m"]) / 1000).tolist()
    return inspect(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("inspectpair", "a model with a local-time epoch", refuse=r"reference_epoch.*UTC")
def model_local_epoch(ctx):
    def edit(doc):
        doc["reference_epoch"] = doc["reference_epoch"].replace("Z", "+02:00")
    return inspect(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("inspectpair", "a model file that is empty", refuse=r"s\.json.*JSON")
def model_empty(ctx):
    (ctx / "s.json").write_text("")
    return inspect(ctx, SECONDARY_MODEL=ctx / "s.json")


@case("inspectpair", "a model file in Latin-1 with an accented name", refuse=r"s\.json.*(UTF-8|text)")
def model_latin1(ctx):
    (ctx / "s.json").write_bytes('{"schema": "sarstereo.sensor/1", "name": "Zürich"}'.encode("latin-1"))
    return inspect(ctx, SECONDARY_MODEL=ctx / "s.json")


@case("inspectpair", "the reference model's orbit does not cover the image", refuse=r"orbit.*cover|covering")
def orbit_short(ctx):
    def edit(doc):
        az = doc["azimuth"]
        az["first_line_time_s"] = doc["orbit"]["time_s"][-1] - 0.1
    return inspect(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("inspectpair", "a secondary of another area", refuse=r"overlap|GCPs")
def other_area(ctx):
    return inspect(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", t.moved_model))


@case("inspectpair", "a DEM far from the pair", either=r"DEM|cover|overlap",
      check=lambda ctx, a: None)
def dem_elsewhere(ctx):
    return inspect(ctx, DEM=t.crop_dem(ctx / "dem.tif", ctx / "far.tif", shift_deg=5.0))


@case("inspectpair", "a sidecar that is a FIFO", refuse=r"sensor\.json.*(regular|FIFO)", timeout=90)
def sidecar_fifo(ctx):
    image = t.rewrite_image(ctx / "sec.tif", ctx / "sec2.tif")
    t.set_item(image, "SARSTEREO_SENSOR", None)
    ds = gdal.OpenEx(str(image), gdal.OF_UPDATE)
    ds.SetMetadata({k: v for k, v in ds.GetMetadata().items() if k != "SARSTEREO_SENSOR"})
    ds = None
    image.with_suffix(".sensor.json").unlink()
    t.fifo(image.with_suffix(".sensor.json"))
    return ctx.isolated("""
        return qgis("inspectpair", REFERENCE=D / "ref.tif", SECONDARY=D / "sec2.tif", FOOTPRINTS=D / "fp.gpkg",
                    REPORT=D / "report.json")""", qgis=True, timeout=60)


# ================================================================ refinepair
def refine(ctx, **params):
    base = {"REFERENCE": ctx / "ref.tif", "SECONDARY": ctx / "sec.tif", "MATCHER": POC, "TIE_STEP": 8,
            "REFINED_REFERENCE_MODEL": ctx / "ref_refined.json", "REFINED_SECONDARY_MODEL": ctx / "sec_refined.json",
            "TIE_POINTS": ctx / "ties.gpkg", "REPORT": ctx / "refine.json"}
    return ctx.qgis("refinepair", **{**base, **params})


@case("refinepair", "the pair with its secondary model 3 lines late, refined", succeed=lambda ctx, a: None if (
    ctx / "sec_refined.json").exists() else "no refined model")
def plain(ctx):
    def edit(doc):
        doc["azimuth"]["first_line_time_s"] += 3 * doc["azimuth"]["line_interval_s"]
    return refine(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "late.json", edit))


@case("refinepair", "REFINED_REFERENCE_MODEL is the reference's sidecar", refuse=r"REFINED_REFERENCE_MODEL.*sidecar")
def refined_onto_sidecar(ctx):
    return refine(ctx, REFINED_REFERENCE_MODEL=ctx / "ref.sensor.json")


@case("refinepair", "REFINED_SECONDARY_MODEL is the SECONDARY_MODEL given",
      refuse=r"REFINED_SECONDARY_MODEL.*SECONDARY")
def refined_onto_model(ctx):
    model = shutil.copy(ctx / "sec.sensor.json", ctx / "s.json")
    return refine(ctx, SECONDARY_MODEL=model, REFINED_SECONDARY_MODEL=model)


@case("refinepair", "REPORT is the reference image", refuse=r"REPORT.*REFERENCE")
def report_onto_reference(ctx):
    return refine(ctx, REPORT=ctx / "ref.tif")


@case("refinepair", "REPORT's figure would overwrite the REFERENCE_DEM", refuse=r"REPORT.*REFERENCE_DEM")
def report_figure_onto_dem(ctx):
    shutil.copy(ctx / "dem.tif", ctx / "control.png")
    return refine(ctx, REFERENCE_DEM=ctx / "control.png", REPORT=ctx / "control.json")


@case("refinepair", "both refined models at one path", refuse=r"REFINED_SECONDARY_MODEL.*also")
def refined_same_path(ctx):
    return refine(ctx, REFINED_SECONDARY_MODEL=ctx / "ref_refined.json")


@case("refinepair", "TIE_POINTS is the secondary image", refuse=r"TIE_POINTS.*SECONDARY")
def ties_onto_secondary(ctx):
    return refine(ctx, TIE_POINTS=ctx / "sec.tif")


@case("refinepair", "the same image twice", refuse=r"same (image|pixels)|same direction")
def same_image(ctx):
    return refine(ctx, SECONDARY=ctx / "ref.tif")


@case("refinepair", "images in dB", refuse=r"negative|dB")
def images_in_db(ctx):
    db = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_db.tif", lambda a: 20 * np.log10(np.maximum(a, 1e-6)))
          for r in ("ref", "sec")]
    return refine(ctx, REFERENCE=db[0], SECONDARY=db[1])


@case("refinepair", "noise images (nothing in common)", refuse=r"tie points|TIE_POINTS")
def noise_images(ctx):
    rng = np.random.default_rng(3)
    noise = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_noise.tif", lambda a: rng.rayleigh(1.0, a.shape))
             for r in ("ref", "sec")]
    return refine(ctx, REFERENCE=noise[0], SECONDARY=noise[1])


@case("refinepair", "a REFERENCE_DEM far from the pair", refuse=r"REFERENCE_DEM.*cover")
def dem_elsewhere(ctx):
    return refine(ctx, REFERENCE_DEM=t.crop_dem(ctx / "dem.tif", ctx / "far.tif", shift_deg=4.0))


@case("refinepair", "a wrong look side in the secondary model", refuse=r"look_side")
def look_side(ctx):
    return refine(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", t.opposite_look))


# ================================================================ importproduct
def imported(ctx, **params):
    base = {"INPUT": ctx / "ref.tif", "OUTPUT": ctx / "imported.tif"}
    return ctx.qgis("importproduct", **{**base, **params})


def _imported(ctx, answer):
    ds = gdal.Open(str(ctx / "imported.tif"))
    return None if ds is not None and ds.GetMetadataItem("SARSTEREO_SENSOR") else "no image with a model"


@case("importproduct", "one of our images imported again", succeed=_imported)
def own_image(ctx):
    return imported(ctx)


@case("importproduct", "OUTPUT is the INPUT", refuse=r"OUTPUT.*INPUT")
def output_is_input(ctx):
    return imported(ctx, OUTPUT=ctx / "ref.tif")


@case("importproduct", "OUTPUT's sidecar would overwrite the INPUT model JSON", refuse=r"OUTPUT.*sidecar.*INPUT")
def output_sidecar_is_input(ctx):
    shutil.copy(ctx / "ref.sensor.json", ctx / "scene.sensor.json")
    shutil.copy(ctx / "ref.tif", ctx / "scene.tif")
    t.set_item(ctx / "scene.tif", "SARSTEREO_SENSOR", None)
    ds = gdal.OpenEx(str(ctx / "scene.tif"), gdal.OF_UPDATE)
    ds.SetMetadata({k: v for k, v in ds.GetMetadata().items() if k != "SARSTEREO_SENSOR"})
    ds = None
    return imported(ctx, INPUT=ctx / "scene.sensor.json", OUTPUT=ctx / "scene.tif")


@case("importproduct", "a bare sensor model (metadata, no pixels)", refuse=r"metadata only|no pixels")
def bare_model(ctx):
    shutil.copy(ctx / "ref.sensor.json", ctx / "model.json")
    return imported(ctx, INPUT=ctx / "model.json")


@case("importproduct", "a text file", refuse=r"notes\.txt.*(supported|sensor model)")
def text_file(ctx):
    (ctx / "notes.txt").write_text("hello")
    return imported(ctx, INPUT=ctx / "notes.txt")


@case("importproduct", "a folder that is no product", refuse=r"folder|product|INPUT")
def plain_folder(ctx):
    (ctx / "stuff").mkdir()
    (ctx / "stuff" / "a.txt").write_text("x")
    return imported(ctx, INPUT=ctx / "stuff")


@case("importproduct", "more looks than the image has lines", refuse=r"LOOKS_AZIMUTH")
def too_many_looks(ctx):
    return imported(ctx, LOOKS_AZIMUTH=1000)


@case("importproduct", "an image name the product does not hold", either=r"IMAGE", check=_imported)
def unknown_image(ctx):
    return imported(ctx, IMAGE="iw9-xx-b99")


@case("importproduct", "a FIFO as the product", refuse=r"FIFO|regular", timeout=90)
def fifo_product(ctx):
    t.fifo(ctx / "product.tif")
    return ctx.isolated("""
        from sar_stereo_plugin.core.products.importer import import_product
        return import_product(D / "product.tif", D / "out.tif")""", timeout=60)


@case("importproduct", "/dev/zero as the product", refuse=r"regular|device|supported", timeout=90)
def dev_zero_product(ctx):
    t.symlink("/dev/zero", ctx / "zero.tif")
    return ctx.isolated("""
        from sar_stereo_plugin.core.products.importer import import_product
        return import_product(D / "zero.tif", D / "out.tif")""", timeout=60)


@case("importproduct", "a truncated SICD NITF", refuse=r"cut\.nitf")
def truncated_sicd(ctx):
    source = t.shared_file("sicd/rcm_stripmap_montreal_50x50.nitf")
    shutil.copy(source, ctx / "cut.nitf")
    t.truncate(ctx / "cut.nitf", 0.5)
    return imported(ctx, INPUT=ctx / "cut.nitf")


@case("importproduct", "a real SICD crop", succeed=_imported)
def real_sicd(ctx):
    return imported(ctx, INPUT=t.shared_file("sicd/rcm_stripmap_montreal_50x50.nitf"))


@case("importproduct", "OUTPUT replaces an earlier import", succeed=_imported, changes=("imported.tif",
                                                                                     "imported.sensor.json"))
def replaces_previous(ctx):
    shutil.copy(ctx / "sec.tif", ctx / "imported.tif")
    shutil.copy(ctx / "sec.sensor.json", ctx / "imported.sensor.json")
    return imported(ctx)


# ================================================================ simulatepair
def simulate(ctx, **params):
    base = {"DEM": ctx / "dem.tif", "ROWS": 48, "COLS": 48, "REFERENCE_OUTPUT": ctx / "r.tif",
            "SECONDARY_OUTPUT": ctx / "s.tif", "GROUND_TRUTH_OUTPUT": ctx / "g.tif"}
    return ctx.qgis("simulatepair", **{**base, **params})


def _simulated(ctx, answer):
    return None if all((ctx / n).exists() for n in ("r.tif", "s.tif", "g.tif")) else "outputs missing"


@case("simulatepair", "a small pair over the DEM", succeed=_simulated)
def plain(ctx):
    return simulate(ctx)


@case("simulatepair", "DEM_OUTPUT is the DEM itself", refuse=r"DEM_OUTPUT.*DEM")
def dem_output_is_dem(ctx):
    return simulate(ctx, DEM_OUTPUT=ctx / "dem.tif")


@case("simulatepair", "GROUND_TRUTH_OUTPUT is the DEM", refuse=r"GROUND_TRUTH_OUTPUT.*DEM")
def truth_onto_dem(ctx):
    return simulate(ctx, GROUND_TRUTH_OUTPUT=ctx / "dem.tif")


@case("simulatepair", "both images at one path", refuse=r"SECONDARY_OUTPUT.*also")
def same_output(ctx):
    return simulate(ctx, SECONDARY_OUTPUT=ctx / "r.tif")


@case("simulatepair", "REFERENCE_OUTPUT whose sidecar is the REFERENCE_MODEL given",
      refuse=r"sidecar.*REFERENCE_MODEL|REFERENCE_MODEL")
def sidecar_onto_model(ctx):
    shutil.copy(ctx / "ref.sensor.json", ctx / "view.sensor.json")
    shutil.copy(ctx / "sec.sensor.json", ctx / "other.json")
    return simulate(ctx, REFERENCE_MODEL=ctx / "view.sensor.json", SECONDARY_MODEL=ctx / "other.json",
                    REFERENCE_OUTPUT=ctx / "view.tif", ROWS=None, COLS=None)


@case("simulatepair", "REFERENCE_OUTPUT is a folder", refuse=r"REFERENCE_OUTPUT.*folder")
def output_folder(ctx):
    (ctx / "r.tif").mkdir()
    return simulate(ctx)


@case("simulatepair", "a flight below the terrain", refuse=r"altitude")
def altitude_low(ctx):
    return simulate(ctx, ALTITUDE=500.0)


@case("simulatepair", "an image wider than the flight can see", refuse=r"COLS|PIXEL_SPACING")
def too_wide(ctx):
    return simulate(ctx, ROWS=64, COLS=20000, PIXEL_SPACING=5.0)


@case("simulatepair", "a DEM that is not georeferenced", refuse=r"nogeo\.tif.*georeferenced")
def dem_not_georeferenced(ctx):
    t.raster(ctx / "nogeo.tif", gdal.Open(str(ctx / "dem.tif")).ReadAsArray())
    return simulate(ctx, DEM=ctx / "nogeo.tif")


@case("simulatepair", "a DEM that is all nodata", refuse=r"void\.tif.*no valid height")
def dem_all_nodata(ctx):
    ds = gdal.Open(str(ctx / "dem.tif"))
    t.raster(ctx / "void.tif", np.full((20, 20), -9999.0), ds.GetGeoTransform(), ds.GetProjection(), nodata=-9999)
    return simulate(ctx, DEM=ctx / "void.tif")


@case("simulatepair", "a DEM with heights in centimetres", refuse=r"cm\.tif.*metres")
def dem_centimetres(ctx):
    ds = gdal.Open(str(ctx / "dem.tif"))
    t.raster(ctx / "cm.tif", ds.ReadAsArray() * 100.0, ds.GetGeoTransform(), ds.GetProjection())
    return simulate(ctx, DEM=ctx / "cm.tif")


@case("simulatepair", "only one of the two sensor models", refuse=r"secondary.*missing|SECONDARY_MODEL")
def one_model(ctx):
    return simulate(ctx, REFERENCE_MODEL=ctx / "ref.sensor.json", ROWS=None, COLS=None)


@case("simulatepair", "two models of the same view", refuse=r"same direction|intersection|same")
def same_models(ctx):
    return simulate(ctx, REFERENCE_MODEL=ctx / "ref.sensor.json", SECONDARY_MODEL=ctx / "ref.sensor.json",
                    ROWS=None, COLS=None)


@case("simulatepair", "outputs replace an earlier simulation", succeed=_simulated,
      changes=("r.tif", "r.sensor.json", "s.tif", "s.sensor.json", "g.tif"))
def replaces_previous(ctx):
    for a, b in (("ref", "r"), ("sec", "s")):
        shutil.copy(ctx / f"{a}.tif", ctx / f"{b}.tif")
        shutil.copy(ctx / f"{a}.sensor.json", ctx / f"{b}.sensor.json")
    shutil.copy(ctx / "gt.tif", ctx / "g.tif")
    return simulate(ctx)


@case("simulatepair", "the DEM written with the pair", succeed=lambda ctx, a: None if gdal.Open(
    str(ctx / "source.tif")).RasterCount == 1 else "no DEM")
def dem_output(ctx):
    return simulate(ctx, DEM_OUTPUT=ctx / "source.tif")
