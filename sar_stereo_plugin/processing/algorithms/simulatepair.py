"""sarstereo:simulatepair — a realistic SAR stereo pair from a DEM, with exact ground truth."""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..common import layer_path, user_errors
from ..styling import amplitude_db, qml, style_on_load

LOOK_SIDES = ("right", "left")
FORMATS = (("geotiff", "GeoTIFF with sensor model"), ("sicd", "SICD NITF (import it with sarstereo:importproduct)"))


class SimulatePair(QgsProcessingAlgorithm):
    DEM = "DEM"
    DEM_OUTPUT = "DEM_OUTPUT"
    LOOK_SIDE = "LOOK_SIDE"
    HEADING = "HEADING"
    ALTITUDE = "ALTITUDE"
    REFERENCE_INCIDENCE = "REFERENCE_INCIDENCE"
    SECONDARY_INCIDENCE = "SECONDARY_INCIDENCE"
    OPPOSITE_SIDE = "OPPOSITE_SIDE"
    WAVELENGTH = "WAVELENGTH"
    PIXEL_SPACING = "PIXEL_SPACING"
    LOOKS = "LOOKS"
    SEED = "SEED"
    ROWS = "ROWS"
    COLS = "COLS"
    REFERENCE_MODEL = "REFERENCE_MODEL"
    SECONDARY_MODEL = "SECONDARY_MODEL"
    FORMAT = "FORMAT"
    REFERENCE_OUTPUT = "REFERENCE_OUTPUT"
    SECONDARY_OUTPUT = "SECONDARY_OUTPUT"
    GROUND_TRUTH_OUTPUT = "GROUND_TRUTH_OUTPUT"

    def name(self):
        return "simulatepair"

    def displayName(self):  # noqa: N802 - QGIS API
        return "Simulate SAR stereo pair"

    def group(self):
        return "Simulation"

    def groupId(self):  # noqa: N802 - QGIS API
        return "simulation"

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return ("Renders two slant-range SAR amplitude images of a DEM as seen from two level flights, "
                "with layover, foreshortening, radar shadow and speckle, and the exact ground truth: for "
                "every reference pixel the secondary row/col it corresponds to (bands 1-2), validity (3), "
                "ground height (4), layover (5) and shadow (6) flags.\n\n"
                "Without a DEM the embedded Jacksboro fault DEM (Tennessee, 3 arc-seconds) is used. "
                "Incidence angles apply at the scene centre (the DEM's centre at its median height). "
                "Same-side stereo uses two incidences from one side; tick 'opposite side' for the "
                "secondary to fly the reverse heading. Two sensor-model JSON files replace the flight "
                "design. The images carry their sensor models (metadata and sidecar) and GCPs.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return SimulatePair()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, "DEM (heights above the WGS84 ellipsoid; empty: embedded Jacksboro DEM)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.LOOK_SIDE, "Look side", options=list(LOOK_SIDES),
                                                     defaultValue=0))
        self.addParameter(number(self.HEADING, "Flight heading (degrees clockwise from north)", number.Double,
                                 defaultValue=0.0, minValue=-360.0, maxValue=360.0))
        self.addParameter(number(self.ALTITUDE, "Flight altitude (m above the ellipsoid)", number.Double,
                                 defaultValue=8000.0, minValue=100.0))
        self.addParameter(number(self.REFERENCE_INCIDENCE, "Reference incidence at scene centre (degrees)",
                                 number.Double, defaultValue=35.0, minValue=10.0, maxValue=80.0))
        self.addParameter(number(self.SECONDARY_INCIDENCE, "Secondary incidence at scene centre (degrees)",
                                 number.Double, defaultValue=55.0, minValue=10.0, maxValue=80.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OPPOSITE_SIDE, "Opposite-side stereo (secondary flies the reverse heading)", defaultValue=False))
        self.addParameter(number(self.WAVELENGTH, "Wavelength (m; X band 0.0312)", number.Double,
                                 defaultValue=0.0312, minValue=1e-4))
        self.addParameter(number(self.PIXEL_SPACING, "Pixel spacing, slant range and azimuth (m)", number.Double,
                                 defaultValue=5.0, minValue=0.01))
        self.addParameter(number(self.LOOKS, "Number of looks (speckle)", number.Double, defaultValue=4.0,
                                 minValue=1.0))
        self.addParameter(number(self.SEED, "Random seed", number.Integer, defaultValue=0, minValue=0))
        advanced = [number(self.ROWS, "Image rows (empty: cover the DEM)", number.Integer, optional=True,
                           minValue=8),
                    number(self.COLS, "Image columns (empty: cover the DEM)", number.Integer, optional=True,
                           minValue=8),
                    QgsProcessingParameterFile(self.REFERENCE_MODEL, "Reference sensor model (JSON; replaces "
                                               "the flight design)", extension="json", optional=True),
                    QgsProcessingParameterFile(self.SECONDARY_MODEL, "Secondary sensor model (JSON; replaces "
                                               "the flight design)", extension="json", optional=True),
                    QgsProcessingParameterEnum(self.FORMAT, "Image format", options=[f[1] for f in FORMATS],
                                               defaultValue=0)]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.REFERENCE_OUTPUT, "Reference image"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.SECONDARY_OUTPUT, "Secondary image"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.GROUND_TRUTH_OUTPUT, "Ground truth"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.DEM_OUTPUT, "DEM the pair was simulated from (GeoTIFF; for evaluating DEMs made from the pair)",
            optional=True, createByDefault=False))
        for key, label in (("LAYOVER_FRACTION", "Layover fraction (reference)"),
                           ("SHADOW_FRACTION", "Shadow fraction (reference)"),
                           ("VALID_FRACTION", "Valid ground-truth fraction")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.dem import open_dem
        from ...core.flight import FlightDesign
        from ...core.raster import amplitude_db_range
        from ...core.simulate import simulate_pair
        dem_layer = self.parameterAsRasterLayer(parameters, self.DEM, context)
        ref_json = self.parameterAsFile(parameters, self.REFERENCE_MODEL, context)
        sec_json = self.parameterAsFile(parameters, self.SECONDARY_MODEL, context)
        optional_int = {key: (self.parameterAsInt(parameters, key, context)
                              if parameters.get(key) not in (None, "") else None) for key in (self.ROWS, self.COLS)}
        flight = FlightDesign(
            look_side=LOOK_SIDES[self.parameterAsEnum(parameters, self.LOOK_SIDE, context)],
            heading_deg=self.parameterAsDouble(parameters, self.HEADING, context),
            altitude_m=self.parameterAsDouble(parameters, self.ALTITUDE, context),
            reference_incidence_deg=self.parameterAsDouble(parameters, self.REFERENCE_INCIDENCE, context),
            secondary_incidence_deg=self.parameterAsDouble(parameters, self.SECONDARY_INCIDENCE, context),
            opposite_side=self.parameterAsBool(parameters, self.OPPOSITE_SIDE, context),
            wavelength_m=self.parameterAsDouble(parameters, self.WAVELENGTH, context),
            pixel_spacing_m=self.parameterAsDouble(parameters, self.PIXEL_SPACING, context),
            rows=optional_int[self.ROWS], cols=optional_int[self.COLS])
        outputs = {key: self.parameterAsOutputLayer(parameters, key, context)
                   for key in (self.REFERENCE_OUTPUT, self.SECONDARY_OUTPUT, self.GROUND_TRUTH_OUTPUT)}
        explicit = bool(ref_json) or bool(sec_json)
        with user_errors():  # with one JSON file only, the core names the missing one
            result = simulate_pair(
                dem=layer_path(dem_layer) if dem_layer else None,
                flight=None if explicit else flight,
                reference=ref_json or None, secondary=sec_json or None,
                looks=self.parameterAsDouble(parameters, self.LOOKS, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                reference_output=outputs[self.REFERENCE_OUTPUT],
                secondary_output=outputs[self.SECONDARY_OUTPUT],
                ground_truth_output=outputs[self.GROUND_TRUTH_OUTPUT],
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled,
                format=FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)][0])
            for key in (self.REFERENCE_OUTPUT, self.SECONDARY_OUTPUT):
                style_on_load(context, outputs[key], amplitude_db(*amplitude_db_range(outputs[key])))
            dem_output = self.parameterAsOutputLayer(parameters, self.DEM_OUTPUT, context)
            if dem_output:
                open_dem(layer_path(dem_layer) if dem_layer else None).write(dem_output)
                outputs[self.DEM_OUTPUT] = dem_output
        style_on_load(context, outputs[self.GROUND_TRUTH_OUTPUT], qml("validity"))
        stats = result.stats
        for key, value in sorted(stats.items()):
            feedback.pushInfo(f"{key}: {value}")
        return {**outputs, "LAYOVER_FRACTION": stats.get("layover_fraction"),
                "SHADOW_FRACTION": stats.get("shadow_fraction"), "VALID_FRACTION": stats.get("valid_fraction")}
