"""Multi-process training on torch.distributed: ``torchrun --nproc-per-node N -m vaelab train ...``.

torchrun sets WORLD_SIZE / RANK / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in each process's
environment. :func:`setup` reads them and joins the process group (gloo on CPU, NCCL on CUDA);
without them it is a no-op and everything runs as one process. The trainer
(:func:`vaelab.train.fit`) asks :func:`context` where it stands:

* every rank holds the whole (in-memory) dataset and draws the same permutation each epoch; rank r
  trains on its slice of each *global* batch, so global batch = per-rank ``--batch-size`` x world size;
* gradients are averaged by DistributedDataParallel; each rank's loss is scaled by
  (its images x world size / global-batch images) so the average equals the global batch mean
  exactly, also for a last, uneven batch;
* validation, early stopping decisions, the test evaluation and every file write happen on rank 0;
  the other ranks receive the decisions by broadcast and wait at barriers.

See docs/distributed.md for the commands (single node and multi-node) and what changes with scale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vaelab.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: world size 1 and rank 0 when not launched by torchrun."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ConfigError(f"environment variable {name}={os.environ[name]!r} is not an integer; launch with "
                          "torchrun, or unset it.") from None


def setup(device_type: str | None = None) -> DistContext:
    """Join the process group torchrun describes (idempotent); a no-op without WORLD_SIZE > 1.

    Args:
        device_type: "cuda" for NCCL, "cpu" for gloo; None = cuda when this torch sees a GPU.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun.")
    if not dist.is_initialized():
        if device_type is None:
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        dist.init_process_group(backend=backend)
    return context()


def context() -> DistContext:
    """The current process's place in the process group (world 1 when none was set up)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK", 0))
    return DistContext()


def is_main() -> bool:
    """True on rank 0 (and in a plain single-process run): the rank that evaluates and writes."""
    return context().is_main


def barrier() -> None:
    if context().is_distributed:
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_slice(lo: int, hi: int, ctx: DistContext) -> tuple[int, int]:
    """This rank's part [a, b) of a global batch [lo, hi): contiguous, sizes differing by at most one."""
    m = hi - lo
    return lo + ctx.rank * m // ctx.world_size, lo + (ctx.rank + 1) * m // ctx.world_size


def broadcast_floats(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Rank 0's values on every rank (no pickling: a float64 tensor)."""
    if not ctx.is_distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; returns t)."""
    if ctx.is_distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """The device this rank trains on: under torchrun on CUDA, one GPU per rank (cuda:LOCAL_RANK)."""
    if ctx.is_distributed and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap(module: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """``module`` under DistributedDataParallel when distributed (its backward averages gradients), else itself."""
    if not ctx.is_distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def global_batches(n: int, batch_size: int, ctx: DistContext) -> list[tuple[int, int]]:
    """The epoch's global batches [b0, b1) over n images; the global batch is ``batch_size`` x world size.

    Under DDP a last global batch smaller than the world is dropped (no rank may get an empty slice).
    """
    global_batch = batch_size * ctx.world_size
    bounds = [(i, min(i + global_batch, n)) for i in range(0, n, global_batch)]
    if ctx.is_distributed and bounds[-1][1] - bounds[-1][0] < ctx.world_size:
        bounds.pop()
    return bounds
