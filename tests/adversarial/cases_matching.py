"""Attacks on sarstereo:matchpair and sarstereo:evaluatematches."""

import json
import shutil

import numpy as np
import tools as t
from harness import case
from osgeo import gdal

POC = 2  # the MATCHER enum index of POC


def match(ctx, **params):
    base = {"REFERENCE": ctx / "ref.tif", "SECONDARY": ctx / "sec.tif", "MATCHER": POC, "PATCH_SIZE": 64,
            "OVERLAP": 16, "OUTPUT": ctx / "out.tif"}
    return ctx.qgis("matchpair", **{**base, **params})


def _match_raster(ctx, answer, name="out.tif"):
    ds = gdal.Open(str(ctx / name))
    if ds is None or ds.RasterCount < 3:  # a fourth band: the round trip
        return "no match raster written"
    cert = ds.GetRasterBand(3).ReadAsArray()
    if not np.isfinite(cert).mean() > 0.3:
        return f"only {np.isfinite(cert).mean():.2f} of the pixels matched"
    return None


# ---------------------------------------------------------------- outputs onto inputs
@case("matchpair", "OUTPUT is the reference image", refuse=r"OUTPUT.*REFERENCE")
def output_is_reference(ctx):
    return match(ctx, OUTPUT=ctx / "ref.tif")


@case("matchpair", "OUTPUT is the secondary image", refuse=r"OUTPUT.*SECONDARY")
def output_is_secondary(ctx):
    return match(ctx, OUTPUT=ctx / "sec.tif")


@case("matchpair", "OUTPUT is the prior DEM", refuse=r"OUTPUT.*PRIOR_DEM")
def output_is_prior_dem(ctx):
    return match(ctx, PRIOR_DEM=ctx / "dem.tif", OUTPUT=ctx / "dem.tif")


@case("matchpair", "OUTPUT is a hard link of the reference image", refuse=r"OUTPUT.*REFERENCE")
def output_hardlink_of_reference(ctx):
    return match(ctx, OUTPUT=t.hardlink(ctx / "ref.tif", ctx / "link.tif"))


@case("matchpair", "OUTPUT is a symbolic link to the secondary image", refuse=r"OUTPUT.*SECONDARY")
def output_symlink_to_secondary(ctx):
    return match(ctx, OUTPUT=t.symlink(ctx / "sec.tif", ctx / "link.tif"))


@case("matchpair", "OUTPUT is the reference model JSON given as REFERENCE_MODEL", refuse=r"OUTPUT.*REFERENCE_MODEL")
def output_is_reference_model(ctx):
    model = shutil.copy(ctx / "ref.sensor.json", ctx / "ref_model.json")
    return match(ctx, REFERENCE_MODEL=model, OUTPUT=model)


@case("matchpair", "OUTPUT is the same file as the reference reached through another path",
      refuse=r"OUTPUT.*REFERENCE")
def output_reference_other_path(ctx):
    (ctx / "sub").mkdir()
    return match(ctx, OUTPUT=ctx / "sub" / ".." / "ref.tif")


@case("matchpair", "OUTPUT is a folder", refuse=r"OUTPUT.*folder")
def output_is_folder(ctx):
    (ctx / "folder.tif").mkdir()
    return match(ctx, OUTPUT=ctx / "folder.tif")


@case("matchpair", "OUTPUT in a folder that does not exist", either=r"OUTPUT.*(exist|folder)",
      check=lambda ctx, a: _match_raster(ctx, a, "new/out.tif"))
def output_folder_missing(ctx):
    return match(ctx, OUTPUT=ctx / "new" / "out.tif")


@case("matchpair", "OUTPUT replaces an earlier match raster", succeed=_match_raster, changes=("out.tif",))
def output_replaces_previous(ctx):
    shutil.copy(ctx / "matches.tif", ctx / "out.tif")
    return match(ctx)


@case("matchpair", "OUTPUT is a link to a device (/dev/null)", refuse=r"OUTPUT.*(regular|device)")
def output_device(ctx):
    return match(ctx, OUTPUT=t.symlink("/dev/null", ctx / "null.tif"))  # never /dev/null itself: run as root,
    # a writer renaming its file onto it replaces the device


# ---------------------------------------------------------------- the pair
@case("matchpair", "the same image as reference and secondary", refuse=r"same (image|file)|identical")
def same_image(ctx):
    return match(ctx, SECONDARY=ctx / "ref.tif")


@case("matchpair", "a copy of the reference as the secondary", refuse=r"same|identical|intersection")
def copy_of_reference(ctx):
    shutil.copy(ctx / "ref.tif", ctx / "copy.tif")
    shutil.copy(ctx / "ref.sensor.json", ctx / "copy.sensor.json")
    return match(ctx, SECONDARY=ctx / "copy.tif")


@case("matchpair", "the reference's pixels under the secondary's model", refuse=r"same pixels|identical")
def reference_pixels_secondary_model(ctx):
    ref = gdal.Open(str(ctx / "ref.tif")).ReadAsArray()
    return match(ctx, SECONDARY=t.rewrite_image(ctx / "sec.tif", ctx / "fake.tif", lambda a: _tile(ref, a.shape)))


def _tile(ref, shape):
    reps = (-(-shape[0] // ref.shape[0]), -(-shape[1] // ref.shape[1]))
    return np.tile(ref, reps)[:shape[0], :shape[1]]


@case("matchpair", "a secondary of another area, 200 km away", refuse=r"overlap|GCPs")
def other_area(ctx):
    model = t.edited_model(ctx / "sec.tif", ctx / "far.json", t.moved_model)
    return match(ctx, SECONDARY_MODEL=model)


@case("matchpair", "the secondary's look side is wrong", refuse=r"look_side")
def secondary_look_side_wrong(ctx):
    return match(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", t.opposite_look))


@case("matchpair", "the reference's look side is wrong", refuse=r"look_side")
def reference_look_side_wrong(ctx):
    return match(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", t.opposite_look))


@case("matchpair", "the reference model's shape differs from the image", refuse=r"shape")
def model_shape_differs(ctx):
    def edit(doc):
        doc["shape"]["rows"] -= 10
    return match(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("matchpair", "velocities that disagree with the positions (sign flipped)", refuse=r"velocity")
def velocity_flipped(ctx):
    def edit(doc):
        doc["orbit"]["velocity_m_s"] = (-np.array(doc["orbit"]["velocity_m_s"])).tolist()
    return match(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


@case("matchpair", "velocities in km/s", refuse=r"velocity")
def velocity_units(ctx):
    def edit(doc):
        doc["orbit"]["velocity_m_s"] = (np.array(doc["orbit"]["velocity_m_s"]) / 1000).tolist()
    return match(ctx, REFERENCE_MODEL=t.edited_model(ctx / "ref.tif", ctx / "r.json", edit))


@case("matchpair", "an orbit that ends before the image does", refuse=r"orbit.*cover|state vectors covering")
def orbit_short(ctx):
    def edit(doc):
        orbit, az = doc["orbit"], doc["azimuth"]
        middle = az["first_line_time_s"] + doc["shape"]["rows"] / 2 * az["line_interval_s"]
        keep = max(4, sum(t <= middle for t in orbit["time_s"]))
        for key in ("time_s", "position_m", "velocity_m_s"):
            orbit[key] = orbit[key][:keep]
    return match(ctx, SECONDARY_MODEL=t.edited_model(ctx / "sec.tif", ctx / "s.json", edit))


# ---------------------------------------------------------------- the images' values
@case("matchpair", "images in dB (negative values) taken as amplitude", refuse=r"dB|negative")
def images_in_db(ctx):
    db = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_db.tif", lambda a: 20 * np.log10(np.maximum(a, 1e-6)))
          for r in ("ref", "sec")]
    return match(ctx, REFERENCE=db[0], SECONDARY=db[1])


@case("matchpair", "an all-zero secondary", refuse=r"zero|constant|no (data|signal)")
def all_zero(ctx):
    return match(ctx, SECONDARY=t.rewrite_image(ctx / "sec.tif", ctx / "zero.tif", lambda a: 0 * a))


@case("matchpair", "a constant reference", refuse=r"constant|no (data|signal)")
def constant(ctx):
    return match(ctx, REFERENCE=t.rewrite_image(ctx / "ref.tif", ctx / "const.tif", lambda a: 0 * a + 3.5))


@case("matchpair", "a negated reference", refuse=r"negative|dB")
def negated(ctx):
    return match(ctx, REFERENCE=t.rewrite_image(ctx / "ref.tif", ctx / "neg.tif", lambda a: -a))


@case("matchpair", "an all-NaN secondary", refuse=r"no data|nodata|NaN")
def all_nan(ctx):
    return match(ctx, SECONDARY=t.rewrite_image(ctx / "sec.tif", ctx / "nan.tif", lambda a: a * np.nan))


@case("matchpair", "I/Q in two float bands (band 1 is the real part)", refuse=r"negative|dB|complex")
def iq_bands(ctx):
    rng = np.random.default_rng(0)
    amp = gdal.Open(str(ctx / "sec.tif")).ReadAsArray()
    phase = rng.uniform(0, 2 * np.pi, amp.shape)
    return match(ctx, SECONDARY=t.rewrite_image(ctx / "sec.tif", ctx / "iq.tif",
                                                bands=[amp * np.cos(phase), amp * np.sin(phase)]))


@case("matchpair", "complex (CFloat32) images are matched on their amplitude", succeed=_match_raster)
def complex_images(ctx):
    rng = np.random.default_rng(0)
    out = []
    for role in ("ref", "sec"):
        amp = gdal.Open(str(ctx / f"{role}.tif")).ReadAsArray()
        z = amp * np.exp(1j * rng.uniform(0, 2 * np.pi, amp.shape))
        out.append(t.rewrite_image(ctx / f"{role}.tif", ctx / f"{role}_slc.tif", bands=[z], dtype=gdal.GDT_CFloat32))
    return match(ctx, REFERENCE=out[0], SECONDARY=out[1])


@case("matchpair", "intensity (amplitude squared) images", succeed=_match_raster)
def intensity_images(ctx):
    out = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_int.tif", lambda a: a * a) for r in ("ref", "sec")]
    return match(ctx, REFERENCE=out[0], SECONDARY=out[1])


@case("matchpair", "16-bit integer images with a nodata value", succeed=_match_raster)
def int16_images(ctx):
    out = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_i16.tif", lambda a: np.nan_to_num(a * 1000, nan=0),
                           dtype=gdal.GDT_Int16) for r in ("ref", "sec")]
    return match(ctx, REFERENCE=out[0], SECONDARY=out[1])


@case("matchpair", "a truncated reference GeoTIFF", refuse=r"ref_cut\.tif")
def truncated_reference(ctx):
    shutil.copy(ctx / "ref.tif", ctx / "ref_cut.tif")
    shutil.copy(ctx / "ref.sensor.json", ctx / "ref_cut.sensor.json")
    t.truncate(ctx / "ref_cut.tif", 0.5)
    return match(ctx, REFERENCE=ctx / "ref_cut.tif")


@case("matchpair", "a corrupted secondary GeoTIFF (noise inside)", either=r"sec_bad\.tif",
      check=lambda ctx, a: _match_raster(ctx, a) and None)
def corrupted_secondary(ctx):
    shutil.copy(ctx / "sec.tif", ctx / "sec_bad.tif")
    shutil.copy(ctx / "sec.sensor.json", ctx / "sec_bad.sensor.json")
    t.scribble(ctx / "sec_bad.tif", 0.5, 8192)
    return match(ctx, SECONDARY=ctx / "sec_bad.tif")


@case("matchpair", "a 1 x 1 image", refuse=r"pixels|PATCH_SIZE|small")
def one_pixel(ctx):
    def edit(doc):
        doc["shape"] = {"rows": 1, "cols": 1}
    t.edited_model(ctx / "ref.tif", ctx / "tiny.sensor.json", edit)
    t.raster(ctx / "tiny.tif", np.ones((1, 1)))
    return match(ctx, REFERENCE=ctx / "tiny.tif", PATCH_SIZE=16)


@case("matchpair", "an 8 x 8 image", refuse=r"pixels|PATCH_SIZE|small")
def eight_pixels(ctx):
    def edit(doc):
        doc["shape"] = {"rows": 8, "cols": 8}
    t.edited_model(ctx / "ref.tif", ctx / "tiny.sensor.json", edit)
    t.raster(ctx / "tiny.tif", np.random.default_rng(0).random((8, 8)) + 1)
    return match(ctx, REFERENCE=ctx / "tiny.tif", PATCH_SIZE=16)


@case("matchpair", "a text file named .tif as the reference", refuse=r"ref_text\.tif|REFERENCE|layer")
def text_as_image(ctx):
    (ctx / "ref_text.tif").write_text("not a raster")
    return match(ctx, REFERENCE=ctx / "ref_text.tif")


# ---------------------------------------------------------------- the prior
@case("matchpair", "a PRIOR_DEM that does not cover the scene", refuse=r"PRIOR_DEM.*cover")
def prior_dem_elsewhere(ctx):
    return match(ctx, PRIOR_DEM=t.crop_dem(ctx / "dem.tif", ctx / "far_dem.tif", shift_deg=3.0))


@case("matchpair", "a PRIOR_DEM covering a small part of the scene", warn=r"PRIOR_DEM.*cover")
def prior_dem_partial(ctx):
    lon = np.median([g.GCPX for g in gdal.Open(str(ctx / "ref.tif")).GetGCPs()])
    return match(ctx, PRIOR_DEM=t.crop_dem(ctx / "dem.tif", ctx / "west_dem.tif", east_lon=lon - 0.001))


@case("matchpair", "HEIGHT_UNCERTAINTY beyond what the range can reach", refuse=r"HEIGHT_UNCERTAINTY")
def uncertainty_collapses(ctx):
    return match(ctx, HEIGHT_UNCERTAINTY=50000.0)


@case("matchpair", "HEIGHT_PRIOR not a number", refuse=r"HEIGHT_PRIOR")
def height_prior_nan(ctx):
    return match(ctx, HEIGHT_PRIOR=float("nan"))


@case("matchpair", "HEIGHT_PRIOR above the aircraft", refuse=r"HEIGHT_PRIOR|HEIGHT_UNCERTAINTY|height")
def height_prior_above_platform(ctx):
    return match(ctx, HEIGHT_PRIOR=20000.0, HEIGHT_UNCERTAINTY=100.0)


@case("matchpair", "an image without GCPs, no HEIGHT_PRIOR and no PRIOR_DEM: the prior falls back to 0 m",
      warn=r"HEIGHT_PRIOR|0 m")
def no_gcps_no_prior(ctx):
    return match(ctx, REFERENCE=t.rewrite_image(ctx / "ref.tif", ctx / "ref_nogcp.tif", gcps=False))


@case("matchpair", "a PRIOR_DEM that is not georeferenced", refuse=r"nogeo\.tif.*(georeferenced|CRS)")
def prior_dem_not_georeferenced(ctx):
    t.raster(ctx / "nogeo.tif", gdal.Open(str(ctx / "dem.tif")).ReadAsArray())
    return match(ctx, PRIOR_DEM=ctx / "nogeo.tif")


@case("matchpair", "a PRIOR_DEM in feet with a -32768 nodata unset", refuse=r"feet|metres|nodata")
def prior_dem_bad_units(ctx):
    ds = gdal.Open(str(ctx / "dem.tif"))
    heights = ds.ReadAsArray()
    heights[:5] = -32768
    t.raster(ctx / "dem_ft.tif", heights * 3.28, ds.GetGeoTransform(), ds.GetProjection())
    return match(ctx, PRIOR_DEM=ctx / "dem_ft.tif")


@case("matchpair", "PATCH_SIZE larger than the images", refuse=r"PATCH_SIZE")
def patch_too_large(ctx):
    return match(ctx, PATCH_SIZE=512)


# ---------------------------------------------------------------- sidecars and embedded models
def _without_embedded(ctx, role):
    """A copy of an image without its embedded model: the sidecar is what is read."""
    out = t.rewrite_image(ctx / f"{role}.tif", ctx / f"{role}_side.tif")
    t.set_item(out, "SARSTEREO_SENSOR", None)
    ds = gdal.OpenEx(str(out), gdal.OF_UPDATE)
    ds.SetMetadata({k: v for k, v in ds.GetMetadata().items() if k != "SARSTEREO_SENSOR"})
    ds = None
    return out


@case("matchpair", "a sidecar model written with a byte-order mark", succeed=_match_raster)
def sidecar_with_bom(ctx):
    image = _without_embedded(ctx, "sec")
    t.write_json(image.with_suffix(".sensor.json"), t.model_doc(ctx / "sec.tif"), prefix="\ufeff")
    return match(ctx, SECONDARY=image)


@case("matchpair", "a sidecar of deeply nested JSON", refuse=r"sec_side\.sensor\.json.*(JSON|nested|deep)")
def sidecar_nested(ctx):
    image = _without_embedded(ctx, "sec")
    image.with_suffix(".sensor.json").write_text(t.nested_json())
    return match(ctx, SECONDARY=image)


@case("matchpair", "an embedded model that is not JSON", refuse=r"SARSTEREO_SENSOR.*JSON")
def embedded_not_json(ctx):
    image = t.rewrite_image(ctx / "sec.tif", ctx / "sec_badmeta.tif")
    t.set_item(image, "SARSTEREO_SENSOR", "{not json")
    return match(ctx, SECONDARY=image)


@case("matchpair", "a sidecar model with an unknown field", refuse=r"field 'extra'")
def sidecar_unknown_field(ctx):
    image = _without_embedded(ctx, "ref")
    doc = t.model_doc(ctx / "ref.tif")
    doc["extra"] = 1
    t.write_json(image.with_suffix(".sensor.json"), doc)
    return match(ctx, REFERENCE=image)


@case("matchpair", "a sidecar symlinked to /dev/zero", refuse=r"sensor\.json.*(regular|file|large)", timeout=90)
def sidecar_dev_zero(ctx):
    image = _without_embedded(ctx, "ref")
    image.with_suffix(".sensor.json").unlink()
    t.symlink("/dev/zero", image.with_suffix(".sensor.json"))
    return ctx.isolated("""
        return qgis("matchpair", REFERENCE=D / "ref_side.tif", SECONDARY=D / "sec.tif", MATCHER=2, PATCH_SIZE=64,
                    OUTPUT=D / "out.tif")""", qgis=True, timeout=90)


@case("matchpair", "a sidecar that is a FIFO nobody writes to", refuse=r"sensor\.json.*(regular|file)", timeout=90)
def sidecar_fifo(ctx):
    image = _without_embedded(ctx, "ref")
    image.with_suffix(".sensor.json").unlink()
    t.fifo(image.with_suffix(".sensor.json"))
    return ctx.isolated("""
        return qgis("matchpair", REFERENCE=D / "ref_side.tif", SECONDARY=D / "sec.tif", MATCHER=2, PATCH_SIZE=64,
                    OUTPUT=D / "out.tif")""", qgis=True, timeout=60)


@case("matchpair", "a sidecar of 2 GB (sparse)", refuse=r"sensor\.json.*(large|MB|size)", timeout=90)
def sidecar_huge(ctx):
    image = _without_embedded(ctx, "ref")
    with open(image.with_suffix(".sensor.json"), "r+b") as fh:
        fh.truncate(2 << 30)
    return match(ctx, REFERENCE=image)


@case("matchpair", "REFERENCE_MODEL that is an empty file", refuse=r"r\.json.*(empty|JSON)")
def model_empty(ctx):
    (ctx / "r.json").write_text("")
    return match(ctx, REFERENCE_MODEL=ctx / "r.json")


@case("matchpair", "REFERENCE_MODEL that is a JSON list", refuse=r"r\.json.*(object|root)")
def model_list(ctx):
    (ctx / "r.json").write_text("[1, 2, 3]")
    return match(ctx, REFERENCE_MODEL=ctx / "r.json")


# ---------------------------------------------------------------- evaluatematches
def evaluate(ctx, **params):
    base = {"MATCHES": ctx / "matches.tif", "GROUND_TRUTH": ctx / "gt.tif", "REPORT": ctx / "report.json"}
    return ctx.qgis("evaluatematches", **{**base, **params})


def _report(ctx, answer, name="report.json"):
    doc = json.loads((ctx / name).read_text())
    return None if doc["accuracy_at_px"]["10"] > 0.3 else f"accuracy at 10 px {doc['accuracy_at_px']['10']}"


@case("evaluatematches", "the matches evaluated against their truth", succeed=_report)
def plain(ctx):
    return evaluate(ctx)


@case("evaluatematches", "REPORT is the match raster", refuse=r"REPORT.*MATCHES")
def report_is_matches(ctx):
    return evaluate(ctx, REPORT=ctx / "matches.tif")


@case("evaluatematches", "REPORT is the ground truth", refuse=r"REPORT.*GROUND_TRUTH")
def report_is_truth(ctx):
    return evaluate(ctx, REPORT=ctx / "gt.tif")


@case("evaluatematches", "REPORT is a folder", refuse=r"REPORT.*folder")
def report_is_folder(ctx):
    (ctx / "r.json").mkdir()
    return evaluate(ctx, REPORT=ctx / "r.json")


@case("evaluatematches", "REPORT in a folder that does not exist", either=r"REPORT.*(exist|folder)",
      check=lambda ctx, a: _report(ctx, a, "new/report.json"))
def report_folder_missing(ctx):
    return evaluate(ctx, REPORT=ctx / "new" / "report.json")


@case("evaluatematches", "matches of one pair against the truth of another", refuse=r"sensor model|pair")
def other_pair(ctx):
    truth = t.rewrite_image(ctx / "gt.tif", ctx / "gt_other.tif",
                            bands=list(gdal.Open(str(ctx / "gt.tif")).ReadAsArray()))
    for key in ("SARSTEREO_SENSOR", "SARSTEREO_SECONDARY_SENSOR"):
        doc = json.loads(t.item(ctx / "gt.tif", key))
        t.set_item(truth, key, json.dumps(t.moved_model(doc, 3000.0)))
    return evaluate(ctx, GROUND_TRUTH=truth)


@case("evaluatematches", "matches and truth of different sizes", refuse=r"size")
def different_size(ctx):
    t.raster(ctx / "small.tif", np.zeros((3, 10, 10)))
    return evaluate(ctx, MATCHES=ctx / "small.tif")


@case("evaluatematches", "a one-band DEM as ground truth", refuse=r"GROUND_TRUTH|bands")
def dem_as_truth(ctx):
    return evaluate(ctx, GROUND_TRUTH=ctx / "dem.tif")


@case("evaluatematches", "a truth with no valid pixel", refuse=r"valid")
def truth_no_valid(ctx):
    bands = gdal.Open(str(ctx / "gt.tif")).ReadAsArray()
    bands[2] = 0
    truth = t.rewrite_image(ctx / "gt.tif", ctx / "gt0.tif", bands=list(bands))
    return evaluate(ctx, GROUND_TRUTH=truth)


@case("evaluatematches", "the truth evaluated against itself", succeed=lambda ctx, a: None if json.loads(
    (ctx / "report.json").read_text())["accuracy_at_px"]["1"] == 1.0 else "truth against itself is not exact")
def truth_against_itself(ctx):
    return evaluate(ctx, MATCHES=ctx / "gt.tif")


@case("evaluatematches", "a truncated match raster", refuse=r"matches_cut\.tif")
def truncated_matches(ctx):
    shutil.copy(ctx / "matches.tif", ctx / "matches_cut.tif")
    t.truncate(ctx / "matches_cut.tif", 0.6)
    return evaluate(ctx, MATCHES=ctx / "matches_cut.tif")


@case("evaluatematches", "a match raster without the embedded models of a pair", either=r"sensor model|pair",
      check=_report)
def matches_without_models(ctx):
    bands = gdal.Open(str(ctx / "matches.tif")).ReadAsArray()
    t.raster(ctx / "plain.tif", bands)
    return evaluate(ctx, MATCHES=ctx / "plain.tif")
