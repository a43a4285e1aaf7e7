"""The ``coco-mini-<family>`` experiments the engine tests train: each family's demo variant on the
shared COCO sample (``../shared/data/coco-mini``), 64x48 crops, 2 epochs of batch 8.

Tests only: the product's registry holds no experiment rooted outside the repository.
``register()`` is called from ``conftest.py`` and from the engine tests' subprocess entry point.
"""
from __future__ import annotations

from harness.config import (DataCfg, EvalCfg, Experiment, InitCfg, ModelCfg, OptimCfg, SchedCfg, TrainCfg,
                            register_experiment)
from support.paths import COCO_MINI

FAMILIES = ("hrnet", "hrformer", "hrnext")


def coco_mini_experiment(family: str) -> Experiment:
    """Tiny CPU run of ``<family>-demo``: constant-ish lr, no warm-up dominating a short run."""
    return Experiment(
        name=f"coco-mini-{family}",
        model=ModelCfg(name=f"{family}-demo", num_keypoints=17),
        data=DataCfg(dataset="coco", root=str(COCO_MINI), input_size=(64, 48), sigma=2.0, train_split="train",
                     val_split="val", val_boxes="gt", num_workers=0),
        init=InitCfg(pretrain="none"),
        optim=OptimCfg(name="adamw", lr=2e-3, weight_decay=0.01),
        sched=SchedCfg(name="cosine", warmup_iters=5, warmup_ratio=0.1, min_lr_ratio=0.1),
        train=TrainCfg(epochs=2, batch_size=8, sync_bn=False, val_interval=2, ckpt_interval=1, log_interval=5,
                       deterministic=True),
        eval=EvalCfg(dataset="coco", root="", splits=("val",), boxes="gt", flip_test=True, batch_size=16),
        recipe="test",
    )


def register() -> None:
    for family in FAMILIES:
        register_experiment(coco_mini_experiment(family), replace=True)
