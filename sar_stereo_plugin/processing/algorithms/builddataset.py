"""sarstereo:builddataset — training patches with dense ground truth from SAR pairs and a DSM."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..common import Algorithm, decimals, lasting_folder, layer_path, title, user_errors


class BuildDataset(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "builddataset", "learning"
    REFERENCES = "REFERENCES"
    SECONDARIES = "SECONDARIES"
    DSM = "DSM"
    PATCH_SIZE = "PATCH_SIZE"
    OVERLAP = "OVERLAP"
    BLOCK_SIZE = "BLOCK_SIZE"
    VALIDATION_FRACTION = "VALIDATION_FRACTION"
    TEST_FRACTION = "TEST_FRACTION"
    HEIGHT_UNCERTAINTY = "HEIGHT_UNCERTAINTY"
    MIN_VALID_FRACTION = "MIN_VALID_FRACTION"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    HELP = (
        f"Cuts SAR stereo pairs into training samples for fine-tuning a matcher, exactly as {title('matchpair')} "
        "cuts them: a reference patch and the secondary window its height uncertainty calls for (the DSM is the "
        "prior DEM). The ground truth of every reference pixel comes from the DSM through both sensor models; a "
        "pixel is valid where both views see its ground point and nothing else at its range (no layover, shadow or "
        "occlusion), the secondary-to-reference round trip closes within half a pixel, and it lands in the window.",
        "Reference and secondary images pair up in list order. Splits are spatially disjoint: each reference image "
        "is cut into blocks, each block goes wholly to training, validation or test; patches spanning blocks of "
        "different splits are dropped.",
        "Output: a folder with manifest.json and one .npz per sample under train/, val/, test/ (reference, "
        f"secondary, warp, valid, secondary_rc, prior), input of {title('finetune')}. The default folder lies in the "
        "QGIS profile (sar_stereo_plugin/datasets/<date-time>), so the dataset outlives the session; an existing "
        "dataset in the chosen folder is replaced.",
    )
    ADVANCED = {MIN_VALID_FRACTION: "samples with a smaller share of valid ground-truth pixels are left out."}

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.REFERENCES, "Reference SAR images (slant range, with sensor models)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.SECONDARIES, "Secondary SAR images (same order as the references)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterRasterLayer(self.DSM, "DSM (heights above the WGS84 ellipsoid)"))
        self.addParameter(number(self.PATCH_SIZE, "Patch size (reference pixels)", number.Integer, defaultValue=256,
                                 minValue=16, maxValue=8192))
        self.addParameter(number(self.OVERLAP, "Patch overlap (pixels)", number.Integer, defaultValue=32, minValue=0))
        self.addParameter(number(self.BLOCK_SIZE, "Split block size (reference pixels)", number.Integer,
                                 defaultValue=1024, minValue=1))
        self.addParameter(decimals(number(self.VALIDATION_FRACTION, "Validation fraction", number.Double,
                                          defaultValue=0.15, minValue=0.0, maxValue=1.0), 2))
        self.addParameter(decimals(number(self.TEST_FRACTION, "Test fraction", number.Double, defaultValue=0.15,
                                          minValue=0.0, maxValue=1.0), 2))
        self.addParameter(decimals(number(self.HEIGHT_UNCERTAINTY, "Height uncertainty of the prior (± m; sets the "
                                          "secondary window as matching will)", number.Double, defaultValue=300.0,
                                          minValue=0.0), 1))
        self.addParameter(number(self.SEED, "Seed of the split", number.Integer, defaultValue=0, minValue=0))
        self.advanced(decimals(number(self.MIN_VALID_FRACTION, "Least share of valid pixels a sample needs",
                                      number.Double, defaultValue=0.2, minValue=0.0, maxValue=1.0), 2))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Dataset folder",
                                                                  defaultValue=lasting_folder("datasets")))
        self.addOutput(QgsProcessingOutputNumber("TRAIN_SAMPLES", "Training samples"))
        self.addOutput(QgsProcessingOutputNumber("VALIDATION_SAMPLES", "Validation samples"))
        self.addOutput(QgsProcessingOutputNumber("TEST_SAMPLES", "Test samples"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.training.dataset import build_dataset
        refs, secs = ([layer_path(layer) for layer in self.parameterAsLayerList(parameters, key, context)]
                      for key in (self.REFERENCES, self.SECONDARIES))
        if len(refs) != len(secs):
            raise QgsProcessingException(f"REFERENCES and SECONDARIES: {len(refs)} reference and {len(secs)} "
                                         "secondary images; give one secondary per reference, in the same order")
        val, test = (self.parameterAsDouble(parameters, key, context)
                     for key in (self.VALIDATION_FRACTION, self.TEST_FRACTION))
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        with user_errors():
            result = build_dataset(
                list(zip(refs, secs)), layer_path(self.parameterAsRasterLayer(parameters, self.DSM, context)), output,
                patch_size=self.parameterAsInt(parameters, self.PATCH_SIZE, context),
                overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
                block_px=self.parameterAsInt(parameters, self.BLOCK_SIZE, context),
                split=(1.0 - val - test, val, test),
                height_uncertainty_m=self.parameterAsDouble(parameters, self.HEIGHT_UNCERTAINTY, context),
                min_valid_fraction=self.parameterAsDouble(parameters, self.MIN_VALID_FRACTION, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
        counts = result.counts
        feedback.pushInfo(f"{counts['train']} training, {counts['val']} validation, {counts['test']} test samples "
                          f"from {result.patches} patches ({result.straddling} spanning splits, {result.sparse} with "
                          f"too few valid pixels) in {result.seconds:.1f} s")
        for name, key, fraction in (("training", "train", 1.0 - val - test), ("validation", "val", val),
                                    ("test", "test", test)):
            if fraction > 0 and not counts[key]:
                feedback.pushWarning(f"no {name} sample: give more or larger images, or a smaller BLOCK_SIZE")
        return {self.OUTPUT: result.path, "TRAIN_SAMPLES": counts["train"], "VALIDATION_SAMPLES": counts["val"],
                "TEST_SAMPLES": counts["test"]}
