"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel), one process per device.

``torchrun --nproc_per_node N -m trainer.cli …`` starts N copies of the CLI; each reads its rank
from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, set by torchrun for one machine or
many) and joins one process group: NCCL on CUDA, gloo on the CPU. What that changes in the trainer:

- **Data.** Step ``i`` of epoch ``e`` takes the global batch ``perm[i·B:(i+1)·B]`` of the same
  seeded permutation a single process uses, ``B = world_size × batch_size``; rank ``r`` trains on
  its slice ``[r·b:(r+1)·b]``. So N ranks at batch ``b`` see exactly what one process at batch
  ``N·b`` sees, step for step. A last global batch that does not fill every rank is topped up from
  the start of the permutation (as ``DistributedSampler`` pads) so every rank takes a step.
- **Gradients.** G and F each sit in their own DDP wrapper (their gradients are averaged across
  ranks in backward); the frozen teachers need none. The optional 1×1 regressors train beside their
  student and have their (small) gradients averaged here. InstanceNorm works per sample, so no
  SyncBatchNorm is needed and the maths equals one process with the larger batch.
- **Side effects on rank 0 only:** the run-folder lock, checkpoints, ``losses.jsonl`` (the mean of
  the ranks' losses, i.e. the large batch's loss), validation, events and progress bars.
- **Stopping.** Ranks agree every step whether to stop (Ctrl+C/SIGTERM reach every rank, maybe
  between different steps), so none is left waiting in an all-reduce. If a rank dies, torchrun
  stops the others and exits non-zero; the last checkpoint was written atomically and stays valid.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sketchstudio.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, request: str) -> str:
        """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA, else the request."""
        if not self.enabled:
            return request
        if request in ("auto", "cuda") and torch.cuda.is_available():
            n = torch.cuda.device_count()
            if self.local_rank >= n:
                raise ConfigError(f"rank {self.rank} needs GPU cuda:{self.local_rank}, but this "
                                  f"machine has {n}: start at most {n} processes per node "
                                  "(torchrun --nproc_per_node).")
            return f"cuda:{self.local_rank}"
        if request.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda was given to torchrun, but this machine has no CUDA "
                              "GPU; use --device cpu (gloo) or run where the GPUs are.")
        return "cpu" if request == "auto" else request

    # --- collectives (no-ops in one process) ------------------------------------------------
    def mean_losses(self, losses: dict[str, float], device: torch.device) -> dict[str, float]:
        """Each loss averaged over the ranks: the loss of the whole global batch."""
        if not self.enabled:
            return losses
        keys = sorted(losses)
        t = torch.tensor([losses[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        t /= self.world_size
        return dict(zip(keys, t.tolist(), strict=True))

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (e.g. one rank got Ctrl+C first)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def average_gradients(self, params) -> None:
        """Average the gradients of parameters outside a DDP wrapper (the tap regressors)."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, global_batch: list[int], all_indices: list[int], batch_size: int) -> list[int]:
        """This rank's slice of a global batch, topped up from ``all_indices`` when it is short."""
        if not self.enabled:
            return global_batch
        need = self.world_size * batch_size
        padded = list(global_batch)
        k = 0
        while len(padded) < need:
            padded.append(all_indices[k % len(all_indices)])
            k += 1
        return padded[self.rank * batch_size:(self.rank + 1) * batch_size]


def from_env() -> DistContext:
    """The job torchrun describes in the environment, or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    return DistContext(rank=rank, world_size=world, local_rank=local)


def init(ctx: DistContext, device: str) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise); no-op in one process."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend)
    log.info("rank %d of %d joined (%s, %s)", ctx.rank, ctx.world_size, backend, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
