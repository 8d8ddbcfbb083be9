"""sarstereo:refinepair — correct the sensor models of a pair from the images (and a DEM or GCPs)."""

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ...core.matchers import MATCHERS
from ..common import Algorithm, layer_path, layer_title, optional_number, title, user_errors, weights_folder
from ..styling import on_load, run_group, tie_points
from .matchpair import MATCHER_LABELS


class RefinePair(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "refinepair", "geometry"
    REFERENCE_DEM = "REFERENCE_DEM"
    GCPS = "GCPS"
    GCP_HEIGHT_FIELD = "GCP_HEIGHT_FIELD"
    MATCHER = "MATCHER"
    TIE_STEP = "TIE_STEP"
    HEIGHT_PRIOR = "HEIGHT_PRIOR"
    HEIGHT_UNCERTAINTY = "HEIGHT_UNCERTAINTY"
    COARSE_SEARCH = "COARSE_SEARCH"
    DEM_ACCURACY = "DEM_ACCURACY"
    REFINED_REFERENCE_MODEL = "REFINED_REFERENCE_MODEL"
    REFINED_SECONDARY_MODEL = "REFINED_SECONDARY_MODEL"
    TIE_POINTS = "TIE_POINTS"
    REPORT = "REPORT"
    HELP = (
        "Corrects the sensor models of a pair whose metadata is off by pixels (timing, range delay, trajectory "
        "errors), from the images themselves. A coarse registration of strongly multilooked images first finds "
        "where the secondary really is; tie points are then matched on a grid and the corrections solved by robust "
        "least squares so that the tie points' range/Doppler equations close (relative orientation).",
        "Tie points alone cannot tell a common shift of both images, nor any slant-range error (two range spheres "
        "always meet): these are held and named in the report, and a range error would shift every height. A "
        "reference DEM (any CRS and resolution, heights above the WGS84 ellipsoid: SRTM, Copernicus DEM, ...) or "
        "ground control points (a point layer with a height field) solve them too (absolute orientation), as well "
        "as the terrain and the DEM's resolution allow: the report gives each correction's standard deviation.",
        "Outputs: the refined models (sarstereo.sensor/1 JSON with a 'corrections' section), the tie points with "
        "their misclosure before and after and whether they were used, and a report (JSON, with an HTML page and "
        f"a figure). Next step: {title('matchpair')} with the refined models as its sensor models.",
    )
    ADVANCED = {
        "TIE_STEP": "tie points are taken on a grid this many reference pixels apart, where the matcher is most "
                    "certain (the more certain half of its matches).",
        "HEIGHT_PRIOR": "the height around which matching searches; empty: the reference DEM's median height, "
                        "else the ground control points', else the reference image's GCP height.",
        "HEIGHT_UNCERTAINTY": "how far the terrain may lie from the height prior.",
        "COARSE_SEARCH": "the coarse registration finds where the secondary sits against its model up to this "
                         "many pixels away.",
        "DEM_ACCURACY": "the reference DEM's own horizontal accuracy: a correction is applied only where it stands "
                        "clear of how far a DEM misplaced by this much would pull it, together with its standard "
                        "deviation (within that, the DEM cannot tell it from its own error).",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.add_pair()
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_DEM, "Reference DEM for absolute control (heights above the WGS84 ellipsoid)",
            optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.GCPS, "Ground control points", [QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.GCP_HEIGHT_FIELD, "Height field of the ground control points (m above the ellipsoid)",
            parentLayerParameterName=self.GCPS, type=QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.MATCHER, "Matcher for the tie points",
                                                     options=[MATCHER_LABELS[m] for m in MATCHERS],
                                                     defaultValue=MATCHERS.index("poc")))
        self.advanced(
            number(self.TIE_STEP, "Tie points every (reference pixels)", number.Integer, defaultValue=8, minValue=1),
            number(self.HEIGHT_PRIOR, "Height prior (m above the ellipsoid; empty: the reference DEM's median, "
                                      "else the GCPs', else the reference image's GCP height)", number.Double,
                   optional=True),
            number(self.HEIGHT_UNCERTAINTY, "Height uncertainty of the prior (± m)", number.Double,
                   defaultValue=300.0, minValue=0.0),
            number(self.COARSE_SEARCH, "Coarse registration search (secondary pixels)", number.Integer,
                   defaultValue=64, minValue=0, maxValue=4096),
            number(self.DEM_ACCURACY, "Horizontal accuracy of the reference DEM (m)", number.Double,
                   defaultValue=5.0, minValue=0.0))
        for key, label in ((self.REFINED_REFERENCE_MODEL, "Refined reference sensor model"),
                           (self.REFINED_SECONDARY_MODEL, "Refined secondary sensor model")):
            self.addParameter(QgsProcessingParameterFileDestination(key, label, "JSON files (*.json)"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.TIE_POINTS, "Tie points", QgsProcessing.TypeVectorPoint, optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Refinement report", "JSON files (*.json)",
                                                                optional=True, createByDefault=True))
        for key, label in (("TIE_POINTS_USED", "Tie points used"),
                           ("MISCLOSURE_BEFORE", "Median |misclosure| before (lines)"),
                           ("MISCLOSURE_AFTER", "Median |misclosure| after (lines)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.matchers import create_matcher
        from ...core.refine import RefineSettings
        from ...core.refine_pair import refine_pair
        paths = self.pair_paths(parameters, context)
        dem = self.parameterAsRasterLayer(parameters, self.REFERENCE_DEM, context)
        gcps = self._gcps(parameters, context)
        settings = RefineSettings(
            tie_step_px=self.parameterAsInt(parameters, self.TIE_STEP, context),
            height_prior=optional_number(self, parameters, self.HEIGHT_PRIOR, context),
            height_uncertainty_m=self.parameterAsDouble(parameters, self.HEIGHT_UNCERTAINTY, context),
            coarse_search_px=self.parameterAsInt(parameters, self.COARSE_SEARCH, context),
            dem_accuracy_m=self.parameterAsDouble(parameters, self.DEM_ACCURACY, context))
        outputs = {key: self.parameterAsFileOutput(parameters, key, context) or None
                   for key in (self.REFINED_REFERENCE_MODEL, self.REFINED_SECONDARY_MODEL, self.REPORT)}
        ties = self.parameterAsOutputLayer(parameters, self.TIE_POINTS, context) or None
        with user_errors():
            models = self.pair_models(parameters, context, paths)
            matcher = create_matcher(MATCHERS[self.parameterAsEnum(parameters, self.MATCHER, context)],
                                     weights_dir=weights_folder())
            feedback.pushInfo(f"tie points from: {matcher.describe()}")
            result = refine_pair(paths[self.REFERENCE], paths[self.SECONDARY], reference_model=models[0],
                                 secondary_model=models[1], reference_dem=layer_path(dem) if dem else None,
                                 gcps=gcps, matcher=matcher, settings=settings,
                                 refined_reference_model=outputs[self.REFINED_REFERENCE_MODEL],
                                 refined_secondary_model=outputs[self.REFINED_SECONDARY_MODEL],
                                 tie_points_output=ties, report=outputs[self.REPORT],
                                 progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
        self._log(result, feedback)
        if ties:
            pair = " × ".join(layer_title(self.parameterAsRasterLayer(parameters, key, context))
                              for key in (self.REFERENCE, self.SECONDARY))
            on_load(context, ties, run_group(context, pair, "refined models"), "tie_points", "Tie points",
                    style=tie_points)
        before, after = result.misclosure_px["before"], result.misclosure_px["after"]
        return {**{k: v for k, v in outputs.items() if v}, self.TIE_POINTS: ties,
                "TIE_POINTS_USED": result.tie_points_used, "MISCLOSURE_BEFORE": before and before["median_abs"],
                "MISCLOSURE_AFTER": after and after["median_abs"]}

    def _gcps(self, parameters, context):
        """(n, 3) longitude, latitude, height of the GCP layer, or None."""
        source = self.parameterAsSource(parameters, self.GCPS, context)
        if source is None:
            return None
        field = self.parameterAsString(parameters, self.GCP_HEIGHT_FIELD, context)
        if not field or source.fields().indexOf(field) < 0:
            names = ", ".join(f.name() for f in source.fields() if f.isNumeric()) or "none"
            raise QgsProcessingException(f"{source.sourceName()}: field 'GCP_HEIGHT_FIELD': "
                                         f"{field or 'not given'}; choose the numeric field holding the heights "
                                         f"(numeric fields: {names})")
        to_wgs84 = QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                          context.transformContext())
        rows = []
        for feature in source.getFeatures():
            point = to_wgs84.transform(feature.geometry().asPoint()) if feature.hasGeometry() else None
            height = feature[field]
            if point is not None and height not in (None, ""):
                rows.append((point.x(), point.y(), float(height)))
        return rows or [(float("nan"),) * 3]

    @staticmethod
    def _log(result, feedback):
        for role, terms in result.corrections.items():
            for name, v in terms.items():
                feedback.pushInfo(f"{role} {name.replace('_', ' ')}: {v['value']:.4g} {v['unit']} "
                                  f"({v['px']:+.2f} px ± {v['sd_px']:.2f})")
        for term, why in result.unobservable.items():
            feedback.pushInfo(f"held: {term} ({why})")
        before, after = result.misclosure_px["before"], result.misclosure_px["after"]
        feedback.pushInfo(f"{result.tie_points_used} of {result.tie_points} tie points used; median |misclosure| "
                          f"{before['median_abs']:.2f} -> {after['median_abs']:.2f} lines")
        for warning in result.warnings:
            feedback.pushWarning(warning)
