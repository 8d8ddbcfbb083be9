"""sarstereo:importproduct — a SAR product (SICD, Capella, TerraSAR-X, Sentinel-1, NISAR, ...) to a
detected amplitude GeoTIFF in slant range with its sensor model, ready for matching."""

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..common import Algorithm, title, user_errors
from ..styling import amplitude_db, on_load, run_group


class ImportProduct(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "importproduct", "setup"
    INPUT = "INPUT"
    IMAGE = "IMAGE"
    LOOKS_AZIMUTH = "LOOKS_AZIMUTH"
    LOOKS_RANGE = "LOOKS_RANGE"
    OUTPUT = "OUTPUT"

    @property
    def HELP(self):  # noqa: N802 - the mixin's name for the help paragraphs
        from ...core.products.base import SUPPORTED_FORMATS
        return (
            "Turns one image of a SAR product into a detected amplitude GeoTIFF in slant range (rows = azimuth lines, "
            "columns = range samples) carrying its sensor model (embedded and as a <image>.sensor.json sidecar) and "
            "GCPs that put it roughly in place on the map: the input the matching and elevation steps read.",
            "Products: " + "; ".join(SUPPORTED_FORMATS) + ". For a folder product pick its main file (manifest.safe, "
            "product.xml, the TerraSAR-X XML).",
            "IMAGE chooses among several images (Sentinel-1 bursts such as iw1-vv-b3, NISAR frequency and "
            "polarisation such as A/HH, polarisations of a SICD product); left empty with several images, the error "
            "lists them. Looks average the intensity over blocks of azimuth x range pixels; the sensor model is "
            f"changed to match. Next step: {title('inspectpair')}.",
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, "SAR product (SICD NITF, Capella TIFF or extended JSON, HDF5, manifest.safe, product XML)"))
        self.addParameter(QgsProcessingParameterString(
            self.IMAGE, "Image within the product (burst, swath, polarisation; empty: the only one)", optional=True))
        self.addParameter(number(self.LOOKS_AZIMUTH, "Looks in azimuth", number.Integer, defaultValue=1, minValue=1))
        self.addParameter(number(self.LOOKS_RANGE, "Looks in range", number.Integer, defaultValue=1, minValue=1))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Amplitude image"))
        self.addOutput(QgsProcessingOutputString("IMAGE_NAME", "Image imported"))
        self.addOutput(QgsProcessingOutputNumber("ROWS", "Rows (azimuth)"))
        self.addOutput(QgsProcessingOutputNumber("COLS", "Columns (range)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.products.importer import import_product
        from ...core.raster import amplitude_db_range
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        with user_errors():
            result = import_product(
                self.parameterAsFile(parameters, self.INPUT, context), output,
                image=self.parameterAsString(parameters, self.IMAGE, context) or None,
                looks_azimuth=self.parameterAsInt(parameters, self.LOOKS_AZIMUTH, context),
                looks_range=self.parameterAsInt(parameters, self.LOOKS_RANGE, context),
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
            try:
                style = amplitude_db(*amplitude_db_range(output))
            except OSError:  # an image without any positive amplitude (an empty product) loads unstyled
                style = None
        if style is not None:
            on_load(context, output, run_group(context, Path(result.image or output).name, "imported"), "reference",
                    f"{result.family} {result.image}", style=style)
        feedback.pushInfo(f"{result.family} image {result.image}: {result.rows} x {result.cols} pixels "
                          f"({result.looks_azimuth} x {result.looks_range} looks) in {result.seconds:.1f} s")
        return {self.OUTPUT: output, "IMAGE_NAME": result.image, "ROWS": result.rows, "COLS": result.cols}
