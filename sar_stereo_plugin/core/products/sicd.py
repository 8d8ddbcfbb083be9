"""Products NGA's sarpy opens as SICD (SICD NITF, TerraSAR-X / TanDEM-X / PAZ, COSMO-SkyMed,
RADARSAT-2, RCM, ICEYE, ...), and SICD NITF writing.

sarpy turns every such product into SICD metadata; :func:`model_from_sicd` keeps what projection
needs (:mod:`..sicd_model`) and maps SICD's pixels -- row = range, the crop's first row/column,
columns that may run backwards in time -- onto ours (rows azimuth with time, cols range), once.
Every sarpy failure becomes a project error naming the file. sarpy is imported here only.
"""

import warnings
from datetime import datetime

import numpy as np

from ..atomic import atomic_file
from ..errors import RasterError, SensorModelError, located
from ..sicd_doc import SCHEMA, iso_utc
from ..sicd_model import SicdModel
from .base import SPEED_OF_LIGHT, Product, ProductImage


def _open_reader(path, what):
    try:
        from sarpy.io.complex.converter import open_complex
    except ImportError as exc:
        raise RasterError(f"{path}: reading {what} needs NGA's sarpy ({exc}); install sarpy==2.1.1") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # sarpy 2.1 points SICD to sarkit
            return open_complex(str(path))
    except Exception as exc:  # sarpy raises anything from SarpyIOError to struct.error on bad files
        raise RasterError(f"{path}: cannot be read as {what} (truncated, corrupt or not such a product): "
                          f"{type(exc).__name__}: {exc}") from None


def open_sarpy(path, what="a SAR product sarpy reads"):
    """The :class:`Product` of anything sarpy opens: one image per SICD it converts to."""
    reader = _open_reader(path, what)
    try:
        sicds = reader.get_sicds_as_tuple()
        names = _names(sicds)
        images = []
        for index, (sicd, name) in enumerate(zip(sicds, names)):
            model = model_from_sicd(sicd, f"{path} (image {name})")
            height = _get(sicd, "GeoData.SCP.LLH.HAE", required=False) or 0.0
            images.append(ProductImage(name, model, _reader(reader, index, model, sicd), height,
                                       description=f"{type(reader).__name__} image {index}"))
    except Exception:
        reader.close()
        raise
    return Product(path, type(reader).__name__.replace("Reader", ""), images, close=reader.close)


def _names(sicds):
    pols = [(_get(s, "ImageFormation.TxRcvPolarizationProc", required=False) or f"image{i}").replace(":", "")
            for i, s in enumerate(sicds)]
    return [p if pols.count(p) == 1 else f"{i}_{p}" for i, p in enumerate(pols)]


def _get(sicd, path, source="", required=True):
    obj = sicd
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            if required:
                raise SensorModelError(located(source, f"SICD {path}", "is missing; the image cannot be projected"))
            return None
    return obj


def _coefs(poly):
    return np.asarray(poly.Coefs, np.float64).tolist()


def model_from_sicd(sicd, source):
    """The :class:`SicdModel` of SICD metadata (a sarpy ``SICDType``) in our pixel convention."""
    def need(path):
        return _get(sicd, path, source)

    scp = need("GeoData.SCP.ECF").get_array()
    arp = need("Position.ARPPoly")
    tcoa = need("Grid.TimeCOAPoly")
    t_scp = float(tcoa(0.0, 0.0))
    p, v = arp(t_scp), arp.derivative_eval(t_scp, 1)
    urow, ucol = need("Grid.Row.UVectECF").get_array(), need("Grid.Col.UVectECF").get_array()
    n_rows, n_cols = int(need("ImageData.NumRows")), int(need("ImageData.NumCols"))
    first_row, first_col = int(need("ImageData.FirstRow")), int(need("ImageData.FirstCol"))
    # our rows run with time and our cols with range: flip SICD axes that run the other way
    sicd_row = [first_row, 1] if np.dot(urow, scp - p) >= 0 else [first_row + n_rows - 1, -1]
    sicd_col = [first_col, 1] if np.dot(ucol, v) >= 0 else [first_col + n_cols - 1, -1]
    grid, formation = need("Grid.Type"), _get(sicd, "ImageFormation.ImageFormAlgo", required=False) or "OTHER"
    sec = {"grid_type": grid, "image_formation": formation, "scp_ecf_m": scp.tolist(),
           "scp_pixel": [int(need("ImageData.SCPPixel.Row")), int(need("ImageData.SCPPixel.Col"))],
           "sample_spacing_m": [float(need("Grid.Row.SS")), float(need("Grid.Col.SS"))],
           "row_uvect_ecf": urow.tolist(), "col_uvect_ecf": ucol.tolist(), "time_coa_poly": _coefs(tcoa),
           "arp_poly": {k: _coefs(getattr(arp, k.upper())) for k in "xyz"},
           "collect_duration_s": float(need("Timeline.CollectDuration"))}
    if grid == "RGZERO":
        sec["inca"] = {"r_ca_scp_m": float(need("RMA.INCA.R_CA_SCP")),
                       "time_ca_poly": _coefs(need("RMA.INCA.TimeCAPoly")),
                       "drate_sf_poly": _coefs(need("RMA.INCA.DRateSFPoly"))}
    elif grid == "RGAZIM" and formation == "PFA":
        sec["pfa"] = {"polar_ang_poly": _coefs(need("PFA.PolarAngPoly")),
                      "spatial_freq_sf_poly": _coefs(need("PFA.SpatialFreqSFPoly"))}
    elif grid == "RGAZIM" and formation == "RGAZCOMP":
        sec["rgazcomp"] = {"az_sf": float(need("RgAzComp.AzSF"))}
    side = _get(sicd, "SCPCOA.SideOfTrack", required=False)
    if side is None:
        side = "L" if np.dot(np.cross(v, p), scp - p) < 0 else "R"
    doc = {"schema": SCHEMA, "kind": "sicd", "wavelength_m": SPEED_OF_LIGHT / _centre_frequency(sicd, source),
           "look_side": {"L": "left", "R": "right"}[side], "reference_epoch": _epoch(need("Timeline.CollectStart")),
           "shape": {"rows": n_cols, "cols": n_rows}, "pixels": {"sicd_row": sicd_row, "sicd_col": sicd_col},
           "sicd": sec}
    return SicdModel.from_dict(doc, source)


def _centre_frequency(sicd, source):
    for lo, hi in (("ImageFormation.TxFrequencyProc.MinProc", "ImageFormation.TxFrequencyProc.MaxProc"),
                   ("RadarCollection.TxFrequency.Min", "RadarCollection.TxFrequency.Max")):
        f_lo, f_hi = _get(sicd, lo, required=False), _get(sicd, hi, required=False)
        if f_lo and f_hi:
            return 0.5 * (f_lo + f_hi)
    return 0.5 * SPEED_OF_LIGHT * float(_get(sicd, "Grid.Row.KCtr", source))


def _epoch(collect_start):
    stamp = np.datetime64(collect_start, "us").astype(datetime)
    return iso_utc(stamp)


def _reader(reader, index, model, sicd):
    """read(row0, rows) of our rows: SICD columns, transposed (and flipped where the model flips)."""
    (_, row_step), (col0, col_step) = model.doc["pixels"]["sicd_row"], model.doc["pixels"]["sicd_col"]
    start = int(col0) - int(sicd.ImageData.FirstCol)

    def read(r0, rows):
        lo = start + r0 if col_step > 0 else start - r0 - rows + 1
        try:
            data = reader.read(slice(None), slice(lo, lo + rows), index=index, squeeze=False)
        except Exception as exc:
            raise RasterError(f"{reader.file_name}: cannot read columns {lo}..{lo + rows - 1} of image {index} "
                              f"(truncated or corrupt?): {type(exc).__name__}: {exc}") from None
        data = np.asarray(data).reshape(data.shape[0], data.shape[1]).T
        return data[::int(np.sign(col_step)), ::int(np.sign(row_step))]
    return read


# ---------------------------------------------------------------- writing
def write_sicd(path, model, blocks, name="sarstereo", collector="sar_stereo_plugin"):
    """Write a SICD NITF of ``model`` (a :class:`SicdModel` whose pixels map one to one onto SICD's)
    through sarpy's writer; ``blocks`` yields ``(row0, array)`` blocks of our rows (amplitude or
    complex), written as complex float32. The file appears whole or not at all."""
    from sarpy.io.complex.sicd import SICDWriter
    meta = sicd_from_model(model, name, collector)
    (_, row_step), (_, col_step) = model.doc["pixels"]["sicd_row"], model.doc["pixels"]["sicd_col"]
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        writer = SICDWriter(str(tmp), meta, check_existence=False)
        try:
            for row0, block in blocks:
                block = np.asarray(block)[::int(col_step), ::int(row_step)].T.astype(np.complex64)
                start = row0 if col_step > 0 else model.rows - row0 - block.shape[1]
                writer.write_chip(block, start_indices=(0, start))
        finally:
            writer.close()


def sicd_from_model(model, name, collector):
    """sarpy SICD metadata of a :class:`SicdModel` (its grid, polynomials and pixel mapping)."""
    from sarpy.io.complex.sicd_elements import SICD as S
    from sarpy.io.complex.sicd_elements.CollectionInfo import CollectionInfoType, RadarModeType
    from sarpy.io.complex.sicd_elements.GeoData import GeoDataType, SCPType
    from sarpy.io.complex.sicd_elements.Grid import DirParamType, GridType
    from sarpy.io.complex.sicd_elements.ImageCreation import ImageCreationType
    from sarpy.io.complex.sicd_elements.ImageData import ImageDataType
    from sarpy.io.complex.sicd_elements.ImageFormation import ImageFormationType, RcvChanProcType
    from sarpy.io.complex.sicd_elements.PFA import PFAType
    from sarpy.io.complex.sicd_elements.Position import PositionType, XYZPolyType
    from sarpy.io.complex.sicd_elements.RadarCollection import ChanParametersType, RadarCollectionType
    from sarpy.io.complex.sicd_elements.RgAzComp import RgAzCompType
    from sarpy.io.complex.sicd_elements.RMA import INCAType, RMAType
    from sarpy.io.complex.sicd_elements.Timeline import TimelineType
    doc, sec = model.doc, model.doc["sicd"]
    (row0, row_step), (col0, col_step) = doc["pixels"]["sicd_row"], doc["pixels"]["sicd_col"]
    if abs(row_step) != 1 or abs(col_step) != 1 or row0 != int(row0) or col0 != int(col0):
        raise SensorModelError(located(model.source, "pixels", "a multilooked image has no SICD pixel grid; write "
                                                               "the single-look image"))
    first_row = int(row0) if row_step > 0 else int(row0) - model.cols + 1
    first_col = int(col0) if col_step > 0 else int(col0) - model.rows + 1
    scp_row, scp_col = (int(v) for v in sec["scp_pixel"])
    fc = SPEED_OF_LIGHT / model.wavelength_m
    ss_row, ss_col = sec["sample_spacing_m"]
    bw = SPEED_OF_LIGHT / (2.0 * ss_row)  # the bandwidth a range pixel of that size needs
    duration = sec["collect_duration_s"]
    start = np.datetime64(doc["reference_epoch"].rstrip("Z"), "us")
    corners = _corners(model, [(first_row, first_col), (first_row, first_col + model.rows - 1),
                               (first_row + model.cols - 1, first_col + model.rows - 1),
                               (first_row + model.cols - 1, first_col)])
    pol = "V:V"
    meta = S.SICDType(
        CollectionInfo=CollectionInfoType(CollectorName=collector, CoreName=name, Classification="UNCLASSIFIED",
                                          RadarMode=RadarModeType(ModeType="SPOTLIGHT" if sec["grid_type"] == "RGAZIM"
                                                                  else "STRIPMAP")),
        ImageCreation=ImageCreationType(Application="sar_stereo_plugin", DateTime=np.datetime64("now", "us")),
        ImageData=ImageDataType(PixelType="RE32F_IM32F", NumRows=model.cols, NumCols=model.rows, FirstRow=first_row,
                                FirstCol=first_col, SCPPixel=(scp_row, scp_col),
                                FullImage=(max(first_row + model.cols, scp_row + 1),
                                           max(first_col + model.rows, scp_col + 1))),
        GeoData=GeoDataType(SCP=SCPType(ECF=sec["scp_ecf_m"]),
                            ImageCorners=[[float(c[1]), float(c[0])] for c in corners]),
        Grid=GridType(ImagePlane="SLANT", Type=sec["grid_type"], TimeCOAPoly=sec["time_coa_poly"],
                      Row=DirParamType(UVectECF=sec["row_uvect_ecf"], SS=ss_row, ImpRespBW=1.0 / ss_row,
                                       ImpRespWid=0.886 * ss_row, Sgn=-1, KCtr=2.0 * fc / SPEED_OF_LIGHT,
                                       DeltaK1=-0.5 / ss_row, DeltaK2=0.5 / ss_row, DeltaKCOAPoly=[[0.0]]),
                      Col=DirParamType(UVectECF=sec["col_uvect_ecf"], SS=ss_col, ImpRespBW=1.0 / ss_col,
                                       ImpRespWid=0.886 * ss_col, Sgn=-1, KCtr=0.0, DeltaK1=-0.5 / ss_col,
                                       DeltaK2=0.5 / ss_col, DeltaKCOAPoly=[[0.0]])),
        Timeline=TimelineType(CollectStart=start, CollectDuration=duration),
        Position=PositionType(ARPPoly=XYZPolyType(X=sec["arp_poly"]["x"], Y=sec["arp_poly"]["y"],
                                                  Z=sec["arp_poly"]["z"])),
        RadarCollection=RadarCollectionType(TxFrequency=(fc - bw / 2, fc + bw / 2), TxPolarization=pol[0],
                                            RcvChannels=[ChanParametersType(TxRcvPolarization=pol, index=1)]),
        ImageFormation=ImageFormationType(
            RcvChanProc=RcvChanProcType(NumChanProc=1, ChanIndices=[1]), ImageFormAlgo=sec["image_formation"],
            TStartProc=0.0, TEndProc=duration, TxRcvPolarizationProc=pol, TxFrequencyProc=(fc - bw / 2, fc + bw / 2),
            STBeamComp="NO", ImageBeamComp="NO", AzAutofocus="NO", RgAutofocus="NO"))
    if "inca" in sec:
        inca = sec["inca"]
        meta.RMA = RMAType(RMAlgoType="OMEGA_K", ImageType="INCA", INCA=INCAType(
            TimeCAPoly=inca["time_ca_poly"], R_CA_SCP=inca["r_ca_scp_m"], FreqZero=fc,
            DRateSFPoly=inca["drate_sf_poly"]))
    elif "pfa" in sec:
        meta.PFA = PFAType(PolarAngPoly=sec["pfa"]["polar_ang_poly"],
                           SpatialFreqSFPoly=sec["pfa"]["spatial_freq_sf_poly"])
    elif "rgazcomp" in sec:
        meta.RgAzComp = RgAzCompType(AzSF=sec["rgazcomp"]["az_sf"])
    meta.derive()
    return meta


def _corners(model, sicd_pixels):
    """(lon, lat) of SICD pixels on the SCP's height, or just off nadir where a range cannot reach it
    (an airborne image's near edge over mountains)."""
    from ..ellipsoid import ecef_to_llh
    (row0, row_step), (col0, col_step) = model.doc["pixels"]["sicd_row"], model.doc["pixels"]["sicd_col"]
    r = np.array([(c - col0) / col_step for _, c in sicd_pixels], np.float64)
    c = np.array([(s - row0) / row_step for s, _ in sicd_pixels], np.float64)
    t, rng, _ = model.contour(r, c)
    reachable = ecef_to_llh(model.orbit.position(t))[2] - 0.99 * rng
    height = np.maximum(ecef_to_llh(np.asarray(model.doc["sicd"]["scp_ecf_m"], np.float64))[2], reachable)
    lon, lat, _ = model.rdr2geo(r, c, height=height)
    return list(zip(lon.tolist(), lat.tolist()))
