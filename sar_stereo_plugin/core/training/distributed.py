"""Several training processes under torchrun, or one without it, behind the same calls.

Under torchrun (``WORLD_SIZE`` > 1) the process group uses NCCL on CUDA and gloo on CPU; without
it every call is the one-process answer, so the training loop has a single path.
"""

import hashlib
import os

_KEPT = []  # what must outlive the run under torchrun (ProcessGroup.keep)


class ProcessGroup:
    """The torchrun process group, or a stand-in for one process: ``world`` processes, this one
    ``rank`` (``local`` on its machine)."""

    def __init__(self, torch, device):
        self.torch = torch
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        self.dist = None
        if self.world > 1:
            self.dist = torch.distributed
            if not self.dist.is_initialized():
                self.dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
                self.owned = True

    def mean(self, values):
        """The mean over the ranks of a dict of floats."""
        if self.dist is None:
            return values
        t = self.torch.tensor(list(values.values()), dtype=self.torch.float64)
        self.dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def sync_buffers(self, model):
        """Rank 0's buffers everywhere: BatchNorm statistics last updated on each rank's own batch."""
        if self.dist is not None:
            for b in model.buffers():
                self.dist.broadcast(b.data, 0)

    def gather(self, obj):
        """Every rank's ``obj``, in rank order."""
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def keep(self, run):
        """Hold ``run`` (whose DistributedDataParallel model holds the gloo group) until the process
        ends. Freeing a gloo group joins its worker thread while the freeing thread holds the GIL, and
        the worker may still need the GIL to free the last collective's tensors: a deadlock, seen as a
        rank hanging after the last step on a loaded machine. The torchrun entry point ends with
        ``os._exit`` instead."""
        if self.dist is not None:
            _KEPT.append(run)

    def barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    def close(self):
        """End the process group if this object started it."""
        if self.owned:
            self.dist.destroy_process_group()


def model_checksum(model):
    """SHA-256 over a model's state (names and tensors), the same on every rank holding the same model."""
    h = hashlib.sha256()
    for name, t in sorted(getattr(model, "module", model).state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
