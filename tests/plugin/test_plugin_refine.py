"""sarstereo:refinepair as a QGIS user runs it: refined models that matchpair takes, styled tie
points in the run's group, ground control from a point layer, and clear errors."""

import json
import subprocess

import pytest
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from sar_stereo_plugin.core.corrections import misplaced
from sar_stereo_plugin.core.products import read_sensor_model
from sar_stereo_plugin.core.sensor import SensorModel


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A small pair over the embedded Jacksboro DEM, its secondary model 5 lines and 2 samples off."""
    from sar_stereo_plugin.core.dem import load_default_dem
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    tmp = tmp_path_factory.mktemp("refinepair")
    paths = {k: str(tmp / f"{k}.tif") for k in ("reference", "secondary", "source")}
    simulate_pair(None, FlightDesign(rows=400, cols=400, pixel_spacing_m=7.5, altitude_m=9000.0), seed=2,
                  reference_output=paths["reference"], secondary_output=paths["secondary"])
    load_default_dem().write(paths["source"])
    paths["dem"] = str(tmp / "dem300.tif")
    subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:32616", "-tr", "300", "300", "-r", "average", paths["source"],
                    paths["dem"]], check=True)
    sec = read_sensor_model(paths["secondary"])
    biased = misplaced(sec, lines=5, samples=2)
    paths["biased"] = str(tmp / "biased.json")
    (tmp / "biased.json").write_text(biased.to_json())
    paths["tmp"] = tmp
    return paths


def test_refinepair_writes_models_that_matchpair_takes_and_styled_tie_points(plugin, pair, tmp_path,
                                                                            qgis_new_project):
    import processing
    out = {"REFINED_REFERENCE_MODEL": str(tmp_path / "ref.json"), "REFINED_SECONDARY_MODEL": str(tmp_path / "sec.json"),
           "TIE_POINTS": str(tmp_path / "ties.gpkg"), "REPORT": str(tmp_path / "report.json")}
    result = processing.runAndLoadResults("sarstereo:refinepair", {
        "REFERENCE": pair["reference"], "SECONDARY": pair["secondary"], "SECONDARY_MODEL": pair["biased"],
        "REFERENCE_DEM": pair["dem"], **out})
    assert result["MISCLOSURE_BEFORE"] > 4 and result["MISCLOSURE_AFTER"] < 0.5
    assert result["TIE_POINTS_USED"] > 300
    refined = SensorModel.from_json(out["REFINED_SECONDARY_MODEL"])
    assert refined.corrections is not None
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["corrections"]["secondary"]["azimuth_offset"]["px"] == pytest.approx(5.0, abs=0.1)
    assert (tmp_path / "report.html").exists()
    groups = QgsProject.instance().layerTreeRoot().findGroups()
    assert len(groups) == 1 and groups[0].name().endswith("refined models")
    (layer,) = [node.layer() for node in groups[0].findLayers()]
    assert layer.name() == "Tie points" and isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert [c.label() for c in layer.renderer().categories()] == ["used", "rejected as inconsistent"]
    matches = str(tmp_path / "matches.tif")
    done = processing.run("sarstereo:matchpair", {
        "REFERENCE": pair["reference"], "SECONDARY": pair["secondary"], "MATCHER": 2, "PATCH_SIZE": 256,
        "REFERENCE_MODEL": out["REFINED_REFERENCE_MODEL"], "SECONDARY_MODEL": out["REFINED_SECONDARY_MODEL"],
        "OUTPUT": matches})
    assert done["MATCHED_FRACTION"] > 0.5


def _gcp_layer(points, with_height=True):
    layer = QgsVectorLayer("Point?crs=EPSG:4326", "gcps", "memory")
    layer.dataProvider().addAttributes([QgsField("name", QVariant.String)]
                                       + ([QgsField("height", QVariant.Double)] if with_height else []))
    layer.updateFields()
    for i, (lon, lat, h) in enumerate(points):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(lon), float(lat))))
        feature.setAttributes([f"p{i}"] + ([float(h)] if with_height else []))
        layer.dataProvider().addFeature(feature)
    return layer


def test_gcps_control_the_heights_and_a_missing_height_field_is_named(plugin, pair, tmp_path):
    import numpy as np
    import processing

    from sar_stereo_plugin.core.dem import open_dem
    ref = read_sensor_model(pair["reference"])
    rows, cols = np.meshgrid(np.linspace(40, 360, 6), np.linspace(40, 360, 6), indexing="ij")
    lon, lat, h = ref.rdr2geo(rows, cols, dem=open_dem(pair["source"]))
    layer = _gcp_layer(zip(lon.ravel(), lat.ravel(), h.ravel()))
    result = processing.run("sarstereo:refinepair", {
        "REFERENCE": pair["reference"], "SECONDARY": pair["secondary"], "SECONDARY_MODEL": pair["biased"],
        "GCPS": layer, "GCP_HEIGHT_FIELD": "height", "REPORT": str(tmp_path / "report.json"),
        "REFINED_REFERENCE_MODEL": str(tmp_path / "ref.json"), "REFINED_SECONDARY_MODEL": str(tmp_path / "sec.json")})
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gcp_difference_m"]["before"]["count"] >= 20  # most GCPs have a tie point near them
    gcp = report["gcp_difference_m"]
    assert abs(gcp["after"]["median"]) < 3.0 < abs(gcp["before"]["median"])
    assert result["MISCLOSURE_AFTER"] < 0.5
    with pytest.raises(QgsProcessingException, match="GCP_HEIGHT_FIELD.*numeric fields: none"):
        processing.run("sarstereo:refinepair", {
            "REFERENCE": pair["reference"], "SECONDARY": pair["secondary"],
            "GCPS": _gcp_layer([(lon.flat[0], lat.flat[0], 0.0)], with_height=False),
            "REFINED_REFERENCE_MODEL": str(tmp_path / "r.json"), "REFINED_SECONDARY_MODEL": str(tmp_path / "s.json")})
    assert not (tmp_path / "r.json").exists()
