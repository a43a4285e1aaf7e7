"""Load the checkpoints users actually have into our pose models (timm's ``checkpoint_filter_fn`` idea).

Layouts detected automatically, one converter each:

* ``hrbench``: this project's own (``backbone.*`` + ``head.final_layer.*``; training checkpoints keep it
  under ``"model"``).  For HRNet and HRFormer it *is* mmpose 1.x's layout.
* ``mmpose-1.x``: same keys as ours for HRNet/HRFormer.
* ``mmpose-0.x``: ``keypoint_head.final_layer.*`` instead of ``head.final_layer.*``.
* ``hrnext-authors``: the HRNeXt release (mmpose 0.x based): ``keypoint_head.*`` plus their block naming
  (``dw3x3.conv.aggregation.weight`` as a 5-d (K, out, in/g, k, k) bank, ``dw3x3.conv.attention.*``,
  static ``proj1.conv.weight``, branch LayerNorm as ``branches.i.n.norm.weight``).
* ``backbone-only``: bare backbone keys (ImageNet-pretrained classification checkpoints); with
  ``backbone_only=True`` their classifier keys are ignored and the head stays fresh.

Wrappers are unwrapped first (``state_dict`` / ``model`` / ``module.`` from DDP).  Anything that does not
fit — a key missing, an unexpected key, a shape that differs — is listed precisely and refused unless
``strict=False``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from harness.errors import WeightsError

# Integer buffers that are a function of the architecture, not learned: a checkpoint without them
# (e.g. the reference weights) keeps the model's own values.
STRUCTURAL_BUFFERS = ("num_batches_tracked", "relative_position_index")

_HRNEXT_AUTHOR_RULES = [
    (re.compile(r"\.conv\.aggregation\.(weight|bias)$"), r".\1"),
    (re.compile(r"\.conv\.attention\."), r".attention."),
    (re.compile(r"\.conv\.(weight|bias)$"), r".\1"),
    (re.compile(r"((?:layer1|branches\.\d+)\.\d+)\.norm\.(weight|bias)$"), r"\1.\2"),
]
_HRNEXT_AUTHOR_SIGNS = re.compile(r"\.conv\.(aggregation|attention)\.|(dw3x3|proj1|proj2|\.dw)\.conv\.weight$")
_CLASSIFIER_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.", "fc.", "head.fc.")


@dataclass
class LoadReport:
    """What :func:`load_weights` did with one weights file.

    Attributes:
        source: the file (or ``"state dict"``).
        layout: the layout detected (``hrbench``, ``mmpose-0.x``, ``hrnext-authors``, ``backbone-only``).
        loaded: number of tensors copied into the model.
        missing: model keys the file does not have (left as initialised).
        unexpected: file keys the model does not have (ignored).
        mismatched: ``(key, shape in the file, shape in the model)`` for keys of different shape (not loaded).
        kept_buffers: structural buffers (``num_batches_tracked``, ``relative_position_index``) the file
            lacks; the model's own values are kept.
        ignored: classifier keys skipped with ``backbone_only``.
    ``ok`` is True when nothing is missing, unexpected or mis-shaped; ``summary()`` says it in words.
    """

    source: str
    layout: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model)
    kept_buffers: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # classifier keys skipped with backbone_only

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 10) -> str:
        lines = [f"{self.source}: layout {self.layout}, {self.loaded} tensors fit"]
        for label, items in (("missing from the checkpoint", self.missing),
                             ("unexpected in the checkpoint", self.unexpected)):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                lines.append(f"  {len(items)} {label}: {', '.join(items[:limit])}{more}")
        if self.mismatched:
            shown = [f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched[:limit]]
            lines.append(f"  {len(self.mismatched)} shape mismatches: " + "; ".join(shown))
        if self.ignored:
            lines.append(f"  {len(self.ignored)} classifier keys ignored (backbone_only)")
        return "\n".join(lines)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw state dict inside a checkpoint file, unwrapped from training/DDP wrappers."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, not a torch file
        first = str(e).splitlines()[0] if str(e) else ""
        raise WeightsError(f"cannot read checkpoint {path} ({path.stat().st_size} bytes): it is truncated "
                           f"or not a PyTorch checkpoint ({type(e).__name__}: {first})") from None
    return unwrap(obj, str(path))


def unwrap(obj, source: str = "state dict") -> dict:
    for key in ("state_dict", "model", "module", "ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict) and not torch.is_tensor(obj[key]):
            if key == "ema" and "model" in obj:
                break
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{source}: no state dict of tensors found")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def detect_layout(sd: dict) -> str:
    keys = list(sd)
    if any(_HRNEXT_AUTHOR_SIGNS.search(k) for k in keys):
        return "hrnext-authors"
    if any(k.startswith("keypoint_head.") for k in keys):
        return "mmpose-0.x"
    if any(k.startswith("backbone.") for k in keys):
        return "hrbench"  # == mmpose 1.x for HRNet/HRFormer
    return "backbone-only"


def convert_state_dict(sd: dict, layout: str | None = None) -> tuple[dict, str]:
    """Rename ``sd``'s keys into hrbench's layout; returns (converted, detected layout)."""
    layout = layout or detect_layout(sd)
    out = {}
    for k, v in sd.items():
        if layout in ("mmpose-0.x", "hrnext-authors") and k.startswith("keypoint_head."):
            k = "head." + k[len("keypoint_head."):]
        if layout == "hrnext-authors":
            if k.endswith(".conv.aggregation.weight") and v.dim() == 5:
                v = v.flatten(0, 1)  # (K, out, in/g, k, k) -> our (K*out, in/g, k, k)
            for pattern, repl in _HRNEXT_AUTHOR_RULES:
                k = pattern.sub(repl, k)
        if layout == "backbone-only":
            k = "backbone." + k
        out[k] = v
    return out, layout


def load_weights(model: nn.Module, checkpoint: str | os.PathLike | dict, *, strict: bool = True,
                 backbone_only: bool = False) -> LoadReport:
    """Load ``checkpoint`` (a path or a state dict in any supported layout) into a pose model.

    ``backbone_only``: load only ``backbone.*`` (ImageNet initialisation), leaving the head fresh and
    ignoring classifier keys.  With ``strict`` (the default) any missing, unexpected or mis-shaped key
    raises :class:`WeightsError` naming them; otherwise what fits is loaded and the report lists the rest.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        source, sd = str(checkpoint), read_checkpoint(checkpoint)
    else:
        source, sd = "state dict", unwrap(checkpoint)
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{source}: checkpoint has non-finite weights (NaN/inf in {len(bad)} tensors, e.g. {bad[0]})")
    sd, layout = convert_state_dict(sd)
    report = LoadReport(source=source, layout=layout)
    target = model.state_dict()
    if backbone_only:
        target = {k: v for k, v in target.items() if k.startswith("backbone.")}
        for k in list(sd):
            if not k.startswith("backbone.") or k[len("backbone."):].startswith(_CLASSIFIER_PREFIXES):
                report.ignored.append(k)
                del sd[k]
    to_load = {}
    for k, v in sd.items():
        if k not in target:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(target[k].shape):
            report.mismatched.append((k, tuple(v.shape), tuple(target[k].shape)))
        else:
            to_load[k] = v
    for k in target:
        if k not in sd:
            (report.kept_buffers if k.endswith(STRUCTURAL_BUFFERS) else report.missing).append(k)
    report.loaded = len(to_load)
    if strict and not report.ok:
        raise WeightsError(f"{source}: checkpoint does not fit {getattr(model, 'model_name', type(model).__name__)} "
                              f"(pass strict=False to load what fits):\n{report.summary()}"
                              f"{_guess(sd, target)}")
    model.load_state_dict(to_load, strict=False)
    return report


def _guess(sd: dict, target: dict) -> str:
    """A hint when the checkpoint is clearly another model."""
    theirs = sum(v.numel() for k, v in sd.items() if v.is_floating_point())
    ours = sum(v.numel() for k, v in target.items() if v.is_floating_point())
    if theirs and abs(theirs - ours) > 0.01 * ours:
        import backbones
        return (f"\n  the checkpoint holds {theirs / 1e6:.2f}M values, the model {ours / 1e6:.2f}M: "
                f"is it a checkpoint of another model? (registered: {', '.join(backbones.list_models())})")
    return ""
