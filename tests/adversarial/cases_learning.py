"""Attacks on sarstereo:builddataset, sarstereo:finetune and sarstereo:installdeps."""

import json
import os
import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import tools as t
from harness import case


# ================================================================ builddataset
def build(ctx, **params):
    base = {"REFERENCES": [str(ctx / "ref.tif")], "SECONDARIES": [str(ctx / "sec.tif")], "DSM": ctx / "dem.tif",
            "PATCH_SIZE": 64, "OVERLAP": 32, "BLOCK_SIZE": 128, "VALIDATION_FRACTION": 0.0, "TEST_FRACTION": 0.0,
            "MIN_VALID_FRACTION": 0.05, "OUTPUT": ctx / "ds"}
    return ctx.qgis("builddataset", **{**base, **params})


def _dataset(folder):
    def check(ctx, answer):
        manifest = json.loads((ctx / folder / "manifest.json").read_text())
        missing = [s["file"] for s in manifest["samples"] if not (ctx / folder / s["file"]).is_file()]
        return f"samples missing: {missing[:3]}" if missing or not manifest["samples"] else None
    return check


@case("builddataset", "a dataset from the pair", succeed=_dataset("ds"))
def plain(ctx):
    return build(ctx)


def _foreign_kept(ctx, answer):
    problem = _dataset("dataset")(ctx, answer)
    if problem:
        return problem
    notes = ctx / "dataset" / "NOTES.txt"
    checkpoint = ctx / "dataset" / "my_checkpoints" / "a.pth"
    kept = notes.is_file() and notes.read_text() == "my notes" and checkpoint.is_file()
    return None if kept else "the user's NOTES.txt or my_checkpoints/ went with the old dataset"


@case("builddataset", "over an existing dataset holding a user's NOTES.txt and my_checkpoints/",
      succeed=_foreign_kept, changes=("dataset/manifest.json", "dataset/train", "dataset/val", "dataset/test"))
def keeps_foreign_files(ctx):
    (ctx / "dataset" / "NOTES.txt").write_text("my notes")
    (ctx / "dataset" / "my_checkpoints").mkdir()
    (ctx / "dataset" / "my_checkpoints" / "a.pth").write_bytes(b"weights")
    return build(ctx, OUTPUT=ctx / "dataset", PATCH_SIZE=32, OVERLAP=0)


@case("builddataset", "over a dataset folder that also holds the input images", succeed=_dataset("dataset"),
      changes=("dataset/manifest.json", "dataset/train", "dataset/val", "dataset/test"))
def inputs_inside_dataset(ctx):
    for name in ("ref.tif", "ref.sensor.json", "sec.tif", "sec.sensor.json"):
        shutil.copy(ctx / name, ctx / "dataset" / name)
    return build(ctx, REFERENCES=[str(ctx / "dataset" / "ref.tif")], SECONDARIES=[str(ctx / "dataset" / "sec.tif")],
                 OUTPUT=ctx / "dataset")


@case("builddataset", "OUTPUT a folder of other files", refuse=r"OUTPUT.*not empty")
def foreign_folder(ctx):
    (ctx / "stuff").mkdir()
    (ctx / "stuff" / "thesis.tex").write_text("\\documentclass{article}")
    return build(ctx, OUTPUT=ctx / "stuff")


@case("builddataset", "OUTPUT the folder holding the inputs", refuse=r"OUTPUT.*not empty")
def inputs_folder(ctx):
    return build(ctx, OUTPUT=ctx.d)


@case("builddataset", "OUTPUT is the reference image", refuse=r"OUTPUT.*(file|REFERENCES)")
def output_is_image(ctx):
    return build(ctx, OUTPUT=ctx / "ref.tif")


@case("builddataset", "OUTPUT a dataset whose manifest is broken", refuse=r"OUTPUT.*not empty")
def broken_manifest(ctx):
    (ctx / "dataset" / "manifest.json").write_text("{broken")
    return build(ctx, OUTPUT=ctx / "dataset")


@case("builddataset", "a DSM far from the pair", refuse=r"DSM.*cover")
def dsm_elsewhere(ctx):
    return build(ctx, DSM=t.crop_dem(ctx / "dem.tif", ctx / "far.tif", shift_deg=5.0))


@case("builddataset", "the reference image as DSM", refuse=r"ref\.tif.*(georeferenced|geotransform)")
def image_as_dsm(ctx):
    return build(ctx, DSM=ctx / "ref.tif")


@case("builddataset", "the same image as reference and secondary", refuse=r"same (image|pixels)")
def same_image(ctx):
    return build(ctx, SECONDARIES=[str(ctx / "ref.tif")])


@case("builddataset", "images in dB", refuse=r"negative|dB")
def images_in_db(ctx):
    db = [t.rewrite_image(ctx / f"{r}.tif", ctx / f"{r}_db.tif", lambda a: 20 * np.log10(np.maximum(a, 1e-6)))
          for r in ("ref", "sec")]
    return build(ctx, REFERENCES=[str(db[0])], SECONDARIES=[str(db[1])])


@case("builddataset", "a secondary sidecar with the wrong look side", refuse=r"look_side")
def look_side(ctx):
    image = t.rewrite_image(ctx / "sec.tif", ctx / "sec2.tif")
    t.set_model(image, t.opposite_look(t.model_doc(ctx / "sec.tif")))
    return build(ctx, SECONDARIES=[str(image)])


@case("builddataset", "PATCH_SIZE larger than the images", refuse=r"PATCH_SIZE")
def patch_too_large(ctx):
    return build(ctx, PATCH_SIZE=256)


@case("builddataset", "two references and one secondary", refuse=r"REFERENCES and SECONDARIES")
def counts_differ(ctx):
    return build(ctx, REFERENCES=[str(ctx / "ref.tif"), str(ctx / "sec.tif")])


@case("builddataset", "MIN_VALID_FRACTION no sample reaches", refuse=r"no sample")
def no_sample(ctx):
    return build(ctx, MIN_VALID_FRACTION=1.0)


@case("builddataset", "HEIGHT_UNCERTAINTY beyond what the range reaches", refuse=r"HEIGHT_UNCERTAINTY")
def uncertainty_collapses(ctx):
    return build(ctx, HEIGHT_UNCERTAINTY=50000.0)


# ================================================================ finetune
def tune(ctx, **params):
    pytest.importorskip("torch")
    base = {"DATASET": ctx / "dataset", "MODEL": 0, "EPOCHS": 1, "BATCH_SIZE": 2, "DEVICE": "cpu",
            "OUTPUT": ctx / "run"}
    return ctx.qgis("finetune", **{**base, **params})


def _weights(ctx, answer):
    return None if (ctx / "run" / "light_sar.pth").is_file() else "no light_sar.pth"


def _samples(ctx):
    manifest = json.loads((ctx / "dataset" / "manifest.json").read_text())
    return manifest, [ctx / "dataset" / s["file"] for s in manifest["samples"]]


def _rewrite_samples(ctx, edit):
    for path in _samples(ctx)[1]:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        np.savez(path, **(edit(arrays) or arrays))


@case("finetune", "two steps of the light matcher", succeed=_weights)
def plain(ctx):
    return tune(ctx)


@case("finetune", "a learning rate that makes the training diverge: no weights", refuse=r"diverged")
def diverges(ctx):
    return tune(ctx, LEARNING_RATE=1e4, EPOCHS=2)


@case("finetune", "a dataset without a single valid pixel: no weights", refuse=r"valid")
def no_valid_pixel(ctx):
    def edit(a):
        a["valid"][:] = 0
        a["warp"][:] = np.nan
    _rewrite_samples(ctx, edit)
    return tune(ctx)


@case("finetune", "NaN in the truth of valid pixels", refuse=r"diverged|NaN|nan")
def nan_truth(ctx):
    def edit(a):
        a["warp"][:] = np.nan
    _rewrite_samples(ctx, edit)
    return tune(ctx)


@case("finetune", "a manifest pointing outside the dataset folder", refuse=r"outside the dataset")
def manifest_outside(ctx):
    manifest, _ = _samples(ctx)
    shutil.copy(ctx / "dataset" / manifest["samples"][0]["file"], ctx / "outside.npz")
    manifest["samples"][0]["file"] = "../outside.npz"
    t.write_json(ctx / "dataset" / "manifest.json", manifest)
    return tune(ctx)


@case("finetune", "a manifest naming an absolute path", refuse=r"outside the dataset")
def manifest_absolute(ctx):
    manifest, files = _samples(ctx)
    manifest["samples"][0]["file"] = str(files[0])
    t.write_json(ctx / "dataset" / "manifest.json", manifest)
    return tune(ctx)


@case("finetune", "a manifest nested 100 000 deep", refuse=r"manifest\.json.*(JSON|nested)")
def manifest_nested(ctx):
    (ctx / "dataset" / "manifest.json").write_text(t.nested_json())
    return tune(ctx)


@case("finetune", "a truncated training sample", refuse=r"\.npz.*(damaged|cannot be read)")
def truncated_sample(ctx):
    t.truncate(_samples(ctx)[1][0], 0.5)
    return tune(ctx)


@case("finetune", "samples of two patch sizes in one dataset", refuse=r"patch|shape|size")
def mixed_patch_sizes(ctx):
    path = _samples(ctx)[1][1]
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key in ("reference", "valid", "warp"):
        arrays[key] = arrays[key][:32, :32]
    arrays["secondary_rc"], arrays["prior"] = arrays["secondary_rc"][:, :32, :32], arrays["prior"][:, :32, :32]
    np.savez(path, **arrays)
    return tune(ctx)


@case("finetune", "DATASET is a folder that is no dataset", refuse=r"manifest|not a dataset")
def not_a_dataset(ctx):
    (ctx / "empty").mkdir()
    return tune(ctx, DATASET=ctx / "empty")


@case("finetune", "OUTPUT holds an earlier run and RESUME is off", refuse=r"RESUME")
def earlier_run(ctx):
    (ctx / "run").mkdir()
    (ctx / "run" / "last.pth").write_bytes(b"x")
    return tune(ctx)


@case("finetune", "RESUME from a corrupt last.pth", refuse=r"last\.pth.*(checkpoint|read)")
def corrupt_checkpoint(ctx):
    (ctx / "run").mkdir()
    (ctx / "run" / "last.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    return tune(ctx, RESUME=True)


@case("finetune", "WEIGHTS is the light_sar.pth the run would write", refuse=r"WEIGHTS")
def weights_overwritten(ctx):
    (ctx / "run").mkdir()
    shutil.copy(t.light_weights(), ctx / "run" / "light_sar.pth")
    return tune(ctx, WEIGHTS=ctx / "run" / "light_sar.pth")


@case("finetune", "OUTPUT is the DATASET folder", refuse=r"OUTPUT.*DATASET")
def output_is_dataset(ctx):
    return tune(ctx, OUTPUT=ctx / "dataset")


@case("finetune", "WEIGHTS that are a text file", refuse=r"notes\.pth.*(checkpoint|PyTorch)")
def weights_text(ctx):
    (ctx / "notes.pth").write_text("not weights")
    return tune(ctx, WEIGHTS=ctx / "notes.pth")


@case("finetune", "a training sample that is a FIFO", refuse=r"regular|FIFO", timeout=180)
def sample_fifo(ctx):
    pytest.importorskip("torch")
    path = _samples(ctx)[1][0]
    path.unlink()
    t.fifo(path)
    return ctx.isolated("""
        from sar_stereo_plugin.core.training.finetune import finetune
        return finetune(D / "dataset", D / "run", steps=2, batch_size=2, device="cpu")""", timeout=150)


# ================================================================ installdeps
@contextmanager
def _deps_dir(path):
    old = os.environ.get("SARSTEREO_DEPS_DIR")
    os.environ["SARSTEREO_DEPS_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SARSTEREO_DEPS_DIR", None)
        else:
            os.environ["SARSTEREO_DEPS_DIR"] = old


def deps(ctx, folder, **params):
    with _deps_dir(folder):
        return ctx.qgis("installdeps", **params)


@case("installdeps", "Check with nothing installed", refuse=r"nothing is installed")
def check_nothing(ctx):
    return deps(ctx, ctx / "deps", ACTION=1)


@case("installdeps", "Remove with nothing installed", succeed=lambda ctx, a: None)
def remove_nothing(ctx):
    return deps(ctx, ctx / "deps", ACTION=2)


@case("installdeps", "Remove where SARSTEREO_DEPS_DIR points at a user's folder", refuse=r"SARSTEREO_DEPS_DIR")
def remove_user_folder(ctx):
    (ctx / "photos").mkdir()
    (ctx / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    return deps(ctx, ctx / "photos", ACTION=2)


@case("installdeps", "Install where SARSTEREO_DEPS_DIR points at a user's folder", refuse=r"SARSTEREO_DEPS_DIR")
def install_user_folder(ctx):
    (ctx / "photos").mkdir()
    (ctx / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    return deps(ctx, ctx / "photos", ACTION=0)


@case("installdeps", "Remove where SARSTEREO_DEPS_DIR is a file", refuse=r"SARSTEREO_DEPS_DIR")
def remove_file(ctx):
    return deps(ctx, ctx / "ref.tif", ACTION=2)


@case("installdeps", "Remove an install (its manifest and packages)", succeed=lambda ctx, a: None if not (
    ctx / "deps").exists() else "the install is still there", changes=("deps",))
def remove_install(ctx):
    (ctx / "deps" / "torch").mkdir(parents=True)
    (ctx / "deps" / "torch" / "__init__.py").write_text("")
    (ctx / "deps" / "sarstereo_deps.json").write_text(json.dumps({"torch": "torch==2.13.0+cpu"}))
    return deps(ctx, ctx / "deps", ACTION=2)
