"""Run a top-down pose model over a ``TopDownDataset`` and return raw predictions.

Test-time procedure of the HRNet/HRFormer/HRNeXt configs: heatmaps of the crop, optionally
averaged with the heatmaps of the horizontally flipped crop (flipped back, channels swapped and,
for the standard codec, shifted one pixel), decoded (argmax + quarter-pixel offset, or DARK/UDP as
the dataset's codec says), mapped back to the image with the inverse of the crop's affine warp.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.data.codecs import flip_heatmaps
from harness.data.dataset import TopDownDataset
from harness.data.transforms import apply_affine, invert_affine
from harness.parallel import bar_position

log = logging.getLogger(__name__)

__all__ = ["predict", "predict_arrays"]


def predict_arrays(model: torch.nn.Module, dataset: TopDownDataset, *, batch_size: int = 32,
                   flip_test: bool = True, device: str | torch.device = "cpu", num_workers: int = 0,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """Like :func:`predict` but returns arrays: ``index`` (N,), ``keypoints`` (N, K, 2) image
    pixels, ``keypoint_scores`` (N, K)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: {batch_size} must be >= 1")
    if dataset.cfg.train:
        raise ValueError("predict: the dataset is in training mode (random augmentation); build it with train=False")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=str(device).startswith("cuda"))
    codec = dataset.codec
    flip_idx = dataset.meta.flip_indices
    k = dataset.num_keypoints
    n = len(dataset)
    out_idx = np.zeros(n, np.int64)
    out_kp = np.zeros((n, k, 2), np.float32)
    out_sc = np.zeros((n, k), np.float32)
    was_training = model.training
    model.eval()
    it: Any = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="inference", unit="batch", leave=False, position=bar_position())
    pos = 0
    try:
        with torch.inference_mode():
            for batch in it:
                imgs = batch["img"].to(device, non_blocking=True)
                heat = model(imgs)
                if not isinstance(heat, torch.Tensor) or heat.ndim != 4 or heat.shape[1] != k:
                    raise ValueError(
                        f"model output must be heatmaps (N, {k}, H/4, W/4); got "
                        f"{tuple(heat.shape) if isinstance(heat, torch.Tensor) else type(heat).__name__}"
                    )
                want = (codec.heatmap_size[1], codec.heatmap_size[0])
                if tuple(heat.shape[-2:]) != want:
                    raise ValueError(f"model heatmaps are {tuple(heat.shape[-2:])} (H, W); the dataset's codec "
                                     f"expects {want} (1/4 of the {dataset.input_size} input)")
                if flip_test:
                    heat_f = model(imgs.flip(3))
                    heat = (heat + flip_heatmaps(heat_f, flip_idx, shift=not codec.udp)) * 0.5
                hm = heat.float().cpu().numpy()
                kp_in, scores = codec.decode(hm)
                idx = batch["index"].numpy()
                b = len(idx)
                out_idx[pos:pos + b] = idx
                out_kp[pos:pos + b] = kp_in
                out_sc[pos:pos + b] = scores
                pos += b
    finally:
        model.train(was_training)
    # back to image pixels: inverse of each crop's image -> input warp (no rotation/flip at test)
    mats = np.stack([dataset.crop_params(int(i))["img_matrix"] for i in out_idx]) if n else np.zeros((0, 2, 3))
    out_kp = apply_affine(out_kp, invert_affine(mats)).astype(np.float32)
    return {"index": out_idx, "keypoints": out_kp, "keypoint_scores": out_sc}


def predict(model: torch.nn.Module, dataset: TopDownDataset, *, batch_size: int = 32,
            flip_test: bool = True, device: str | torch.device = "cpu", num_workers: int = 0,
            progress: bool = True) -> list[dict]:
    """Raw top-down predictions, one per dataset item, in the RAW.json format:
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "bbox_score", "area",
    "keypoints": [[x, y], ...], "keypoint_scores": [...]}``.

    ``model(imgs (N, 3, H, W)) -> heatmaps (N, K, H/4, W/4)``.
    """
    arr = predict_arrays(model, dataset, batch_size=batch_size, flip_test=flip_test, device=device,
                         num_workers=num_workers, progress=progress)
    kps = arr["keypoints"].tolist()
    scs = arr["keypoint_scores"].tolist()
    out = []
    for j, i in enumerate(arr["index"].tolist()):
        inst = dataset.instances[i]
        out.append({
            "image_id": int(inst.image_id),
            "category_id": 1,
            "bbox": [float(v) for v in inst.bbox],
            "bbox_score": float(inst.bbox_score),
            "area": float(np.prod(dataset.scales[i])),
            "keypoints": kps[j],
            "keypoint_scores": scs[j],
        })
    return out
