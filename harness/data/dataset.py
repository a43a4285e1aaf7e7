"""TopDownDataset: one person crop per item, mmpose top-down semantics, reproducible augmentation.

Per item (see ``TopDownDataset.__getitem__``): box -> centre/scale
(padding 1.25, input aspect ratio), in training flip / half-body / scale / rotation drawn from a
generator seeded by ``(seed, epoch, index)``, decode the image (cv2; with ``decode="roi"`` only
the part the crop reads, with ``decode="scaled"`` also at 1/2, 1/4 or 1/8 of its size when the
crop shrinks it enough, see ``harness.data.decode``), one
affine warp to the input size (the flip is folded into the warp matrix, so the full image is never
copied), BGR -> RGB, ImageNet normalisation and,
in training, MSRA (or UDP/DARK) Gaussian heatmaps with per-keypoint target weights.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data.codecs import HeatmapCodec
from harness.data.coco import CocoKeypoints, Instance, load_image
from harness.data.decode import DECODE_MODES, load_image_for_crop
from harness.data.metainfo import DatasetMeta
from harness.data.transforms import (
    AugmentConfig,
    apply_affine,
    bbox_xywh_to_cs,
    compose_affine,
    flip_matrix,
    get_affine_matrix,
    get_udp_affine_matrix,
    instance_shifts_0x,
    sample_augmentation,
    warp_image,
)

log = logging.getLogger(__name__)

__all__ = ["TopDownDataset", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


@dataclass(frozen=True)
class _Config:
    input_size: tuple[int, int]  # (H, W)
    padding: float
    train: bool
    seed: int
    decode: str


class TopDownDataset(Dataset):
    """Top-down person crops from a COCO-format keypoint file.

    Args:
        coco: the parsed annotation file (``CocoKeypoints``).
        instances: the people to crop (GT boxes or detections).
        input_size: (H, W) of the network input, e.g. (256, 192) or (384, 288).
        train: apply random augmentation and build heatmap targets.
        codec: heatmap codec (default: MSRA heatmaps at 1/4 resolution, sigma 2 or 3).
        augment: augmentation parameters (HRNet/HRNeXt COCO config defaults).
        padding: box padding (1.25).
        seed: base seed; sample ``i`` of epoch ``e`` draws from ``default_rng([seed, e, i])``.
        use_udp: UDP warp (and pass a UDP codec).
        decode: "full" (every image at full size, the reference's pixels), "roi" (only the region
            the crop reads, for JPEGs with restart markers) or "scaled" ("roi", and JPEGs at 1/2,
            1/4 or 1/8 when the crop has at most one output pixel per decoded pixel); see
            ``harness.data.decode``.

    Items are dicts that ``torch.utils.data.default_collate`` batches:
    ``img`` (3, H, W) float32 normalised RGB; ``heatmaps`` (K, H/4, W/4) float32 (train only);
    ``target_weight`` (K,) float32; ``center`` (2,), ``scale`` (2,) float32 (the crop actually used);
    ``rotation`` float; ``flipped`` bool; ``bbox_score`` float; ``area`` float (product of the
    padded, aspect-fixed box scale, as mmpose's CocoMetric receives it); ``image_id`` int;
    ``index`` int.
    """

    def __init__(
        self,
        coco: CocoKeypoints,
        instances: list[Instance],
        *,
        input_size: tuple[int, int] = (256, 192),
        train: bool,
        codec: HeatmapCodec | None = None,
        augment: AugmentConfig | None = None,
        padding: float = 1.25,
        seed: int = 0,
        use_udp: bool = False,
        decode: str = "full",
    ) -> None:
        if len(input_size) != 2 or any(int(v) <= 0 for v in input_size):
            raise ValueError(f"input_size: {input_size!r} must be (H, W) with positive values")
        if input_size[0] % 4 or input_size[1] % 4:
            raise ValueError(f"input_size: {input_size!r} must be divisible by 4 (heatmaps at 1/4)")
        if not padding > 0:
            raise ValueError(f"padding: {padding} must be > 0")
        if decode not in DECODE_MODES:
            raise ValueError(f"decode: {decode!r} must be one of {list(DECODE_MODES)}")
        self.coco = coco
        self.meta: DatasetMeta = coco.meta
        self.instances = instances
        self.cfg = _Config(input_size=(int(input_size[0]), int(input_size[1])), padding=float(padding),
                           train=bool(train), seed=int(seed), decode=decode)
        self.codec = codec or HeatmapCodec.for_input(self.cfg.input_size, udp=use_udp)
        if self.codec.input_size != (self.cfg.input_size[1], self.cfg.input_size[0]):
            raise ValueError(
                f"codec.input_size {self.codec.input_size} (W, H) does not match input_size "
                f"{self.cfg.input_size} (H, W)"
            )
        self.use_udp = bool(use_udp or self.codec.udp)
        self.augment = augment or AugmentConfig()
        self.epoch = 0
        h, w = self.cfg.input_size
        self.aspect_ratio = w / h
        boxes = np.stack([inst.bbox for inst in instances]) if instances else np.zeros((0, 4))
        # (N, 2) each: the un-augmented crops; used for evaluation and for `area`.
        self.centers, self.scales = bbox_xywh_to_cs(boxes, self.aspect_ratio, self.cfg.padding)
        # (N, 2) unpadded box sizes: training starts from the padded box before its aspect-ratio fix
        # (mmpose 1.x shifts relative to it; the fix follows the random scale, as in TopdownAffine).
        self.box_wh = boxes[:, 2:].astype(np.float64)

    # ------------------------------------------------------------------ API
    def __len__(self) -> int:
        return len(self.instances)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before iterating each epoch)."""
        self.epoch = int(epoch)

    @property
    def num_keypoints(self) -> int:
        return self.meta.num_keypoints

    @property
    def ann_file(self) -> Path:
        return self.coco.ann_file

    @property
    def input_size(self) -> tuple[int, int]:
        return self.cfg.input_size

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.epoch, int(index)])

    def crop_params(self, index: int) -> dict[str, Any]:
        """The geometry of item ``index`` without decoding the image: centre, scale, rotation,
        flip, the (2, 3) image->input matrix and the (flipped) keypoints/visibility."""
        inst = self.instances[index]
        center, scale = self.centers[index].copy(), self.scales[index].copy()
        kps, vis = inst.keypoints.astype(np.float64), inst.visible
        rot, flipped = 0.0, False
        if self.cfg.train:
            # mmpose 0.x's box shift is fixed per instance (drawn from (seed, index) only); the rest is
            # drawn from (seed, epoch, index).
            center = center + instance_shifts_0x(self.cfg.seed, self.box_wh[index:index + 1], self.augment,
                                                 indices=[index])[0]
            scale = self.box_wh[index] * self.cfg.padding
            center, scale, rot, flipped, kps, vis = sample_augmentation(
                self.rng(index), self.augment, kps, vis, center, scale, inst.width,
                self.meta.flip_indices, self.meta.upper_body_ids, self.meta.lower_body_ids,
                self.aspect_ratio,
            )
        h, w = self.cfg.input_size
        make = get_udp_affine_matrix if self.use_udp else get_affine_matrix
        to_input = make(center, scale, rot, (w, h))  # flipped-image frame -> input
        img_matrix = compose_affine(to_input, flip_matrix(inst.width)) if flipped else to_input
        return dict(center=center, scale=scale, rot=rot, flipped=flipped, matrix=to_input,
                    img_matrix=img_matrix, keypoints=kps, visible=vis)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.instances):
            raise IndexError(f"index {index} out of range for {len(self.instances)} instances")
        inst = self.instances[index]
        p = self.crop_params(index)
        h, w = self.cfg.input_size
        if self.cfg.decode != "full":
            img, matrix, _ = load_image_for_crop(inst.file, p["img_matrix"], (w, h), (inst.height, inst.width),
                                                 max_factor=8 if self.cfg.decode == "scaled" else 1)
        else:
            img, matrix = load_image(inst.file, expect_hw=(inst.height, inst.width)), p["img_matrix"]
        crop = warp_image(img, matrix, (w, h))
        out: dict[str, Any] = {
            "img": torch.from_numpy(normalize(crop)),
            "center": torch.from_numpy(p["center"].astype(np.float32)),
            "scale": torch.from_numpy(p["scale"].astype(np.float32)),
            "rotation": float(p["rot"]),
            "flipped": bool(p["flipped"]),
            "bbox_score": float(inst.bbox_score),
            "area": float(np.prod(self.scales[index])),
            "image_id": int(inst.image_id),
            "index": int(index),
        }
        if self.cfg.train:
            kp_in = apply_affine(p["keypoints"], p["matrix"])
            heatmaps, weights = self.codec.encode(kp_in[None], p["visible"][None])
            out["heatmaps"] = torch.from_numpy(heatmaps)
            out["target_weight"] = torch.from_numpy(weights[0].astype(np.float32))
        else:
            out["target_weight"] = torch.from_numpy(np.asarray(inst.visible, dtype=np.float32).copy())
        return out


# (3, 256) float32 lookup table: RGB channel c of value v -> (v - mean[c]) / std[c]. A table
# lookup per pixel is ~4x faster than float conversion + broadcasting on (H, W, 3).
_NORM_LUT = ((np.arange(256, dtype=np.float32)[None, :] - IMAGENET_MEAN[:, None])
             / IMAGENET_STD[:, None]).astype(np.float32)


def normalize(crop_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB, ImageNet mean/std."""
    out = np.empty((3,) + crop_bgr.shape[:2], np.float32)
    for c in range(3):
        np.take(_NORM_LUT[c], crop_bgr[..., 2 - c], out=out[c])
    return out
