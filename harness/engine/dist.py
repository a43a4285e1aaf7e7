"""Distributed helpers: init from torchrun's environment, rank-0 logging, deterministic sharding.

Launch with ``torchrun --nproc_per_node G -m harness train EXP`` (single node) or with
``--nnodes N --node_rank R --rdzv_endpoint HOST:PORT`` on each node; torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT, which is all :func:`init_distributed` reads.
On CPU the backend is gloo, on GPU nccl.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterator

import torch

from harness.errors import UsageError
import torch.distributed as torch_dist
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be an integer, got {raw!r}") from None


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process).

    ``device``: "cpu", "cuda" or None (cuda when available).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device: 'cuda' requested but no CUDA device is available (torch.cuda.is_available() "
                             "is False); use --device cpu")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world > 1 and not torch_dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world)
        log.debug("rank %d/%d joined the %s process group", rank, world, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        torch_dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.distributed:
        return value
    value = value.detach().clone()
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
    return value / info.world_size


def all_gather_object(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    if not info.distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    if info.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class ShardedBatchSampler(Sampler[list[int]]):
    """Per-rank batches of one global batch sequence that depends only on (seed, epoch).

    The global order is a permutation of ``range(dataset_len)`` drawn from a generator seeded with
    ``seed + epoch``; global batch ``b`` is ``perm[b*B:(b+1)*B]`` and rank ``r`` takes the
    contiguous slice ``[r*B/W, (r+1)*B/W)`` of it. So one process with batch B sees exactly the
    samples that W processes see together, which is what makes a DDP run comparable with a
    single-process run. The last incomplete global batch is dropped (BN needs >1 sample, and
    every rank must run the same number of steps). ``start_batch`` skips batches already trained
    in this epoch when resuming mid-epoch.
    """

    def __init__(self, dataset_len: int, global_batch: int, *, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, seed: int = 0) -> None:
        if global_batch % world_size:
            raise ValueError(f"train.batch_size: global batch {global_batch} is not divisible by "
                             f"the world size {world_size}")
        if dataset_len < global_batch:
            raise ValueError(f"train.batch_size: global batch {global_batch} is larger than the "
                             f"dataset ({dataset_len} samples)")
        self.n = dataset_len
        self.global_batch = global_batch
        self.per_rank = global_batch // world_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.n // self.global_batch - self.start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(self.n, generator=g)
        else:
            perm = torch.arange(self.n)
        usable = self.batches_per_epoch * self.global_batch
        # (batches, world, per_rank): take this rank's column.
        grid = perm[:usable].view(self.batches_per_epoch, self.world_size, self.per_rank)
        for b in range(self.start_batch, self.batches_per_epoch):
            yield grid[b, self.rank].tolist()


__all__ = ["DistInfo", "init_distributed", "barrier", "all_reduce_mean", "all_gather_object",
           "broadcast_object", "cleanup", "ShardedBatchSampler"]
