"""Training engine: config-driven trainer, checkpoints, distributed helpers, loss and EMA.

Entry points: :class:`Trainer` (``Trainer(exp).fit()``) and :func:`run_test`.
"""
from harness.engine.checkpoint import CheckpointError, atomic_save, find_resume, load_checkpoint
from harness.engine.dist import DistInfo, ShardedBatchSampler, init_distributed
from harness.engine.ema import ModelEMA
from harness.engine.loss import KeypointMSELoss
from harness.engine.testing import run_test
from harness.engine.trainer import FitResult, NonFiniteLossError, Trainer, TrainingInterrupted, lr_factor

__all__ = ["CheckpointError", "DistInfo", "FitResult", "KeypointMSELoss", "ModelEMA", "NonFiniteLossError",
           "ShardedBatchSampler", "Trainer", "TrainingInterrupted", "atomic_save", "find_resume",
           "init_distributed", "load_checkpoint", "lr_factor", "run_test"]
