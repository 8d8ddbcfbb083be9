"""What fine-tuning needs of each deep matcher: its network, parameter groups and learning-rate
recipe, inputs prepared as the matcher prepares them (so what is trained is what runs), the forward
call, and the deployable weights file.

Recipes (romatch's training scripts) give learning rates per 8 images: RoMa decoder 1e-4, CNN
encoder 5e-6 (DINOv2 stays frozen, as in romatch); light (TinyRoMa) 1e-4 for heads and XFeat alike.
The first group is the one the ``lr`` setting overrides.
"""

import math
from pathlib import Path


class LightBackend:
    """The light matcher (TinyRoMa on XFeat): starts from ``settings.weights`` or pretrained XFeat
    with new heads; trains on native patch sizes rounded to 32, as it matches."""

    kind = "light"
    recipe = {"heads": 1e-4, "backbone": 1e-4}
    weights_file = "light_sar.pth"

    def __init__(self, torch, device, settings, state=None, amp_dtype=None):
        from ..matchers.light import LightMatcher, build_light_model, read_light_checkpoint
        where = "checkpoint"
        if state is None and settings.weights is not None:
            state, where = read_light_checkpoint(settings.weights)
        self.model = build_light_model(state, device, source=where)
        self.matcher = LightMatcher(model=self.model, device=str(device), batch_size=settings.batch_size, flips=False)
        self.torch = torch

    def groups(self):
        backbone = [p for n, p in self.model.named_parameters() if n.startswith("xfeat.")]
        heads = [p for n, p in self.model.named_parameters() if not n.startswith("xfeat.")]
        return {"heads": heads, "backbone": backbone}

    def inputs(self, refs, secs):
        """The network's input dict and the native reference pixels per input pixel."""
        from ..matchers.light import prepare_batch
        a, b = prepare_batch(self.torch, refs, secs, self.matcher.device, self.matcher.max_side)
        return {"im_A": a, "im_B": b}, refs[0].shape[0] / a.shape[-2]

    def call(self, net, batch):
        return net(batch)

    def save_weights(self, folder, meta):
        from ..matchers.light import save_light_weights
        return save_light_weights(self.model, Path(folder) / self.weights_file, meta)


class RomaBackend:
    """RoMa: starts from ``settings.weights`` (or a state dict), looked up as the RoMa matcher does;
    trains at ``settings.coarse_res`` without upsampling."""

    kind = "roma"
    recipe = {"decoder": 1e-4, "encoder": 5e-6}
    weights_file = "roma_finetuned.pth"

    def __init__(self, torch, device, settings, state=None, amp_dtype=None):
        from ..matchers import roma
        from ..matchers.weights import DINOV2_FILE, ROMA_FILE, read_checkpoint
        found = roma.resolve_weights(settings.weights if state is None else state, settings.dinov2_weights,
                                     settings.weights_dir)
        (rstate, rwhere), (dstate, dwhere) = (read_checkpoint(found[f], f) for f in (ROMA_FILE, DINOV2_FILE))
        # build_model adopts the tensors: copy them, training must not change the caller's dict or a mmap
        rstate = {k: v.clone() for k, v in rstate.items()}
        self.model = roma.build_model(rstate, dstate, device, amp_dtype or torch.float32, settings.coarse_res, None,
                                      False, sources=(rwhere, dwhere))
        self.matcher = roma.RomaMatcher(model=self.model, device=str(device), coarse_res=settings.coarse_res,
                                        upsample_res=None, batch_size=settings.batch_size)
        self.res = self.matcher.coarse_res
        self.scale_factor = math.sqrt(self.res[0] * self.res[1]) / 560.0  # as RegressionMatcher.match
        self.torch = torch

    def groups(self):
        return {"decoder": list(self.model.decoder.parameters()), "encoder": list(self.model.encoder.parameters())}

    def inputs(self, refs, secs):
        """The network's input dict and the native reference pixels per input pixel."""
        from ..matchers.stretch import amplitude_to_uint8
        a = self.matcher.prepare_images([amplitude_to_uint8(r) for r in refs], self.res)
        b = self.matcher.prepare_images([amplitude_to_uint8(s) for s in secs], self.res)
        return {"im_A": a, "im_B": b}, refs[0].shape[0] / self.res[0]

    def call(self, net, batch):
        return net(batch, scale_factor=self.scale_factor)

    def save_weights(self, folder, meta):
        """The layout of ``roma_outdoor.pth`` (DINOv2 stays the original); ``meta`` is not stored."""
        from ..matchers.weights import atomic_torch_save
        path = Path(folder) / self.weights_file
        atomic_torch_save(self.torch, {k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)
        return path


BACKENDS = {"light": LightBackend, "roma": RomaBackend}
