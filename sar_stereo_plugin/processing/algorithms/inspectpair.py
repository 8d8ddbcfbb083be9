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
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..common import layer_path, load_model, user_errors
from ..styling import qml, style_on_load


class InspectPair(QgsProcessingAlgorithm):
    REFERENCE = "REFERENCE"
    SECONDARY = "SECONDARY"
    REFERENCE_MODEL = "REFERENCE_MODEL"
    SECONDARY_MODEL = "SECONDARY_MODEL"
    DEM = "DEM"
    HEIGHT = "HEIGHT"
    FOOTPRINTS = "FOOTPRINTS"
    REPORT = "REPORT"

    def name(self):
        return "inspectpair"

    def displayName(self):  # noqa: N802 - QGIS API
        return "Inspect stereo pair"

    def group(self):
        return "Pair geometry"

    def groupId(self):  # noqa: N802 - QGIS API
        return "geometry"

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return ("Checks whether two slant-range SAR images can be matched into heights: image footprints "
                "on the ground, overlap fraction, intersection (convergence) angle and height sensitivity "
                "(metres of height per pixel of range disparity) over the overlap, look sides; with a DEM, "
                "the layover and shadow fractions of each view.\n\n"
                "Sensor models are read from the image (GeoTIFF metadata SARSTEREO_SENSOR, a sidecar "
                "<image>.sensor.json, or a NISAR RSLC HDF5 product) unless a sarstereo.sensor/1 JSON file "
                "is given. A pair that cannot work (no overlap, nearly parallel views) is an error.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return InspectPair()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference SAR image (slant range)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.SECONDARY, "Secondary SAR image (slant range)"))
        for key, role in ((self.REFERENCE_MODEL, "reference"), (self.SECONDARY_MODEL, "secondary")):
            self.addParameter(QgsProcessingParameterFile(
                key, f"Sensor model of the {role} image (JSON, instead of the one found with the image)",
                extension="json", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, "DEM (heights above the WGS84 ellipsoid)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.HEIGHT, "Ground height where no DEM is given (m above the ellipsoid; "
                         "empty: the median height of the reference image's GCPs, else 0)",
            QgsProcessingParameterNumber.Double, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.FOOTPRINTS, "Footprints", QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, "Report", "JSON files (*.json)"))
        for key, label in (("OVERLAP_FRACTION", "Overlap fraction"),
                           ("INTERSECTION_ANGLE", "Median intersection angle (deg)"),
                           ("HEIGHT_SENSITIVITY", "Median height sensitivity (m per pixel)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.pair import inspect_pair
        from ...core.raster import gcp_height
        paths = {key: layer_path(self.parameterAsRasterLayer(parameters, key, context))
                 for key in (self.REFERENCE, self.SECONDARY)}
        dem_layer = self.parameterAsRasterLayer(parameters, self.DEM, context)
        height = parameters.get(self.HEIGHT)
        if height not in (None, ""):
            height = self.parameterAsDouble(parameters, self.HEIGHT, context)
        elif dem_layer is None:  # GCP heights of a simulated or geocoded product place it best
            height = gcp_height(paths[self.REFERENCE])
        with user_errors():
            ref = load_model(paths[self.REFERENCE], self.parameterAsFile(parameters, self.REFERENCE_MODEL, context))
            sec = load_model(paths[self.SECONDARY], self.parameterAsFile(parameters, self.SECONDARY_MODEL, context))
            feedback.setProgress(10)
            report = inspect_pair(ref, sec, dem=layer_path(dem_layer) if dem_layer else None, height=height)
        feedback.setProgress(90)
        doc = {"reference": paths[self.REFERENCE], "secondary": paths[self.SECONDARY], **report.to_dict()}
        text = json.dumps(doc, indent=2)
        feedback.pushInfo(text)
        report_path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with open(report_path, "w", encoding="utf-8") as fh:
            fh.write(text)

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
        style_on_load(context, sink_id, qml("footprints"))
        feedback.setProgress(100)
        return {self.FOOTPRINTS: sink_id, self.REPORT: report_path,
                "OVERLAP_FRACTION": report.overlap_fraction,
                "INTERSECTION_ANGLE": report.intersection_angle_deg["median"],
                "HEIGHT_SENSITIVITY": report.height_sensitivity_m_per_px["median"]}
