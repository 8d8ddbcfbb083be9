"""The plugin as QGIS sees it: loading, provider, inspectpair, qgis_process, packaging."""

import configparser
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer, QgsVectorLayer

ROOT = Path(__file__).resolve().parents[2]


def test_provider_and_algorithm_registered(plugin):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("sarstereo")
    assert provider is not None and provider.name() == "SAR stereo radargrammetry"
    assert not provider.icon().isNull()
    assert provider.svgIconPath().startswith(":/plugins/sar_stereo_plugin/")  # from resources.qrc
    assert registry.algorithmById("sarstereo:inspectpair") is not None


def test_unload_removes_provider(qgis_iface, qgis_processing):
    import sar_stereo_plugin
    registry = QgsApplication.processingRegistry()
    plugin = sar_stereo_plugin.classFactory(qgis_iface)
    plugin.initProcessing()
    assert registry.providerById("sarstereo") is not None
    plugin.unload()
    assert registry.providerById("sarstereo") is None
    assert registry.algorithmById("sarstereo:inspectpair") is None


def test_metadata_complete():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    general = meta["general"]
    for key in ("name", "description", "about", "version", "author", "email", "tracker", "repository",
                "changelog", "icon"):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"


def test_provider_loads_without_torch(without_torch):
    """The provider and the classical algorithms must not need torch or romatch."""
    code = without_torch + """
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
from sar_stereo_plugin.processing.provider import SarStereoProvider
p = SarStereoProvider(); QgsApplication.processingRegistry().addProvider(p)
print(sorted(a.id() for a in p.algorithms()))
assert 'torch' not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert out.returncode == 0, out.stderr
    assert "sarstereo:inspectpair" in out.stdout


@pytest.fixture
def winnipeg_layer(winnipeg, qgis_new_project):
    """The UAVSAR HDF5 image as QGIS adds it (a GDAL subdataset). The project owns the layer, so
    it is deleted before QGIS exits rather than whenever Python collects it."""
    from qgis.core import QgsProject
    layer = QgsRasterLayer(f'HDF5:"{winnipeg / "winnipeg.h5"}"://science/LSAR/SLC/swaths/frequencyA/HH',
                           "winnipeg HH")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


def _second_view_of(model_path, tmp_path, incidence_offset_deg):
    """A GeoTIFF carrying a designed right-looking model over the centre of a real scene."""
    from sar_stereo_plugin.core.flight import level_flight_model
    from sar_stereo_plugin.core.products import read_sensor_model, write_image
    from sar_stereo_plugin.core.stereo import look_angles
    ref = read_sensor_model(model_path)
    lon, lat, h = ref.rdr2geo(ref.rows / 2, ref.cols / 2, height=240.0)
    heading, incidence = look_angles(ref, float(lon), float(lat), 240.0)
    sec = level_flight_model(float(lon), float(lat), 240.0, heading, 12500.0, incidence + incidence_offset_deg,
                             look_side=ref.look_side, wavelength_m=ref.wavelength_m, range_spacing_m=6.0,
                             azimuth_spacing_m=6.0, rows=300, cols=300)
    path = tmp_path / "second_view.tif"
    write_image(path, np.ones((sec.rows, sec.cols), np.float32), sec)
    return path, incidence


def test_inspectpair_on_winnipeg(plugin, winnipeg_layer, tmp_path):
    import processing
    second, incidence = _second_view_of(winnipeg_layer.source(), tmp_path, 15.0)
    result = processing.run("sarstereo:inspectpair", {
        "REFERENCE": winnipeg_layer, "SECONDARY": str(second), "HEIGHT": 240.0,
        "FOOTPRINTS": str(tmp_path / "footprints.gpkg"), "REPORT": str(tmp_path / "report.json")})
    report = json.loads(Path(result["REPORT"]).read_text())
    assert report["look_sides"] == {"reference": "left", "secondary": "left"}
    assert report["overlap_fraction"] > 0.3
    # same heading, incidences differing by 15 degrees: convergence angle ~15 degrees at the centre
    assert report["intersection_angle_deg"]["median"] == pytest.approx(15.0, abs=1.5)
    assert result["INTERSECTION_ANGLE"] == report["intersection_angle_deg"]["median"]
    assert 0 < report["height_sensitivity_m_per_px"]["median"] < 100
    assert report["incidence_deg"]["secondary"] == pytest.approx(incidence + 15.0, abs=0.5)
    layer = QgsVectorLayer(result["FOOTPRINTS"], "fp", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    roles = {f["role"]: f.geometry().area() for f in layer.getFeatures()}
    assert set(roles) == {"reference", "secondary"} and min(roles.values()) > 0
    # the UAVSAR scene is near 49.5N, 98W (its HDF5 bounding polygon)
    centre = layer.extent().center()
    assert -99.0 < centre.x() < -97.5 and 49.2 < centre.y() < 50.1


def test_inspectpair_rejects_parallel_views(plugin, winnipeg_layer, tmp_path):
    import processing
    with pytest.raises(QgsProcessingException, match="nearly the same direction"):
        processing.run("sarstereo:inspectpair", {
            "REFERENCE": winnipeg_layer, "SECONDARY": winnipeg_layer, "HEIGHT": 240.0,
            "FOOTPRINTS": "memory:", "REPORT": str(tmp_path / "r.json")})


def test_inspectpair_names_file_without_model(plugin, tmp_path):
    import processing

    from sar_stereo_plugin.core.raster import write_geotiff
    bare = tmp_path / "bare.tif"
    write_geotiff(bare, np.ones((10, 10)))
    with pytest.raises(QgsProcessingException, match=r"bare\.tif: no sensor model found"):
        processing.run("sarstereo:inspectpair", {"REFERENCE": str(bare), "SECONDARY": str(bare),
                                                 "FOOTPRINTS": "memory:", "REPORT": str(tmp_path / "r.json")})


def test_qgis_process_lists_algorithm():
    out = subprocess.run(["make", "-s", "process", "ARGS=list"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "sarstereo:inspectpair" in out.stdout


def test_package_zip_installable():
    out = subprocess.run(["make", "-s", "package"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    zips = sorted((ROOT / "dist").glob("sar_stereo_plugin-*.zip"))
    names = set(zipfile.ZipFile(zips[-1]).namelist())
    for required in ("metadata.txt", "__init__.py", "resources_rc.py", "icon.svg", "processing/provider.py"):
        assert f"sar_stereo_plugin/{required}" in names
    assert not any("__pycache__" in n for n in names)


def test_footprints_load_styled(plugin, winnipeg_layer, tmp_path):
    """runAndLoadResults (what the Toolbox does) loads the footprints with the bundled style."""
    import processing
    from qgis.core import QgsProject
    second, _ = _second_view_of(winnipeg_layer.source(), tmp_path, 15.0)
    processing.runAndLoadResults("sarstereo:inspectpair", {
        "REFERENCE": winnipeg_layer, "SECONDARY": str(second), "HEIGHT": 240.0,
        "FOOTPRINTS": "TEMPORARY_OUTPUT", "REPORT": str(tmp_path / "r.json")})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.type() == lyr.VectorLayer]
    assert len(layers) == 1
    renderer = layers[0].renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "role"
    assert {c.value() for c in renderer.categories()} == {"reference", "secondary"}


def test_deploy_installs_and_enables(tmp_path):
    profile = tmp_path / "profile"
    out = subprocess.run(["make", "-s", "deploy", f"QGIS_PROFILE_DIR={profile}"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (profile / "python/plugins/sar_stereo_plugin/metadata.txt").is_file()
    settings = configparser.ConfigParser()
    settings.read(profile / "QGIS/QGIS3.ini")
    assert settings["PythonPlugins"]["sar_stereo_plugin"] == "true"
