"""Attacks through the Python API (sar_stereo_plugin.core), as a script or a notebook meets it."""

import json
import shutil

import numpy as np
import tools as t
from harness import case
from osgeo import gdal


def core():
    import sar_stereo_plugin.core as core
    return core


def poc():
    return core().create_matcher("poc")


def settings(**kwargs):
    return core().MatchSettings(**{"patch_size": 64, "overlap": 16, **kwargs})


class _Canceling:
    """is_canceled() that says yes after ``after`` calls."""

    def __init__(self, after=1):
        self.after, self.calls = after, 0

    def __call__(self):
        self.calls += 1
        return self.calls > self.after


# ---------------------------------------------------------------- outputs onto inputs
@case("api", "match_pair writing onto its reference", refuse=r"OUTPUT.*REFERENCE")
def match_onto_reference(ctx):
    return ctx.api(core().match_pair, ctx / "ref.tif", ctx / "sec.tif", ctx / "ref.tif", poc(), settings())


@case("api", "match_pair writing onto the prior DEM given as a Dem", refuse=r"OUTPUT.*PRIOR_DEM")
def match_onto_dem_object(ctx):
    dem = core().open_dem(str(ctx / "dem.tif"))
    return ctx.api(core().match_pair, ctx / "ref.tif", ctx / "sec.tif", ctx / "dem.tif", poc(), settings(),
                   prior_dem=dem)


@case("api", "match_pair writing onto the model file of the secondary", refuse=r"OUTPUT.*SECONDARY_MODEL")
def match_onto_model_file(ctx):
    shutil.copy(ctx / "sec.sensor.json", ctx / "s.json")
    model = core().SensorModel.from_json(str(ctx / "s.json"))
    return ctx.api(core().match_pair, ctx / "ref.tif", ctx / "sec.tif", ctx / "s.json", poc(), settings(),
                   secondary_model=model)


@case("api", "generate_elevation writing onto its matches", refuse=r"OUTPUT.*MATCHES")
def elevation_onto_matches(ctx):
    return ctx.api(core().generate_elevation, ctx / "matches.tif", ctx / "matches.tif")


@case("api", "generate_elevation's uncertainty onto the reference DEM", refuse=r"UNCERTAINTY_OUTPUT.*REFERENCE_DEM")
def elevation_onto_reference(ctx):
    return ctx.api(core().generate_elevation, ctx / "matches.tif", ctx / "out.tif",
                   uncertainty_output=ctx / "dem.tif", reference_dem=ctx / "dem.tif")


@case("api", "evaluate_dem writing its error map onto the DEM", refuse=r"ERROR_OUTPUT.*DEM")
def evaluate_onto_dem(ctx):
    return ctx.api(core().evaluate_dem, ctx / "elev.tif", ctx / "dem.tif", ctx / "elev.tif")


@case("api", "simulate_pair writing its reference onto the DEM", refuse=r"REFERENCE_OUTPUT.*DEM")
def simulate_onto_dem(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"), core().FlightDesign(rows=32, cols=32),
                   reference_output=ctx / "dem.tif", secondary_output=ctx / "s.tif")


@case("api", "simulate_pair's ground truth onto a sidecar it writes", refuse=r"also")
def simulate_truth_onto_sidecar(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"), core().FlightDesign(rows=32, cols=32),
                   reference_output=ctx / "r.tif", ground_truth_output=ctx / "r.sensor.json")


@case("api", "build_dataset into the reference image's path", refuse=r"OUTPUT")
def dataset_onto_image(ctx):
    from sar_stereo_plugin.core.training.dataset import build_dataset
    return ctx.api(build_dataset, [(ctx / "ref.tif", ctx / "sec.tif")], ctx / "dem.tif", ctx / "ref.tif",
                   patch_size=64, overlap=32, block_px=128)


@case("api", "import_product writing onto the product", refuse=r"OUTPUT.*INPUT")
def import_onto_product(ctx):
    from sar_stereo_plugin.core.products.importer import import_product
    return ctx.api(import_product, ctx / "ref.tif", ctx / "ref.tif")


@case("api", "refine_pair writing a refined model onto the reference's sidecar",
      refuse=r"REFINED_REFERENCE_MODEL.*sidecar")
def refine_onto_sidecar(ctx):
    from sar_stereo_plugin.core.refine_pair import refine_pair
    return ctx.api(refine_pair, ctx / "ref.tif", ctx / "sec.tif", refined_reference_model=ctx / "ref.sensor.json")


@case("api", "finetune writing into the dataset folder", refuse=r"OUTPUT.*DATASET")
def finetune_into_dataset(ctx):
    from sar_stereo_plugin.core.training.finetune import finetune
    return ctx.api(finetune, ctx / "dataset", ctx / "dataset", steps=1)


# ---------------------------------------------------------------- inputs that are not what they seem
@case("api", "read_sensor_model of a FIFO", refuse=r"FIFO|regular", timeout=90)
def model_fifo(ctx):
    t.fifo(ctx / "pipe.json")
    return ctx.isolated("""
        from sar_stereo_plugin.core import read_sensor_model
        return read_sensor_model(D / "pipe.json")""", timeout=60)


@case("api", "SensorModel.from_json of /dev/zero", refuse=r"regular|device", timeout=90)
def model_dev_zero(ctx):
    t.symlink("/dev/zero", ctx / "zero.json")
    return ctx.isolated("""
        from sar_stereo_plugin.core import SensorModel
        return SensorModel.from_json(str(D / "zero.json"))""", timeout=60, memory_gb=2)


@case("api", "read_sensor_model with a 2 GB (sparse) sidecar", refuse=r"MB")
def model_huge(ctx):
    image = t.rewrite_image(ctx / "ref.tif", ctx / "big.tif")
    ds = gdal.OpenEx(str(image), gdal.OF_UPDATE)
    ds.SetMetadata({k: v for k, v in ds.GetMetadata().items() if k != "SARSTEREO_SENSOR"})
    ds = None
    with open(image.with_suffix(".sensor.json"), "r+b") as fh:
        fh.truncate(2 << 30)
    return ctx.api(core().read_sensor_model, image)


@case("api", "SensorModel.from_json of JSON nested 100 000 deep", refuse=r"nested|JSON")
def model_nested_text(ctx):
    return ctx.api(core().SensorModel.from_json, t.nested_json())


@case("api", "SensorModel.from_json of a file with a byte-order mark",
      succeed=lambda ctx, a: None if a.value.rows > 0 else "no model")
def model_bom(ctx):
    path = t.write_json(ctx / "m.json", t.model_doc(ctx / "ref.tif"), prefix="\ufeff")
    return ctx.api(core().SensorModel.from_json, str(path))


@case("api", "SensorModel.from_json with look_side 'up'", refuse=r"look_side")
def model_look_up(ctx):
    doc = t.model_doc(ctx / "ref.tif")
    doc["look_side"] = "up"
    return ctx.api(core().SensorModel.from_json, doc)


@case("api", "read_sensor_model of a folder", refuse=r"not a file|product")
def model_folder(ctx):
    (ctx / "folder").mkdir()
    return ctx.api(core().read_sensor_model, ctx / "folder")


@case("api", "open_dem of a missing file", refuse=r"missing\.tif")
def dem_missing(ctx):
    return ctx.api(core().open_dem, str(ctx / "missing.tif"))


@case("api", "Dem.from_array of NaN only", refuse=r"no valid height")
def dem_nan(ctx):
    return ctx.api(core().Dem.from_array, np.full((4, 4), np.nan), (10, 0.01, 0, 46, 0, -0.01), "EPSG:4326")


@case("api", "simulate_pair on a DEM in feet", refuse=r"metres")
def simulate_feet(ctx):
    ds = gdal.Open(str(ctx / "dem.tif"))
    dem = core().Dem.from_array(ds.ReadAsArray() * 3.28 + 9000, ds.GetGeoTransform(), "EPSG:4326")
    return ctx.api(core().simulate_pair, dem, core().FlightDesign(rows=32, cols=32))


@case("api", "simulate_pair with half a look", refuse=r"looks")
def simulate_half_look(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"), core().FlightDesign(rows=32, cols=32), looks=0.5)


@case("api", "simulate_pair in format 'kml'", refuse=r"format")
def simulate_format(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"), core().FlightDesign(rows=32, cols=32), format="kml")


@case("api", "a flight design with the same incidence twice", refuse=r"secondary_incidence_deg")
def flight_same_incidence(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"),
                   core().FlightDesign(rows=32, cols=32, reference_incidence_deg=40, secondary_incidence_deg=40))


@case("api", "level_flight_model below the scene", refuse=r"altitude")
def flight_below(ctx):
    return ctx.api(core().level_flight_model, center_lon=10.0, center_lat=46.0, center_h=3000.0, heading_deg=0.0,
                   altitude_m=1000.0, incidence_deg=40.0, rows=16, cols=16)


@case("api", "the core imported in a fresh interpreter: no PROJ data warning", succeed=lambda ctx, a: next(
    (m for m in a.messages if "PROJ" in m or "proj.db" in m), None))
def import_quiet(ctx):
    return ctx.isolated("""
        import sar_stereo_plugin.core
        from pyproj import CRS
        return CRS("EPSG:32616").name""")


@case("api", "the light matcher where PyTorch is missing: how to install it", refuse=r"sarstereo:installdeps")
def light_without_torch(ctx):
    return ctx.isolated("""
        import importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "romatch", "torchvision"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        from sar_stereo_plugin.core import create_matcher
        return create_matcher("light")""")


# ---------------------------------------------------------------- settings
@case("api", "MatchSettings with a NaN height prior", refuse=r"HEIGHT_PRIOR")
def settings_nan_prior(ctx):
    return ctx.api(settings(height_prior=float("nan")).validate)


@case("api", "MatchSettings with a negative uncertainty", refuse=r"HEIGHT_UNCERTAINTY")
def settings_negative_uncertainty(ctx):
    return ctx.api(settings(height_uncertainty_m=-5.0).validate)


@case("api", "ElevationSettings with a negative resolution", refuse=r"RESOLUTION")
def settings_negative_resolution(ctx):
    return ctx.api(core().ElevationSettings(resolution_m=-1.0).validate)


@case("api", "generate_elevation with CRS EPSG:999999", refuse=r"CRS")
def elevation_bad_crs(ctx):
    return ctx.api(core().generate_elevation, ctx / "matches.tif", ctx / "out.tif",
                   core().ElevationSettings(crs="EPSG:999999"))


@case("api", "generate_elevation in Web Mercator", refuse=r"CRS.*stretch")
def elevation_web_mercator(ctx):
    return ctx.api(core().generate_elevation, ctx / "matches.tif", ctx / "out.tif",
                   core().ElevationSettings(crs="EPSG:3857"))


@case("api", "import_product with zero looks", refuse=r"LOOKS_RANGE")
def import_zero_looks(ctx):
    from sar_stereo_plugin.core.products.importer import import_product
    return ctx.api(import_product, ctx / "ref.tif", ctx / "out.tif", looks_range=0)


# ---------------------------------------------------------------- the pair and the matcher
@case("api", "inspect_pair of one model twice", refuse=r"same direction")
def inspect_same(ctx):
    model = core().read_sensor_model(ctx / "ref.tif")
    return ctx.api(core().inspect_pair, model, model)


@case("api", "inspect_pair of a pair seen from opposite sides", succeed=lambda ctx, a: None if (
    a.value.overlap_fraction > 0.3) else f"overlap {a.value.overlap_fraction}")
def inspect_opposite(ctx):
    ref, sec = core().FlightDesign(rows=64, cols=64, opposite_side=True, secondary_incidence_deg=40).models(
        core().open_dem(str(ctx / "dem.tif")))
    return ctx.api(core().inspect_pair, ref, sec, dem=str(ctx / "dem.tif"))


@case("api", "a matcher answering arrays of the wrong shape", refuse=r"matcher.*rows")
def matcher_wrong_shape(ctx):
    from sar_stereo_plugin.core.matchers import Matcher, PatchMatch

    class Bad(Matcher):
        name, batch_size = "bad", 4

        def describe(self):
            return "bad"

        def match(self, pairs):
            return [PatchMatch(*(np.zeros((3, 3), np.float32),) * 3) for _ in pairs]
    return ctx.api(core().match_pair, ctx / "ref.tif", ctx / "sec.tif", ctx / "out.tif", Bad(), settings())


@case("api", "evaluate_matches against the truth of another pair", refuse=r"another pair")
def evaluate_other_pair(ctx):
    truth = t.rewrite_image(ctx / "gt.tif", ctx / "gt2.tif", bands=list(gdal.Open(str(ctx / "gt.tif")).ReadAsArray()))
    doc = json.loads(t.item(truth, "SARSTEREO_SENSOR"))
    doc["range"]["first_sample_range_m"] += 50.0
    t.set_item(truth, "SARSTEREO_SENSOR", json.dumps(doc))
    return ctx.api(core().evaluate_matches, ctx / "matches.tif", truth)


# ---------------------------------------------------------------- cancel leaves nothing
@case("api", "match_pair canceled", refuse=r"cancel")
def match_canceled(ctx):
    return ctx.api(core().match_pair, ctx / "ref.tif", ctx / "sec.tif", ctx / "out.tif", poc(),
                   settings(patch_size=32, overlap=0), is_canceled=_Canceling(2))


@case("api", "generate_elevation canceled", refuse=r"cancel")
def elevation_canceled(ctx):
    return ctx.api(core().generate_elevation, ctx / "matches.tif", ctx / "out.tif", count_output=ctx / "c.tif",
                   is_canceled=_Canceling(0))


@case("api", "simulate_pair canceled", refuse=r"cancel")
def simulate_canceled(ctx):
    return ctx.api(core().simulate_pair, str(ctx / "dem.tif"), core().FlightDesign(rows=32, cols=32),
                   reference_output=ctx / "r.tif", secondary_output=ctx / "s.tif", is_canceled=_Canceling(3))


@case("api", "build_dataset canceled over an existing dataset: the old one stays", refuse=r"cancel")
def dataset_canceled(ctx):
    from sar_stereo_plugin.core.training.dataset import build_dataset
    return ctx.api(build_dataset, [(ctx / "ref.tif", ctx / "sec.tif")], ctx / "dem.tif", ctx / "dataset",
                   patch_size=32, overlap=0, block_px=128, is_canceled=_Canceling(2))


@case("api", "import_product canceled", refuse=r"cancel")
def import_canceled(ctx):
    from sar_stereo_plugin.core.products.importer import import_product
    return ctx.api(import_product, ctx / "ref.tif", ctx / "out.tif", is_canceled=_Canceling(0))
