"""Training loss of the dense matchers: L = L_D + λ·L_C, summed over every scale the model predicts.

romatch's matchers (RoMa, TinyRoMa) answer with a dict ``{scale: {"flow": (B, 2, h, w),
"certainty": (B, 1, h, w)}}``: at each scale (stride in input pixels) the secondary position of
every reference cell in normalised coordinates (x then y; pixel centre c at (2c + 1)/w - 1) and a
certainty logit. The ground truth is the dataset's warp (B, P, P, 2) in the same coordinates and
its validity (B, P, P); it is sampled at each scale's cell centres (bilinear, align_corners=False
like the models' own grids) and a cell is valid where all four samples it blends are.

* L_D, the regression term: the end-point error ``e`` in *secondary-window pixels* (normalised
  differences times half the native window size, so x and y weigh alike whatever the window's
  shape) through a generalised Charbonnier ``ρ(e) = (e² + c²)^(α/2) - c^α``, averaged over the
  valid cells. Quadratic below ``c``, ``e^α`` beyond: with α = 0.5 (romatch's outdoor recipe) a
  wrong match far away pulls little, so layover and speckle outliers do not dominate. ``c``
  grows with the scale (``c_px`` times the scale's cell size in native pixels): a coarse scale is
  not asked for sub-cell precision.
* L_C, the certainty term: binary cross-entropy of the certainty logits against validity, over
  every cell (invalid ones teach the model to say "no match" in layover, shadow and outside).

λ (``lambda_c``) defaults to 0.01, romatch's ``ce_weight``: regression drives the features, the
certainty head learns alongside without pulling them towards mere validity detection.
"""

import torch
import torch.nn.functional as F

from ..pixels import to_normalised

LAMBDA_C = 0.01  # romatch's ce_weight
ALPHA = 0.5  # romatch's robust-loss shape for RoMa outdoor
C_PX = 0.25  # Charbonnier scale at stride 1, native secondary pixels


def cell_centres(h, w, device=None, dtype=torch.float32):
    """(1, h, w, 2) normalised (x, y) of the centres of an h x w grid."""
    y = to_normalised(torch.arange(h, device=device, dtype=dtype), h)
    x = to_normalised(torch.arange(w, device=device, dtype=dtype), w)
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack((gx, gy), -1)[None]


def truth_at(warp, valid, size):
    """Ground truth at a scale: (B, h, w, 2) warp and (B, h, w) bool validity from the (B, P, P, 2)
    warp (NaN where invalid) and (B, P, P) validity."""
    b = warp.shape[0]
    ok = valid.to(warp.dtype) * torch.isfinite(warp).all(-1).to(warp.dtype)
    field = torch.cat((torch.nan_to_num(warp).permute(0, 3, 1, 2) * ok[:, None], ok[:, None]), 1)
    grid = cell_centres(*size, device=warp.device, dtype=warp.dtype).expand(b, -1, -1, -1)
    s = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    good = s[:, 2] > 1.0 - 1e-4
    return (s[:, :2] / s[:, 2:].clamp_min(1e-6)).permute(0, 2, 3, 1), good


def robust(e2, alpha=ALPHA, c=C_PX):
    """Generalised Charbonnier ρ(e) = (e² + c²)^(α/2) - c^α (0 at e = 0), from e² (no square
    root, whose gradient is undefined at a perfect match)."""
    return (e2 + c * c) ** (alpha / 2.0) - c ** alpha


def matching_loss(corresps, warp, valid, secondary_hw, *, lambda_c=LAMBDA_C, alpha=ALPHA, c_px=C_PX,
                  pixel_scale=1.0):
    """(L, parts) for a batch. ``secondary_hw``: (B, 2) native window sizes (rows, cols), to turn
    normalised errors into pixels; ``pixel_scale``: native pixels per model-input pixel (a scale
    s cell spans ``s * pixel_scale`` native pixels). ``parts``: floats ``loss_d``, ``loss_c`` and
    per scale ``d{s}``, ``c{s}``, ``epe{s}`` (median end-point error, px, of valid cells)."""
    half = (secondary_hw.flip(-1).to(warp.dtype) / 2.0)[:, None, None, :]  # (x, y) pixels per unit
    loss_d = loss_c = warp.new_zeros(())
    parts = {}
    for scale, out in sorted(corresps.items(), reverse=True):
        flow, logits = out["flow"].float(), out["certainty"].float()[:, 0]
        gt, good = truth_at(warp, valid, flow.shape[-2:])
        e2 = ((flow.permute(0, 2, 3, 1) - gt) * half).square().sum(-1)
        d = robust(e2[good], alpha, c_px * scale * pixel_scale).mean() if good.any() else flow.sum() * 0.0
        c = F.binary_cross_entropy_with_logits(logits, good.to(logits.dtype))
        loss_d, loss_c = loss_d + d, loss_c + c
        parts.update({f"d{scale}": d.item(), f"c{scale}": c.item(),
                      f"epe{scale}": e2[good].detach().median().sqrt().item() if good.any() else float("nan")})
    parts.update(loss_d=loss_d.item(), loss_c=loss_c.item())
    return loss_d + lambda_c * loss_c, parts
