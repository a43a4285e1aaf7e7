"""Sub-commands ``train``, ``test`` and ``evaluate``.

    python -m harness train EXP [--set key=value ...] [--work-dir DIR] [--resume auto|FILE]
    torchrun --nproc_per_node 8 -m harness train EXP ...          (DDP, one node)
    python -m harness test EXP --checkpoint FILE [--set ...]
    python -m harness evaluate MODEL --checkpoint FILE --data coco --data-root DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

log = logging.getLogger("harness.train")

_SET_HELP = ("override a config value, repeatable: --set train.epochs=10 --set data.root=/data/coco "
             "--set model.overrides.drop_path_rate=0.2 (an unknown key lists the valid ones)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an experiment (single process or under torchrun)",
        description="Train a registered experiment (see --list). Writes config.json, log.csv, TensorBoard "
        "events, last.pth and best.pth to the work dir (default work_dirs/<experiment>). Under torchrun "
        "every process joins a DistributedDataParallel group (nccl on GPU, gloo on CPU).")
    p.add_argument("experiment", nargs="?", help="experiment name, or a saved config.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--work-dir", help="output folder (default: work_dirs/<experiment>)")
    p.add_argument("--resume", metavar="auto|FILE",
                   help="'auto' continues from <work-dir>/last.pth if present; or a checkpoint file")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--test", action="store_true", help="after training, run `test` on the best checkpoint")
    p.add_argument("--results-root", default="results/runs", help="results store for --test records")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("--list", action="store_true",
                   help="list the registered experiments with their recipe (paper, mmpose, fair) and source, and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    s = p.add_argument_group("SLURM (optional extra: pip install 'hrbench[slurm]')")
    s.add_argument("--slurm-nodes", type=int, metavar="N",
                   help="submit to SLURM through submitit on N nodes instead of running here")
    s.add_argument("--slurm-gpus-per-node", type=int, default=8, metavar="G", help="tasks/GPUs per node (default 8)")
    s.add_argument("--slurm-partition", help="SLURM partition")
    s.add_argument("--slurm-time", type=int, default=72 * 60, metavar="MIN",
                   help="time limit in minutes; on timeout/preemption the job requeues and resumes (default 4320)")
    s.add_argument("--slurm-cluster", choices=["slurm", "local", "debug"], default=None,
                   help=argparse.SUPPRESS)  # "debug" runs the job in-process (tests)
    p.set_defaults(func=cmd_train)

    t = subparsers.add_parser(
        "test", help="evaluate an experiment's checkpoint on its eval splits and write result records",
        description="Evaluate CHECKPOINT with EXP's eval section (dataset, splits, boxes) and write one "
        "result record per split into the results store.")
    t.add_argument("experiment", help="experiment name, or a saved config.json")
    t.add_argument("--checkpoint", required=True, help="a training checkpoint (last.pth/best.pth) or weights file")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    t.add_argument("--split", action="append", help="evaluate only this split (repeatable)")
    t.add_argument("--device", choices=["cpu", "cuda"])
    t.add_argument("--results-root", default="results/runs", help="results store (default results/runs)")
    t.add_argument("--no-progress", action="store_true")
    _add_breakdown(t)
    t.set_defaults(func=cmd_test)

    e = subparsers.add_parser(
        "evaluate", help="evaluate a published checkpoint (any layout load_weights detects)",
        description="Evaluate published weights of MODEL on a dataset without an experiment: the weights "
        "file goes through load_weights' layout detection. Writes a result record (recipe 'published').")
    e.add_argument("model", help="model name, e.g. hrnet-w32 (see `python -m harness models`)")
    e.add_argument("--checkpoint", required=True, help="weights file (mmpose, authors' release, or ours)")
    e.add_argument("--data", required=True, choices=["coco", "ochuman", "crowdpose", "synthetic"],
                   help="dataset")
    e.add_argument("--data-root", required=True, help="dataset folder")
    e.add_argument("--split", action="append", help="split(s) (default: the dataset's paper splits)")
    e.add_argument("--input-size", default="256x192", help="HxW (default 256x192)")
    e.add_argument("--boxes", choices=["gt", "det"], help="person boxes (default: the paper's)")
    e.add_argument("--det-file", default="auto",
                   help="detection results JSON for --boxes det (default 'auto': the dataset's standard file)")
    e.add_argument("--no-flip", action="store_true", help="no flip test")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", choices=["cpu", "cuda"])
    e.add_argument("--results-root", default="results/runs")
    e.add_argument("--no-progress", action="store_true")
    _add_breakdown(e)
    e.set_defaults(func=cmd_evaluate)


def _add_breakdown(p) -> None:
    p.add_argument("--breakdown", choices=["occlusion"], default=None,
                   help="also AP/AR per occlusion level, stored in the record (OCHuman: MaxIoU; CrowdPose: crowd "
                   "index; COCO: overlapping people and labelled keypoints; see harness.eval.breakdown)")


def _print_err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_train(args: argparse.Namespace) -> int:
    from harness.config import get_experiment, list_experiments

    if args.list:
        print(_experiment_table(list_experiments()))
        return 0
    if not args.experiment:
        return _print_err("train: give an experiment name (see --list)")
    exp = get_experiment(args.experiment, args.overrides)
    if args.print_config:
        print(json.dumps(exp.to_dict(), indent=2))
        return 0

    if args.slurm_nodes is not None:
        return _submit_slurm(exp, args)

    from harness.engine import Trainer, TrainingInterrupted, run_test
    from harness.workdir import BEST, LAST

    trainer = Trainer(exp, work_dir=args.work_dir, resume=args.resume, device=args.device,
                      progress=not args.no_progress)
    try:
        result = trainer.fit()  # errors in the user's input reach harness.cli (exit 2, one line)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 128 + int(e.signum)
    rank0 = trainer.info.is_main
    if rank0:
        print(f"{exp.name}: {result.global_iter} iterations, {result.sec_per_iter:.3f} s/iteration, "
              f"best AP {result.best_ap:.4f}, checkpoints in {result.work_dir}")
    if args.test and rank0:
        ckpt = result.work_dir / (BEST if (result.work_dir / BEST).is_file() else LAST)
        run_test(exp, ckpt, device=args.device, results_root=args.results_root, progress=not args.no_progress)
    return 0


def _experiment_table(names: list[str]) -> str:
    """One line per experiment: name, recipe and the source it was read from (for ``train --list``)."""
    from harness.config import get_experiment

    rows = [(n, get_experiment(n)) for n in names]
    width = max((len(n) for n, _ in rows), default=10)
    lines = [f"{'experiment':<{width}}  {'recipe':<7} source", f"{'-' * width}  {'-' * 7} {'-' * 6}"]
    for name, exp in rows:
        lines.append(f"{name:<{width}}  {exp.recipe:<7} {exp.source.label() or '-'}"
                     + (f" ({exp.source.note})" if exp.source.note else ""))
    lines.append("\nrecipes: paper = the code behind the HRNeXt paper's number (HRNet/HRFormer/HRNeXt authors'), "
                 "mmpose = mmpose 1.x model zoo, fair = HRNeXt's recipe for every family")
    return "\n".join(lines)


def _submit_slurm(exp, args: argparse.Namespace) -> int:
    from harness.engine.slurm import submit

    try:
        job = submit(exp, work_dir=args.work_dir, nodes=args.slurm_nodes, gpus_per_node=args.slurm_gpus_per_node,
                     partition=args.slurm_partition, timeout_min=args.slurm_time, cluster=args.slurm_cluster)
    except ImportError as e:  # the optional extra is not installed
        return _print_err(str(e))
    print(f"submitted {exp.name} as SLURM job {job.job_id}")
    if args.slurm_cluster == "debug":
        print(f"finished: {job.result()}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from harness.config import get_experiment

    exp = get_experiment(args.experiment, args.overrides)
    from harness.engine import run_test

    results = run_test(exp, args.checkpoint, device=args.device, results_root=args.results_root,
                       splits=tuple(args.split) if args.split else None, progress=not args.no_progress,
                       breakdown=args.breakdown)
    for r in results:
        print(f"{exp.eval.dataset}/{r['split']}: AP={r['metrics'].get('AP', float('nan')):.4f} -> {r['path']}")
    return 0


# How each paper evaluates: (splits, person boxes).
def published_experiment(model: str, data: str, data_root: str, *, input_size: tuple[int, int],
                         splits: tuple[str, ...] | None, boxes: str | None, det_file: str | None,
                         flip: bool, batch_size: int):
    """An Experiment describing how published weights are evaluated (recipe 'published').

    Starts from the registered paper row when there is one (so the record carries the paper's
    pretrain setting and sigma), otherwise from a generic row.
    """
    from harness.config import (DataCfg, EvalCfg, Experiment, InitCfg, ModelCfg, SourceCfg, eval_protocol,
                                get_experiment, row_experiment)

    h, w = input_size
    row = row_experiment(data, model, (h, w))
    if row is not None:
        base = get_experiment(row)
    else:
        row = f"{data}-{model}-{h}x{w}-paper"
        paper_splits, paper_boxes = eval_protocol(data) or (("val",), "gt")
        base = Experiment(name=row, model=ModelCfg(name=model, num_keypoints=14 if data == "crowdpose" else 17),
                          data=DataCfg(dataset=data, root=data_root, input_size=(h, w)),
                          init=InitCfg(pretrain="none"),
                          eval=EvalCfg(dataset=data, root=data_root, splits=paper_splits,
                                       boxes=paper_boxes))
    ev = base.eval
    ev = dataclasses.replace(ev, dataset=data, root=data_root, splits=splits or ev.splits,
                             boxes=boxes or ev.boxes, det_file=det_file if det_file else ev.det_file,
                             flip_test=flip, batch_size=batch_size)
    pretrain = "none" if model.startswith("hrnext") else base.init.pretrain
    return dataclasses.replace(base, name=f"published-{data}-{model}-{h}x{w}", recipe="published", source=SourceCfg(),
                               data=dataclasses.replace(base.data, root=data_root), eval=ev,
                               init=InitCfg(pretrain=pretrain))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from harness.validate import parse_hw

    hw = parse_hw(args.input_size, "--input-size", multiple_of=4)
    exp = published_experiment(args.model, args.data, args.data_root, input_size=hw,
                               splits=tuple(args.split) if args.split else None, boxes=args.boxes,
                               det_file=args.det_file, flip=not args.no_flip, batch_size=args.batch_size)
    from harness.engine import run_test

    results = run_test(exp, args.checkpoint, device=args.device, results_root=args.results_root,
                       progress=not args.no_progress,
                       breakdown=args.breakdown)
    for r in results:
        print(f"{args.model} {args.data}/{r['split']}: AP={r['metrics'].get('AP', float('nan')):.4f} -> {r['path']}")
    return 0

