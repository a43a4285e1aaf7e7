"""Data-loader settings: the automatic worker count, the DataLoader keyword arguments, the config
fields and their validation, and (epoch, index) keys that reach persistent workers."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader

from harness.config import ConfigError, DataCfg, get_experiment
from harness.data.loader import (DEFAULT_MAX_WORKERS, EpochKeyed, EpochKeyedBatches, auto_num_workers, loader_kwargs,
                                 resolve_num_workers)
from harness.engine import ShardedBatchSampler
from support import engine_support as support



@pytest.mark.parametrize("cores, local, cap, expected", [
    (16, None, 16, 16),   # one process: every core it may use
    (64, None, 16, 16),   # capped
    (64, "4", 16, 16),    # 16 per process, at the cap
    (32, "4", 16, 8),     # torchrun with 4 processes on the node: a quarter each
    (16, "8", 16, 2),
    (6, "4", 16, 1),      # fewer cores than processes: still one worker each
    (2, "", 16, 2),       # empty LOCAL_WORLD_SIZE: one process
    (16, "1", 4, 4),      # a smaller cap
])
def test_auto_num_workers_divides_usable_cores_between_local_processes(cores, local, cap, expected):
    env = {} if local is None else {"LOCAL_WORLD_SIZE": local}
    assert auto_num_workers(cap, cores=cores, env=env) == expected


def test_auto_num_workers_follows_the_affinity_mask_not_the_core_count(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # e.g. taskset / a SLURM cgroup
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert auto_num_workers() == 3
    assert resolve_num_workers(None) == 3 and resolve_num_workers(0) == 0 and resolve_num_workers(5) == 5
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert auto_num_workers() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(100)))
    assert auto_num_workers() == min(DEFAULT_MAX_WORKERS, 100 // 3) == 16


def test_auto_num_workers_rejects_bad_environment():
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE: 'two' is not an integer"):
        auto_num_workers(cores=8, env={"LOCAL_WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE: 0 must be >= 1"):
        auto_num_workers(cores=8, env={"LOCAL_WORLD_SIZE": "0"})
    with pytest.raises(ValueError, match="max_workers: 0"):
        auto_num_workers(0, cores=8, env={})


def test_loader_kwargs_per_device_and_worker_count():
    assert loader_kwargs(8, "cuda") == {"num_workers": 8, "pin_memory": True, "persistent_workers": True,
                                        "prefetch_factor": 2}
    assert loader_kwargs(8, "cpu", prefetch_factor=4) == {"num_workers": 8, "pin_memory": False,
                                                          "persistent_workers": True, "prefetch_factor": 4}
    assert loader_kwargs(4, "cuda", persistent_workers=False, pin_memory=False) == {
        "num_workers": 4, "pin_memory": False, "persistent_workers": False, "prefetch_factor": 2}
    # no workers: DataLoader rejects the multiprocessing-only options, so they are left out
    kw = loader_kwargs(0, "cuda")
    assert kw == {"num_workers": 0, "pin_memory": True}
    DataLoader(list(range(4)), **kw)


def test_data_config_defaults_and_validation_name_the_field():
    d = DataCfg(dataset="coco")
    assert (d.num_workers, d.max_workers, d.persistent_workers, d.pin_memory, d.prefetch_factor) == (None, 16, True,
                                                                                                      True, 2)
    for field, bad, match in [("num_workers", -1, "data.num_workers"), ("max_workers", 0, "data.max_workers"),
                              ("prefetch_factor", 0, "data.prefetch_factor"),
                              ("persistent_workers", "yes", "data.persistent_workers"),
                              ("pin_memory", 1, "data.pin_memory")]:
        with pytest.raises(ConfigError, match=match):
            DataCfg(dataset="coco", **{field: bad})
    exp = get_experiment("coco-mini-hrnet", ["data.num_workers=none", "data.prefetch_factor=4",
                                             "data.persistent_workers=false"])
    assert exp.data.num_workers is None and exp.data.prefetch_factor == 4 and not exp.data.persistent_workers
    assert get_experiment("coco-mini-hrnet", ["data.num_workers=6"]).data.num_workers == 6


def test_epoch_keys_reach_persistent_workers():
    """Items of epoch e come from epoch e's stream even though the workers' dataset copies were made
    once, before any set_epoch in the main process."""
    ds = support.TinyPoseDataset(n=16, input_size=(8, 8), num_keypoints=2, seed=3)
    sampler = ShardedBatchSampler(len(ds), 4, shuffle=True, seed=5)
    loader = DataLoader(EpochKeyed(ds), batch_sampler=EpochKeyedBatches(sampler),
                        **loader_kwargs(2, "cpu", persistent_workers=True))
    for epoch, start in [(0, 0), (1, 0), (2, 1), (1, 2)]:
        sampler.set_epoch(epoch, start)
        got = [b for b in loader]
        sampler.epoch = epoch
        ds.set_epoch(epoch)
        want = [torch.utils.data.default_collate([ds[i] for i in idx]) for idx in sampler]
        assert len(got) == len(want) == 4 - start
        for a, b in zip(got, want):
            assert torch.equal(a["index"], b["index"]) and torch.equal(a["img"], b["img"])
