"""Data-loader settings that can feed a GPU: worker count, persistent workers, pinned memory, prefetch.

* :func:`auto_num_workers`: the CPU cores this process may use (``os.sched_getaffinity``, so a
  SLURM/cgroup/taskset CPU mask counts, not the machine's core count), shared by the processes of
  this node (``LOCAL_WORLD_SIZE``, set by torchrun), capped (default 16).
* :func:`loader_kwargs`: the ``torch.utils.data.DataLoader`` keyword arguments for a worker count
  and device type; the multiprocessing-only options are left out when there are no workers
  (``DataLoader`` rejects them).
* :class:`EpochKeyed` / :class:`EpochKeyedBatches`: persistent workers keep their own copy of the
  dataset, so ``dataset.set_epoch`` in the main process never reaches them. Instead each key the
  sampler yields carries its epoch, ``(epoch, index)``, and the worker's copy selects that epoch's
  augmentation stream before building the item. An item stays a pure function of
  ``(seed, epoch, index)`` whichever worker builds it, with or without persistent workers.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import Dataset, Sampler

__all__ = ["DEFAULT_MAX_WORKERS", "auto_num_workers", "resolve_num_workers", "loader_kwargs",
           "EpochKeyed", "EpochKeyedBatches"]

#: Upper bound of the automatic worker count: past ~16 workers per GPU the returns are small and
#: each worker holds its own copy of the annotations and its decode buffers.
DEFAULT_MAX_WORKERS = 16


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity (macOS)
        return os.cpu_count() or 1


def auto_num_workers(max_workers: int = DEFAULT_MAX_WORKERS, *, cores: int | None = None,
                     env: Mapping[str, str] | None = None) -> int:
    """Data workers for this process: ``min(max_workers, max(1, cores // LOCAL_WORLD_SIZE))``.

    Args:
        max_workers: the cap (``DataCfg.max_workers``).
        cores: CPU cores this process may run on; default ``len(os.sched_getaffinity(0))``.
        env: environment to read ``LOCAL_WORLD_SIZE`` from (default ``os.environ``); absent or
            empty means one process on this node.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers: {max_workers} must be >= 1")
    env = os.environ if env is None else env
    raw = env.get("LOCAL_WORLD_SIZE", "") or "1"
    try:
        local = int(raw)
    except ValueError:
        raise ValueError(f"LOCAL_WORLD_SIZE: {raw!r} is not an integer") from None
    if local < 1:
        raise ValueError(f"LOCAL_WORLD_SIZE: {local} must be >= 1")
    cores = _usable_cores() if cores is None else int(cores)
    return min(int(max_workers), max(1, cores // local))


def resolve_num_workers(num_workers: int | None, max_workers: int = DEFAULT_MAX_WORKERS) -> int:
    """``num_workers`` as configured (``None``: :func:`auto_num_workers`)."""
    return auto_num_workers(max_workers) if num_workers is None else int(num_workers)


def loader_kwargs(num_workers: int, device_type: str, *, persistent_workers: bool = True,
                  pin_memory: bool = True, prefetch_factor: int = 2) -> dict[str, Any]:
    """``DataLoader`` keyword arguments.

    ``pin_memory`` only takes effect on CUDA (page-locked host buffers make the host-to-device
    copy asynchronous); ``persistent_workers`` and ``prefetch_factor`` (batches each worker keeps
    ready) only with ``num_workers > 0``.
    """
    kw: dict[str, Any] = {"num_workers": int(num_workers), "pin_memory": bool(pin_memory and device_type == "cuda")}
    if num_workers > 0:
        kw["persistent_workers"] = bool(persistent_workers)
        kw["prefetch_factor"] = int(prefetch_factor)
    return kw


class EpochKeyed(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` keys: calls ``dataset.set_epoch(epoch)`` (in the
    process that builds the item) when the epoch changes, then returns ``dataset[index]``. A
    dataset without ``set_epoch`` (the same items every epoch) is indexed as it is."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._set_epoch = getattr(dataset, "set_epoch", None)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self._epoch and self._set_epoch is not None:
            self._set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


class EpochKeyedBatches(Sampler[list[tuple[int, int]]]):
    """The batches of ``batch_sampler`` (which has an ``epoch`` attribute, e.g.
    ``ShardedBatchSampler``) as ``(epoch, index)`` keys, the epoch read when iteration starts."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = int(self.batch_sampler.epoch)
        for batch in self.batch_sampler:
            yield [(epoch, int(i)) for i in batch]
