"""sarstereo:simulatepair — a realistic SAR stereo pair from a DEM, with exact ground truth."""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..common import Algorithm, decimals, layer_path, layer_title, number, title, user_errors
from ..styling import amplitude_db, on_load, qml, run_group

LOOK_SIDES = ("right", "left")
LOOK_SIDE_LABELS = ("Right", "Left")
FORMATS = (("geotiff", "GeoTIFF with sensor model"), ("sicd", "SICD NITF"))


class SimulatePair(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "simulatepair", "simulation"
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
    HELP = (
        "Renders two slant-range SAR amplitude images of a DEM as seen from two level flights, with layover, "
        "foreshortening, radar shadow and speckle, and the exact ground truth: for every reference pixel the "
        "secondary row/col it corresponds to (bands 1-2), validity (3), ground height (4), layover (5) and shadow "
        "(6) flags.",
        "Without a DEM the embedded Jacksboro fault DEM (Tennessee, 3 arc-seconds) is used. Incidence angles apply "
        "at the scene centre (the DEM's centre at its median height). Same-side stereo uses two incidences from one "
        "side; tick 'Opposite-side stereo' for the secondary to fly the reverse heading. The images carry their "
        "sensor models (metadata and a sidecar <image>.sensor.json) and GCPs.",
        f"Next steps: {title('inspectpair')}, {title('matchpair')}; the ground truth is the input of "
        f"{title('evaluatematches')}, the DEM output that of {title('evaluatedem')}.",
    )
    ADVANCED = {
        ROWS: "image size in azimuth lines; empty: enough to cover the DEM.",
        COLS: "image size in range samples; empty: enough to cover the DEM.",
        REFERENCE_MODEL: "a sarstereo.sensor/1 JSON file that replaces the flight design for the reference view "
                         "(give both).",
        SECONDARY_MODEL: "the same for the secondary view.",
        FORMAT: "GeoTIFF with the sensor model, or SICD NITF (complex, with its SICD metadata) as a real "
                "spotlight or stripmap delivery would come.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, "DEM (heights above the WGS84 ellipsoid; empty: embedded Jacksboro DEM)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.LOOK_SIDE, "Look side", options=list(LOOK_SIDE_LABELS),
                                                     defaultValue=0))
        self.addParameter(decimals(num(self.HEADING, "Flight heading (degrees clockwise from north)", num.Double,
                                       defaultValue=0.0, minValue=-360.0, maxValue=360.0), 1))
        self.addParameter(decimals(num(self.ALTITUDE, "Flight altitude (m above the ellipsoid)", num.Double,
                                       defaultValue=8000.0, minValue=100.0), 0))
        self.addParameter(decimals(num(self.REFERENCE_INCIDENCE, "Reference incidence at scene centre (degrees)",
                                       num.Double, defaultValue=35.0, minValue=10.0, maxValue=80.0), 1))
        self.addParameter(decimals(num(self.SECONDARY_INCIDENCE, "Secondary incidence at scene centre (degrees)",
                                       num.Double, defaultValue=55.0, minValue=10.0, maxValue=80.0), 1))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OPPOSITE_SIDE, "Opposite-side stereo (secondary flies the reverse heading)", defaultValue=False))
        self.addParameter(decimals(num(self.WAVELENGTH, "Wavelength (m; X band 0.0312)", num.Double,
                                       defaultValue=0.0312, minValue=1e-4), 4))
        self.addParameter(decimals(num(self.PIXEL_SPACING, "Pixel spacing, slant range and azimuth (m)", num.Double,
                                       defaultValue=5.0, minValue=0.01), 2))
        self.addParameter(decimals(num(self.LOOKS, "Number of looks (speckle)", num.Double, defaultValue=4.0,
                                       minValue=1.0), 1))
        self.addParameter(num(self.SEED, "Random seed", num.Integer, defaultValue=0, minValue=0))
        self.advanced(num(self.ROWS, "Image rows (empty: cover the DEM)", num.Integer, optional=True, minValue=8),
                      num(self.COLS, "Image columns (empty: cover the DEM)", num.Integer, optional=True, minValue=8),
                      QgsProcessingParameterFile(self.REFERENCE_MODEL, "Reference sensor model (JSON)",
                                                 extension="json", optional=True),
                      QgsProcessingParameterFile(self.SECONDARY_MODEL, "Secondary sensor model (JSON)",
                                                 extension="json", optional=True),
                      QgsProcessingParameterEnum(self.FORMAT, "Image format", options=[f[1] for f in FORMATS],
                                                 defaultValue=0))
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
        dem_output = self.parameterAsOutputLayer(parameters, self.DEM_OUTPUT, context) or None
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
                format=FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)][0], dem_output=dem_output)
            if dem_output:
                outputs[self.DEM_OUTPUT] = dem_output
            styles = {key: amplitude_db(*amplitude_db_range(outputs[key]))
                      for key in (self.REFERENCE_OUTPUT, self.SECONDARY_OUTPUT)}
        run = run_group(context, layer_title(dem_layer) if dem_layer else "Jacksboro DEM", "simulated pair")
        for key, kind, name in ((self.REFERENCE_OUTPUT, "reference", "Reference image"),
                                (self.SECONDARY_OUTPUT, "secondary", "Secondary image")):
            on_load(context, outputs[key], run, kind, name, style=styles[key])
        on_load(context, outputs[self.GROUND_TRUTH_OUTPUT], run, "truth", "Ground truth (valid pixels)",
                style=qml("validity"))
        if self.DEM_OUTPUT in outputs:
            on_load(context, outputs[self.DEM_OUTPUT], run, "dem", "Source DEM")
        stats = result.stats
        feedback.pushInfo(f"reference: layover {number(100 * stats['layover_fraction'], 1, '%')}, shadow "
                          f"{number(100 * stats['shadow_fraction'], 1, '%')}, valid ground truth "
                          f"{number(100 * stats['valid_fraction'], 1, '%')} of {stats['seen_pixels']} pixels seeing "
                          f"the DEM; secondary: layover {number(100 * stats['secondary_layover_fraction'], 1, '%')}, "
                          f"shadow {number(100 * stats['secondary_shadow_fraction'], 1, '%')}; truth surface error "
                          f"{number(stats['truth_surface_error_m'], 2, 'm')}")
        return {**outputs, "LAYOVER_FRACTION": stats.get("layover_fraction"),
                "SHADOW_FRACTION": stats.get("shadow_fraction"), "VALID_FRACTION": stats.get("valid_fraction")}
