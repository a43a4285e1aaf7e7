"""Training engine: loss, schedule, sampler, checkpoints, EMA, the loop and its failure paths, the CLI."""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from harness.config import ConfigError, get_experiment
from harness.engine import (CheckpointError, KeypointMSELoss, ModelEMA, NonFiniteLossError, ShardedBatchSampler,
                            Trainer, TrainingInterrupted, atomic_save, load_checkpoint, lr_factor)
from harness.engine import builders
from harness.engine.trainer import build_optimizer
from harness.optim import fused_ok
from support import engine_support as support



pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_exp(**extra):
    return get_experiment("coco-mini-hrnet", support.tiny_overrides(**extra))


# --------------------------------------------------------------------------------------------- loss


def test_loss_is_mmpose_weighted_mean():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    w = torch.tensor([[1.0, 0.0, 1.0], [0.5, 1.0, 0.0]])
    loss = KeypointMSELoss()(pred, target, w)
    manual = sum(float(w[n, k]) * float(((pred[n, k] - target[n, k]) ** 2).sum())
                 for n in range(2) for k in range(3)) / pred.numel()
    assert loss.item() == pytest.approx(manual, rel=1e-6)
    assert KeypointMSELoss()(pred, target).item() == pytest.approx(float(((pred - target) ** 2).mean()), rel=1e-6)
    # A keypoint with weight 0 contributes nothing, whatever its prediction.
    pred2 = pred.clone()
    pred2[0, 1] += 100.0
    assert KeypointMSELoss()(pred2, target, w).item() == pytest.approx(loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="heatmap shape mismatch"):
        KeypointMSELoss()(pred, target[:, :2])
    with pytest.raises(ValueError, match="target_weight must be"):
        KeypointMSELoss()(pred, target, w[:, :2])


# ----------------------------------------------------------------------------------------- schedule


def test_lr_factor_warmup_cosine_and_multistep():
    fair = get_experiment("coco-hrnext-s-256x192-fair")  # warm-up 500 from 0.001, cosine to 0.01 over 300 epochs
    assert lr_factor(fair, 0, 100) == pytest.approx(0.001)
    assert lr_factor(fair, 250, 1000) == pytest.approx(0.001 + 0.999 * 0.5)  # still epoch 0: cosine = 1
    assert lr_factor(fair, 500, 1000) == pytest.approx(1.0)
    assert lr_factor(fair, 150 * 100, 100) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way: cos = 0
    assert lr_factor(fair, 299 * 100 + 99, 100) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + torch.cos(
        torch.tensor(torch.pi * 299 / 300)).item()), rel=1e-6)
    paper = get_experiment("coco-hrnet-w32-256x192-paper")  # x0.1 at epochs 170 and 200
    assert lr_factor(paper, 169 * 10 + 9, 10) == pytest.approx(1.0)
    assert lr_factor(paper, 170 * 10, 10) == pytest.approx(0.1)
    assert lr_factor(paper, 200 * 10, 10) == pytest.approx(0.01)


def test_lr_factor_cosine_per_iteration():
    # by_epoch=False: the cosine moves every iteration over the whole run (max_iters when it is shorter).
    exp = get_experiment("demo-hrnet", {"sched.by_epoch": False, "sched.warmup_iters": 0, "train.epochs": 4,
                                        "sched.min_lr_ratio": 0.1})
    assert lr_factor(exp, 0, 100) == pytest.approx(1.0)
    assert lr_factor(exp, 50, 100) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 400)))
    assert lr_factor(exp, 200, 100) == pytest.approx(0.55)
    assert lr_factor(exp, 400, 100) == pytest.approx(0.1)
    by_epoch = dataclasses.replace(exp, sched=dataclasses.replace(exp.sched, by_epoch=True))
    assert lr_factor(by_epoch, 50, 100) == pytest.approx(1.0)  # still epoch 0
    short = get_experiment("demo-hrnet", {"sched.by_epoch": False, "sched.warmup_iters": 0, "train.epochs": 4,
                                          "train.max_iters": 100, "sched.min_lr_ratio": 0.1})
    assert lr_factor(short, 50, 100) == pytest.approx(0.55)
    with pytest.raises(ConfigError, match="sched.by_epoch"):
        get_experiment("demo-hrnet", {"sched.by_epoch": "sometimes"})


def test_optimizer_groups_exempt_relative_position_bias_from_decay():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)
            self.relative_position_bias_table = torch.nn.Parameter(torch.zeros(3))

    opt = build_optimizer(M(), get_experiment("coco-hrformer-s-256x192-paper"))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1]
    assert isinstance(build_optimizer(M(), get_experiment("coco-hrnet-w32-256x192-paper")), torch.optim.Adam)


@pytest.mark.parametrize("exp_name,groups", [("coco-hrformer-s-256x192-paper", 2), ("coco-hrnet-w32-256x192-paper", 1)])
def test_optimizer_is_fused_and_equals_the_per_parameter_loop(exp_name, groups):
    """The trainer's Adam(W) runs torch's fused kernels; after 5 steps (AdamW with its no-decay group, Adam)
    the weights equal those of torch's per-parameter loop (the references' CPU optimizer) to float64
    rounding."""
    exp = get_experiment(exp_name)
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).double()
    start.relative_position_bias_table = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    models = {"fused": copy.deepcopy(start), "loop": copy.deepcopy(start)}
    opts = {kind: build_optimizer(m, exp) for kind, m in models.items()}
    assert all(g["fused"] for g in opts["fused"].param_groups) and len(opts["fused"].param_groups) == groups
    for g in opts["loop"].param_groups:
        g["fused"], g["foreach"] = False, False
    for _ in range(5):
        grads = [torch.randn_like(p) for p in start.parameters()]
        for kind, m in models.items():
            for p, g in zip(m.parameters(), grads):
                p.grad = g.clone()
            opts[kind].step()
    for a, b, p0 in zip(models["fused"].parameters(), models["loop"].parameters(), start.parameters()):
        assert (a - p0).abs().min() > 0  # every weight moved
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    # Where the fused kernels do not apply, the loop runs (an integer or meta tensor, no parameters).
    assert fused_ok([torch.zeros(2)]) and fused_ok([torch.zeros(2, dtype=torch.bfloat16)])
    assert not fused_ok([]) and not fused_ok([torch.zeros(2, dtype=torch.int64)])
    assert not fused_ok([torch.zeros(2, device="meta")])


# ------------------------------------------------------------------------------------------ sampler

def test_sampler_shards_one_global_batch_sequence():
    single = ShardedBatchSampler(43, 8, seed=3)
    single.set_epoch(2)
    batches = list(single)
    assert len(batches) == len(single) == 5 and all(len(b) == 8 for b in batches)  # last partial batch dropped
    assert len(set(sum(batches, []))) == 40
    shards = []
    for r in range(2):
        s = ShardedBatchSampler(43, 8, rank=r, world_size=2, seed=3)
        s.set_epoch(2)
        shards.append(list(s))
    assert [a + b for a, b in zip(*shards)] == batches  # ranks together see exactly the single-process batch
    again = ShardedBatchSampler(43, 8, seed=3)
    again.set_epoch(2)
    assert list(again) == batches  # a function of (seed, epoch) only
    again.set_epoch(3)
    assert list(again) != batches
    again.set_epoch(2, start_batch=3)  # resume mid-epoch: skip what was trained
    assert list(again) == batches[3:] and len(again) == 2
    with pytest.raises(ValueError, match="train.batch_size: global batch 8 is not divisible by the world size 3"):
        ShardedBatchSampler(43, 8, world_size=3)
    with pytest.raises(ValueError, match="larger than the dataset"):
        ShardedBatchSampler(5, 8)


# -------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_atomic_write_and_corrupt_file(tmp_path):
    p = atomic_save({"model": {"w": torch.ones(2)}, "global_iter": 3}, tmp_path / "last.pth")
    assert load_checkpoint(p)["global_iter"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["last.pth"]  # no temp file left
    data = p.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth: cannot read checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="nope.pth: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"w": torch.ones(1)}, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="not a hrbench training checkpoint"):
        load_checkpoint(tmp_path / "weights.pth")


def test_ema_update_rule():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9, warmup=1e-9)  # warm-up off: decay is 0.9 from the first update
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert not ema.module.weight.requires_grad
    state = ema.state_dict()
    other = ModelEMA(torch.nn.Linear(2, 1), decay=0.9)
    other.load_state_dict(state)
    assert torch.equal(other.module.weight, ema.module.weight) and other.updates == 1
    with pytest.raises(ValueError, match="train.ema_decay"):
        ModelEMA(model, decay=1.0)


# ------------------------------------------------------------------------------------- the loop


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_run_writes_everything_and_learns(tmp_path, monkeypatch):
    support.install(monkeypatch)
    exp = tiny_exp(**{"train.ckpt_interval": 1})
    result = Trainer(exp, work_dir=tmp_path, progress=False).fit()
    assert result.global_iter == 15 and len(result.losses) == 15
    assert sum(result.losses[-3:]) < 0.7 * sum(result.losses[:3]), result.losses
    for name in ("config.json", "log.csv", "val.csv", "last.pth", "best.pth"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["train"]["epochs"] == 3 and len(cfg["config_hash"]) == 64
    rows = _read_csv(tmp_path / "log.csv")
    assert [int(r["iter"]) for r in rows] == list(range(1, 16))
    assert float(rows[-1]["loss"]) == pytest.approx(result.losses[-1], rel=1e-5)
    ckpt = load_checkpoint(tmp_path / "last.pth")
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_iter"]) == (3, 0, 15)
    assert ckpt["best_ap"] == pytest.approx(result.best_ap) and 0 < result.best_ap <= 1
    # The validation wrote a result record (schema of the results store) into the work dir.
    recs = list((tmp_path / "records").rglob("*.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["metrics"]["AP"] == pytest.approx(result.best_ap) and rec["extra"]["stage"] == "validation"
    assert rec["config_hash"] == cfg["config_hash"] and rec["pretrain"] == "none"
    # A second fresh run must not silently overwrite the first one's checkpoints.
    with pytest.raises(FileExistsError, match="--resume auto"):
        Trainer(exp, work_dir=tmp_path, progress=False).fit()
    # Resuming under a changed config is refused, naming what changed.
    with pytest.raises(ConfigError, match=r"optim.lr: 0.01 -> 0.02"):
        Trainer(get_experiment("coco-mini-hrnet", support.tiny_overrides(**{"optim.lr": 0.02})),
                work_dir=tmp_path, resume="auto", progress=False).fit()
    # Resuming a finished run is a no-op that keeps the weights.
    again = Trainer(exp, work_dir=tmp_path, resume="auto", progress=False).fit()
    assert again.losses == [] and torch.equal(load_checkpoint(tmp_path / "last.pth")["model"]["head.final_layer.weight"],
                                              ckpt["model"]["head.final_layer.weight"])


def test_sigterm_checkpoints_and_resume_matches_uninterrupted(tmp_path, monkeypatch):
    support.install(monkeypatch)
    exp = tiny_exp()
    ref = Trainer(exp, work_dir=tmp_path / "ref", progress=False).fit()

    class Killer(support.TinyPoseDataset):
        calls = 0

        def __getitem__(self, i):
            Killer.calls += 1
            if Killer.calls == 8 * 7 + 1:  # first sample of iteration 8 (epoch 1, batch 3)
                os.kill(os.getpid(), signal.SIGTERM)
            return super().__getitem__(i)

    monkeypatch.setattr(builders, "build_dataset", lambda exp, split, *, train, eval_set=False:
                        Killer(40, exp.data.input_size, exp.model.num_keypoints, exp.train.seed)
                        if train else support.tiny_build_dataset(exp, split, train=False))
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="continue with --resume auto") as e:
        Trainer(exp, work_dir=tmp_path / "run", progress=False).fit()
    assert e.value.signum == signal.SIGTERM
    ckpt = load_checkpoint(tmp_path / "run" / "last.pth")
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_iter"]) == (1, 3, 8)
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the trainer's handler is removed again
    support.install(monkeypatch)
    resumed = Trainer(exp, work_dir=tmp_path / "run", resume="auto", progress=False).fit()
    assert len(resumed.losses) == 7 and resumed.losses == ref.losses[8:]
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(tmp_path / "run" / "last.pth")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert resumed.val_metrics == ref.val_metrics
    # The log reads as one run: no duplicated iterations after the resume.
    assert [int(r["iter"]) for r in _read_csv(tmp_path / "run" / "log.csv")] == list(range(1, 16))


class _NaNAfter(torch.nn.Module):
    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls >= self.n else out


def test_non_finite_loss_names_iteration_and_last_checkpoint(tmp_path, monkeypatch):
    support.install(monkeypatch)
    monkeypatch.setattr(builders, "build_model", lambda exp: _NaNAfter(support.tiny_build_model(exp), 6))
    exp = tiny_exp(**{"train.ckpt_interval_iters": 2})
    with pytest.raises(NonFiniteLossError) as e:
        Trainer(exp, work_dir=tmp_path, progress=False).fit()
    msg = str(e.value)
    assert "non-finite loss (nan) at iteration 6 (epoch 1, batch 1/5)" in msg
    assert f"last good checkpoint: {tmp_path / 'last.pth'}" in msg
    assert load_checkpoint(tmp_path / "last.pth")["global_iter"] == 4  # the NaN step was never saved
    monkeypatch.setattr(builders, "build_model", lambda exp: _NaNAfter(support.tiny_build_model(exp), 1))
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 .*last good checkpoint: none"):
        Trainer(exp, work_dir=tmp_path / "b", progress=False).fit()


def test_amp_clip_ema_channels_last_options_run(tmp_path, monkeypatch):
    support.install(monkeypatch)
    exp = tiny_exp(**{"train.amp": "bf16", "train.clip_grad": 0.5, "train.ema": "true", "train.ema_decay": 0.9,
                      "train.channels_last": "true", "train.epochs": 1, "train.val_interval": 1})
    result = Trainer(exp, work_dir=tmp_path, progress=False).fit()
    assert all(torch.isfinite(torch.tensor(result.losses)))
    norms = [float(r["grad_norm"]) for r in _read_csv(tmp_path / "log.csv")]
    assert all(n == n and n > 0 for n in norms)  # clipping reports the pre-clip norm
    ckpt = load_checkpoint(tmp_path / "last.pth")
    assert ckpt["ema"]["updates"] == 5
    assert not torch.equal(ckpt["ema"]["module"]["head.final_layer.weight"], ckpt["model"]["head.final_layer.weight"])
    # `test` evaluates the EMA weights (what validation scored); a foreign file goes to load_weights by path.
    from harness.engine.testing import weights_from_file
    weights, kind = weights_from_file(tmp_path / "last.pth")
    assert kind == "ema" and torch.equal(weights["head.final_layer.weight"],
                                         ckpt["ema"]["module"]["head.final_layer.weight"])
    torch.save({"state_dict": ckpt["model"]}, tmp_path / "foreign.pth")
    assert weights_from_file(tmp_path / "foreign.pth") == (str(tmp_path / "foreign.pth"), "file")
    # fp16 uses a loss scaler; its state is checkpointed too.
    exp16 = tiny_exp(**{"train.amp": "fp16", "train.epochs": 1, "train.val_interval": 0})
    Trainer(exp16, work_dir=tmp_path / "fp16", progress=False).fit()
    assert load_checkpoint(tmp_path / "fp16" / "last.pth")["scaler"]["scale"] > 0


def test_imagenet_recipe_requires_weights_and_loads_backbone_only(tmp_path, monkeypatch):
    support.install(monkeypatch, model="real")
    exp = get_experiment("coco-mini-hrnet", ["init.pretrain=imagenet"])
    with pytest.raises(ValueError, match="init.weights: .*--set init.weights=PATH"):
        builders.build_model(exp)
    with pytest.raises(FileNotFoundError, match="init.weights: .*missing.pth does not exist"):
        builders.build_model(get_experiment("coco-mini-hrnet", ["init.pretrain=imagenet",
                                                                 f"init.weights={tmp_path / 'missing.pth'}"]))
    from harness import create_pose_model
    donor = create_pose_model("hrnet-demo")
    with torch.no_grad():
        donor.head.final_layer.weight.fill_(7.0)
    sd = {k[len("backbone."):]: v for k, v in donor.state_dict().items() if k.startswith("backbone.")}
    torch.save(sd, tmp_path / "imagenet.pth")  # an ImageNet-style backbone-only file
    model = builders.build_model(get_experiment("coco-mini-hrnet", ["init.pretrain=imagenet",
                                                                     f"init.weights={tmp_path / 'imagenet.pth'}"]))
    got = model.state_dict()
    assert all(torch.equal(got["backbone." + k], v) for k, v in sd.items())
    assert not torch.equal(got["head.final_layer.weight"], donor.head.final_layer.weight)  # head stays fresh


# ------------------------------------------------------------------------------------------- CLI


def test_cli_train_test_evaluate(tmp_path, monkeypatch, capsys):
    support.install(monkeypatch)
    sets = sum((["--set", s] for s in support.tiny_overrides(**{"train.epochs": 1, "train.val_interval": 1})), [])
    assert support.run_cli(["train", "coco-mini-hrnet", *sets, "--work-dir", str(tmp_path / "w"),
                            "--no-progress"]) == 0
    assert "coco-mini-hrnet: 5 iterations" in capsys.readouterr().out
    # Bad values exit 2 with the field named, before any work.
    assert support.run_cli(["train", "coco-mini-hrnet", "--set", "train.batch_size=-4"]) == 2
    assert "train.batch_size: must be" in capsys.readouterr().err
    assert support.run_cli(["train", "coco-mini-hrnet", "--set", "train.btach_size=4"]) == 2
    assert "train.btach_size: unknown key; valid keys:" in capsys.readouterr().err
    assert support.run_cli(["train", "--list"]) == 0 and "coco-hrnext-b-384x288-fair" in capsys.readouterr().out

    results = tmp_path / "results"
    assert support.run_cli(["test", "coco-mini-hrnet", *sets, "--checkpoint", str(tmp_path / "w" / "last.pth"),
                            "--results-root", str(results), "--no-progress"]) == 0
    recs = list(results.rglob("*.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    for key in ("model", "family", "dataset", "split", "boxes", "input_size", "metrics", "params", "gflops", "recipe",
                "pretrain", "config_hash", "seed", "git_commit", "hardware", "date", "checkpoint"):
        assert key in rec, key
    assert (rec["model"], rec["dataset"], rec["split"], rec["input_size"]) == ("hrnet-demo", "coco", "val", [32, 32])
    assert rec["recipe"] == "test" and rec["extra"]["stage"] == "test" and rec["params"] > 0
    # Real GFLOPs of the experiment's architecture (hrnet-demo, 4 keypoints, 32x32), in the test record and
    # in the trainer's validation record alike.
    from harness.profile import profile_static

    costs = profile_static("hrnet-demo", (32, 32), num_keypoints=4)
    val_recs = [json.loads(p.read_text()) for p in (tmp_path / "w" / "records").rglob("*.json")]
    assert val_recs and all(r["extra"]["stage"] == "validation" for r in val_recs)
    for r in (rec, *val_recs):
        assert r["gflops"] == costs.gflops_paper_convention > 0
        assert r["extra"]["gflops_fvcore"] == costs.gflops_fvcore > 0
        assert r["extra"]["gflops_convention"] == "hrnet-summary"
    assert support.run_cli(["test", "coco-mini-hrnet", "--checkpoint", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth does not exist" in capsys.readouterr().err


def test_cli_evaluate_published_weights(tmp_path, monkeypatch, capsys):
    """`evaluate` takes a foreign-layout file through load_weights (here mmpose-0.x style keys)."""
    support.install(monkeypatch, model="real")
    from harness import create_pose_model
    model = create_pose_model("hrnet-demo")
    sd = {("keypoint_head." + k[len("head."):] if k.startswith("head.") else k): v
          for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta": {"epoch": 210}}, tmp_path / "published.pth")
    seen = {}

    def fake_eval(m, dataset, exp, *, device, progress=True, on_eval=None):
        seen["w"] = m.head.final_layer.weight.detach().clone()
        seen["exp"] = exp
        return {"AP": 0.5, "AR": 0.6, "AP .5": 0.7}

    monkeypatch.setattr(builders, "evaluate", fake_eval)
    monkeypatch.setattr(builders, "build_dataset", lambda exp, split, *, train, eval_set=False: [split])
    results = tmp_path / "results"
    rc = support.run_cli(["evaluate", "hrnet-demo", "--checkpoint", str(tmp_path / "published.pth"),
                          "--data", "ochuman", "--data-root", str(tmp_path), "--input-size", "64x48",
                          "--boxes", "gt", "--results-root", str(results), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert torch.equal(seen["w"], model.head.final_layer.weight)
    assert seen["exp"].eval.boxes == "gt" and seen["exp"].data.input_size == (64, 48)
    recs = sorted(json.loads(p.read_text())["split"] for p in results.rglob("*.json"))
    assert recs == ["test", "val"]  # OCHuman: both splits
    rec = json.loads(next(results.rglob("*.json")).read_text())
    assert rec["recipe"] == "published" and rec["metrics"] == {"AP": 0.5, "AR": 0.6, "AP .5": 0.7}
    # COCO defaults to the paper's detected boxes: the layout's standard file ("auto").
    assert support.run_cli(["evaluate", "hrnet-demo", "--checkpoint", str(tmp_path / "published.pth"), "--data",
                            "coco", "--data-root", str(tmp_path), "--input-size", "64x48",
                            "--results-root", str(results), "--no-progress"]) == 0
    assert (seen["exp"].eval.boxes, seen["exp"].eval.det_file, seen["exp"].eval.splits) == ("det", "auto", ("val",))
    assert support.run_cli(["evaluate", "hrnet-demo", "--checkpoint", str(tmp_path / "published.pth"), "--data",
                            "coco", "--data-root", str(tmp_path), "--input-size", "64x50"]) == 2
    assert "--input-size: both sides must be divisible by 4, got (64, 50)" in capsys.readouterr().err


def test_slurm_submission_runs_the_trainer_via_submitit(tmp_path, monkeypatch, capsys):
    """`train --slurm-nodes` goes through submitit; its debug executor runs the job in-process."""
    support.install(monkeypatch)
    sets = sum((["--set", s] for s in support.tiny_overrides(**{"train.epochs": 1, "train.val_interval": 1})), [])
    rc = support.run_cli(["train", "coco-mini-hrnet", *sets, "--work-dir", str(tmp_path), "--slurm-nodes", "1",
                          "--slurm-gpus-per-node", "1", "--slurm-cluster", "debug"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "submitted coco-mini-hrnet as SLURM job" in out and "'global_iter': 5" in out
    assert load_checkpoint(tmp_path / "last.pth")["global_iter"] == 5
    # A requeued job resumes: the checkpoint() hook resubmits the same job with resume="auto".
    from harness.engine.slurm import TrainJob
    job = TrainJob(get_experiment("coco-mini-hrnet", support.tiny_overrides()).to_dict(), str(tmp_path))
    assert job.checkpoint().function == job
    # Without submitit the error says what to install.
    import builtins
    real_import = builtins.__import__

    def no_submitit(name, *a, **k):
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    assert support.run_cli(["train", "coco-mini-hrnet", "--slurm-nodes", "2"]) == 2
    assert "pip install 'hrbench[slurm]'" in capsys.readouterr().err


def test_gradient_checkpointing_gives_the_same_gradients():
    from harness import create_pose_model
    exp_cp = get_experiment("coco-mini-hrnet", ["train.grad_checkpoint=true"])
    exp = get_experiment("coco-mini-hrnet")
    torch.manual_seed(0)
    a = builders.build_model(exp_cp)
    b = create_pose_model("hrnet-demo")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 48)
    for m in (a, b):
        m.train()
        m(x).pow(2).mean().backward()
    assert any(getattr(mod, "with_cp", False) for mod in a.modules())
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-7), n
    assert exp.train.grad_checkpoint is False
