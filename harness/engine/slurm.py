"""SLURM launch through submitit (optional extra: ``pip install hrbench[slurm]``).

``submit(exp, nodes=2, gpus_per_node=8)`` queues one SLURM job with ``nodes * gpus_per_node`` tasks;
each task exports the torch.distributed variables submitit derives from SLURM (MASTER_ADDR/PORT,
RANK, WORLD_SIZE, LOCAL_RANK) and runs the same :class:`~harness.engine.Trainer` that torchrun
would run, always with ``resume="auto"``: when SLURM preempts or times the job out, submitit
requeues it and the new allocation continues from ``last.pth`` (set ``train.ckpt_interval_iters``
to bound the work lost between checkpoints).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import Experiment

from harness.errors import UsageError

log = logging.getLogger(__name__)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ImportError("SLURM launching needs submitit: pip install 'hrbench[slurm]' (or pip install submitit); "
                          "alternatively run torchrun inside your own sbatch script") from None
    return submitit


@dataclass
class TrainJob:
    """The picklable callable a SLURM task runs."""

    exp: dict  # Experiment.to_dict(), so the job does not depend on the registry at run time
    work_dir: str
    device: str | None = None

    def __call__(self) -> dict[str, Any]:
        submitit = _submitit()
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            # set_cuda_visible_devices=False: the trainer selects cuda:LOCAL_RANK itself.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        from harness.engine.trainer import Trainer

        result = Trainer(Experiment.from_dict(self.exp), work_dir=self.work_dir, resume="auto", device=self.device,
                         progress=False).fit()
        return {"work_dir": str(result.work_dir), "global_iter": result.global_iter, "best_ap": result.best_ap,
                "sec_per_iter": result.sec_per_iter, "val_metrics": result.val_metrics}

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on preemption/timeout: requeue the same job (it resumes from last.pth)."""
        return _submitit().helpers.DelayedSubmission(TrainJob(self.exp, self.work_dir, self.device))


def submit(exp: Experiment, *, work_dir: str | os.PathLike | None = None, nodes: int = 1, gpus_per_node: int = 8,
           partition: str | None = None, timeout_min: int = 72 * 60, cpus_per_task: int = 8,
           cluster: str | None = None, folder: str | os.PathLike | None = None):
    """Queue ``exp`` on SLURM; returns the submitit Job. ``cluster="debug"`` runs it in-process (tests)."""
    if nodes < 1 or gpus_per_node < 1:
        raise UsageError(f"--slurm-nodes/--slurm-gpus-per-node must be >= 1, got {nodes}/{gpus_per_node}")
    submitit = _submitit()
    work = Path(work_dir) if work_dir else exp.resolved_work_dir()
    executor = submitit.AutoExecutor(folder=str(folder or work / "slurm" / "%j"), cluster=cluster)
    params: dict[str, Any] = dict(name=exp.name, nodes=nodes, tasks_per_node=gpus_per_node, timeout_min=timeout_min,
                                  cpus_per_task=cpus_per_task)
    if executor.cluster == "slurm":
        params.update(gpus_per_node=gpus_per_node, slurm_signal_delay_s=120)
        if partition:
            params["slurm_partition"] = partition
    executor.update_parameters(**params)
    job = executor.submit(TrainJob(exp.to_dict(), str(work)))
    log.info("submitted %s as job %s (%d node(s) x %d task(s)); logs in %s", exp.name, job.job_id, nodes,
             gpus_per_node, executor.folder)
    return job
