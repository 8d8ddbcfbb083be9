"""sarstereo:inspectpair — can this pair give heights, and how well?"""

import json

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..common import Algorithm, decimals, layer_path, layer_title, number, title, user_errors
from ..styling import on_load, qml, run_group


class InspectPair(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "inspectpair", "geometry"
    DEM = "DEM"
    HEIGHT = "HEIGHT"
    FOOTPRINTS = "FOOTPRINTS"
    REPORT = "REPORT"
    HELP = (
        "Checks whether two slant-range SAR images can be matched into heights: image footprints on the ground, "
        "overlap fraction, intersection (convergence) angle and height sensitivity (metres of height per pixel of "
        "range disparity) over the overlap, look sides; with a DEM, the layover and shadow fractions of each view.",
        "Sensor models are read from the image (GeoTIFF metadata SARSTEREO_SENSOR, a sidecar "
        "<image>.sensor.json, or a NISAR RSLC HDF5 product) unless a sarstereo.sensor/1 JSON file is given. A pair "
        f"that cannot work (no overlap, nearly parallel views) is an error. Next step: {title('matchpair')}.",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_pair()
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, "DEM (heights above the WGS84 ellipsoid)", optional=True))
        self.addParameter(decimals(QgsProcessingParameterNumber(
            self.HEIGHT, "Ground height where no DEM is given (m above the ellipsoid; "
                         "empty: the median height of the reference image's GCPs, else 0)",
            QgsProcessingParameterNumber.Double, optional=True), 1))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.FOOTPRINTS, "Footprints", QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, "Report (JSON)", "JSON files (*.json)"))
        for key, label in (("OVERLAP_FRACTION", "Overlap fraction"),
                           ("INTERSECTION_ANGLE", "Median intersection angle (deg)"),
                           ("HEIGHT_SENSITIVITY", "Median height sensitivity (m per pixel)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core import checks
        from ...core.atomic import atomic_file, check_outputs
        from ...core.pair import inspect_pair
        from ...core.raster import gcp_height
        paths = self.pair_paths(parameters, context)
        dem_layer = self.parameterAsRasterLayer(parameters, self.DEM, context)
        report_path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        model_files = {key: self.parameterAsFile(parameters, key, context)
                       for key in (self.REFERENCE_MODEL, self.SECONDARY_MODEL)}
        height = parameters.get(self.HEIGHT)
        if height not in (None, ""):
            height = self.parameterAsDouble(parameters, self.HEIGHT, context)
        elif dem_layer is None:  # GCP heights of a simulated or geocoded product place it best
            height = gcp_height(paths[self.REFERENCE])
        with user_errors():
            check_outputs({self.REPORT: report_path, self.FOOTPRINTS: self.parameterAsOutputLayer(
                parameters, self.FOOTPRINTS, context) or None}, {**paths, **model_files, self.DEM: dem_layer and
                                                                 layer_path(dem_layer)})
            ref, sec = self.pair_models(parameters, context, paths)
            for key, model in ((self.REFERENCE, ref), (self.SECONDARY, sec)):
                checks.fits(paths[key], model, key)  # footprints of the image given, not another
            feedback.setProgress(10)
            report = inspect_pair(ref, sec, dem=layer_path(dem_layer) if dem_layer else None, height=height)
        feedback.setProgress(90)
        doc = {"reference": paths[self.REFERENCE], "secondary": paths[self.SECONDARY], **report.to_dict()}
        for line in summary(report):
            feedback.pushInfo(line)
        with user_errors(), atomic_file(report_path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")

        fields = QgsFields()
        for name, kind in (("role", QVariant.String), ("image", QVariant.String), ("look_side", QVariant.String),
                           ("heading", QVariant.Double), ("incidence", QVariant.Double)):
            fields.append(QgsField(name, kind))
        sink, sink_id = self.parameterAsSink(parameters, self.FOOTPRINTS, context, fields, QgsWkbTypes.Polygon,
                                             QgsCoordinateReferenceSystem("EPSG:4326"))
        for role, key in (("reference", self.REFERENCE), ("secondary", self.SECONDARY)):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromWkt(doc["footprints_wkt"][role]))
            feature.setAttributes([role, paths[key], report.look_sides[role], report.headings_deg[role],
                                   report.incidence_deg[role]])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        pair = " × ".join(layer_title(self.parameterAsRasterLayer(parameters, key, context))
                          for key in (self.REFERENCE, self.SECONDARY))
        on_load(context, sink_id, run_group(context, pair, "inspection"), "footprints", "Footprints",
                style=qml("footprints"))
        feedback.setProgress(100)
        return {self.FOOTPRINTS: sink_id, self.REPORT: report_path,
                "OVERLAP_FRACTION": report.overlap_fraction,
                "INTERSECTION_ANGLE": report.intersection_angle_deg["median"],
                "HEIGHT_SENSITIVITY": report.height_sensitivity_m_per_px["median"]}


def summary(report):
    """The report as a few readable lines (the JSON file has everything, footprints included)."""
    angle, sens = report.intersection_angle_deg, report.height_sensitivity_m_per_px
    lines = [f"overlap: {number(100 * report.overlap_fraction, 1, '%')} of the reference footprint",
             f"intersection angle: median {number(angle['median'], 1, '°')} "
             f"({number(angle['min'], 1)} to {number(angle['max'], 1, '°')})",
             f"height sensitivity: median {number(sens['median'], 2, 'm')} of height per pixel of disparity "
             f"({number(sens['min'], 2)} to {number(sens['max'], 2, 'm')})",
             f"ground height used: {number(report.reference_height_m, 1, 'm')}"]
    for role in ("reference", "secondary"):
        lines.append(f"{role}: looks {report.look_sides[role]}, heading {number(report.headings_deg[role], 1, '°')}, "
                     f"incidence {number(report.incidence_deg[role], 1, '°')}")
    for role, terrain in (report.terrain or {}).items():
        lines.append(f"{role} over the DEM: layover {number(100 * terrain['layover'], 1, '%')}, shadow "
                     f"{number(100 * terrain['shadow'], 1, '%')}")
    return lines
