"""sarstereo:finetune — fine-tune a deep matcher (light or RoMa) on a patch dataset."""

import math

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..common import (
    PROVIDER_NAME,
    Algorithm,
    decimals,
    lasting_folder,
    optional_number,
    title,
    user_errors,
    weights_folder,
)

MODELS = ("light", "roma")
MODEL_LABELS = ("Light (TinyRoMa on XFeat)", "RoMa")


class Finetune(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "finetune", "learning"
    DATASET = "DATASET"
    MODEL = "MODEL"
    WEIGHTS = "WEIGHTS"
    DINOV2_WEIGHTS = "DINOV2_WEIGHTS"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    LAMBDA_C = "LAMBDA_C"
    COARSE_RES = "COARSE_RES"
    SYNTHETIC = "SYNTHETIC"
    DEVICE = "DEVICE"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    HELP = (
        f"Trains a dense matcher on a patch dataset made by {title('builddataset')} with the loss L = L_D + λ·L_C: "
        "robust regression of the correspondence at every scale of the model plus λ times the cross-entropy of its "
        "certainty against validity.",
        "Models: Light (TinyRoMa on XFeat; fast on a CPU; empty start weights: the pretrained XFeat backbone) and "
        "RoMa (needs a GPU in practice; starts from roma_outdoor.pth, given here or found in the weights folder of "
        f"Settings > Options > Processing > Providers > {PROVIDER_NAME}, with the DINOv2 weights). Both need "
        f"PyTorch: install it with {title('installdeps')}. Learning rates follow RoMa's recipe, scaled by the "
        "batch size; the learning rate given here overrides the decoder's.",
        "The output folder receives last.pth (resumable: tick 'Resume' and run again after a cancel or a crash), a "
        "snapshot per epoch, log.json (loss curve, validation accuracy at 1/3/5/10 px on the dataset's val split) "
        f"and the weights to match with: light_sar.pth or roma_finetuned.pth (the WEIGHTS of {title('matchpair')}). "
        "The default folder lies in the QGIS profile (sar_stereo_plugin/finetune/<date-time>), so the weights "
        "outlive the session.",
        "Several GPUs: run torchrun --nproc_per_node=N -m sar_stereo_plugin.core.training.finetune DATASET OUTPUT "
        "--model roma outside QGIS.",
    )
    ADVANCED = {
        DINOV2_WEIGHTS: "the DINOv2 backbone RoMa is built on, found like RoMa's weights where empty.",
        COARSE_RES: "the resolution RoMa trains at (a multiple of 14); larger is slower and needs more memory.",
        SYNTHETIC: "the share of each batch made of random synthetic texture pairs, which keeps the matcher general.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(self.DATASET, "Dataset folder (with manifest.json)",
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterEnum(self.MODEL, "Model", options=list(MODEL_LABELS),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.WEIGHTS, "Start weights (.pth; empty: the default)",
                                                     optional=True))
        self.addParameter(number(self.EPOCHS, "Epochs", number.Integer, defaultValue=1, minValue=1))
        self.addParameter(number(self.BATCH_SIZE, "Batch size (pairs per step)", number.Integer, defaultValue=4,
                                 minValue=1))
        self.addParameter(decimals(number(self.LEARNING_RATE, "Learning rate (empty: the recipe's, scaled by batch "
                                          "size)", number.Double, optional=True, minValue=0.0), 6))
        self.addParameter(decimals(number(self.LAMBDA_C, "λ, weight of the certainty loss L_C", number.Double,
                                          defaultValue=0.01, minValue=0.0), 3))
        self.addParameter(QgsProcessingParameterString(self.DEVICE, "Device (auto, cpu, cuda, cuda:N)",
                                                       defaultValue="auto"))
        self.addParameter(QgsProcessingParameterBoolean(self.RESUME, "Resume the run in the output folder",
                                                        defaultValue=False))
        self.advanced(
            QgsProcessingParameterFile(self.DINOV2_WEIGHTS, "DINOv2 ViT-L/14 weights for RoMa (.pth)", optional=True),
            number(self.COARSE_RES, "RoMa training resolution (multiple of 14)", number.Integer, defaultValue=560,
                   minValue=14),
            decimals(number(self.SYNTHETIC, "Share of random synthetic texture pairs mixed in (0-1)", number.Double,
                            defaultValue=0.0, minValue=0.0, maxValue=1.0), 2))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder",
                                                                  defaultValue=lasting_folder("finetune")))
        self.addOutput(QgsProcessingOutputNumber("VALIDATION_ACCURACY_3PX", "Validation accuracy at 3 px"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.training.finetune import finetune
        from ...core.training.settings import FinetuneSettings
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        lr = optional_number(self, parameters, self.LEARNING_RATE, context)
        settings = FinetuneSettings(
            model=MODELS[self.parameterAsEnum(parameters, self.MODEL, context)],
            weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None,
            dinov2_weights=self.parameterAsFile(parameters, self.DINOV2_WEIGHTS, context) or None,
            weights_dir=weights_folder(),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            lr=lr or None,
            lambda_c=self.parameterAsDouble(parameters, self.LAMBDA_C, context),
            coarse_res=self.parameterAsInt(parameters, self.COARSE_RES, context),
            synthetic=self.parameterAsDouble(parameters, self.SYNTHETIC, context),
            device=self.parameterAsString(parameters, self.DEVICE, context).strip() or "auto",
            resume=self.parameterAsBool(parameters, self.RESUME, context))
        with user_errors():
            result = finetune(self.parameterAsFile(parameters, self.DATASET, context), output, settings,
                              progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled,
                              report=feedback.pushInfo)
        accuracy = (result.validation or {}).get("accuracy_at_px", {}).get("3", math.nan)
        feedback.pushInfo(f"{result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s); "
                          f"weights: {result.weights}")
        return {self.OUTPUT: output, "VALIDATION_ACCURACY_3PX": accuracy}
