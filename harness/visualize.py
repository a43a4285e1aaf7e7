"""Qualitative comparison figure: each model's predicted skeletons over the same crowded images.

One column per model, one row per image. Keypoints are coloured by the model's confidence (a
colormap, legend at the bottom), limbs by body side (left / right / centre, from the dataset's
skeleton and keypoint names), so a left-right swap or a limb jumping to the person in front shows at
a glance. Predictions come from saved RAW.json files (the format of ``evaluate-predictions``) or
from checkpoints run through :func:`harness.eval.predict` on the images' ground-truth boxes.

The figure is composed with OpenCV on a pixel grid, so its size is exact and predictable::

    width  = columns * cell_w
    height = HEADER_H + rows * cell_h + LEGEND_H

where every image is scaled (aspect kept, letterboxed) into a ``cell_h x cell_w`` cell.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from harness.errors import UsageError
from harness.io import atomic_write_png
from harness.report.poses import SIDE_COLORS, default_radius, draw_skeletons

log = logging.getLogger(__name__)

__all__ = ["VisualizeError", "ComparisonInfo", "draw_poses", "make_comparison", "load_raw_predictions",
           "select_images", "predict_images", "SIDE_COLORS", "HEADER_H", "LEGEND_H"]

HEADER_H = 34  # px: model names above the columns
LEGEND_H = 40  # px: confidence colour bar, then limb-side swatches
# Limb colours: harness.report.poses.SIDE_COLORS; the confidence colormap (plasma) is kept clear of them
# in hue where it matters (the high end).
CMAP = "plasma"


class VisualizeError(UsageError):
    """Bad input for the qualitative figure; the message names the file, model or field."""


@dataclass
class ComparisonInfo:
    """What :func:`make_comparison` drew."""

    path: Path
    models: list[str]
    image_ids: list[int]
    cell_hw: tuple[int, int]
    size_hw: tuple[int, int]  # (height, width) of the PNG
    drawn: dict[str, int] = field(default_factory=dict)  # model -> people with >= 1 keypoint drawn


# --------------------------------------------------------------------------------------------- drawing


def _lut(name: str = CMAP) -> np.ndarray:
    """(256, 3) uint8 BGR lookup table of a matplotlib colormap."""
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.ascontiguousarray((rgba[:, 2::-1] * 255).round().astype(np.uint8))


def _as_arrays(preds: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """RAW dicts / ``{"keypoints", "keypoint_scores"}`` / arrays -> keypoints (N, K, 2), scores (N, K)."""
    if isinstance(preds, Mapping):
        kps, scs = preds.get("keypoints"), preds.get("keypoint_scores")
    elif isinstance(preds, (list, tuple)):
        if not preds:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        kps = [p["keypoints"] for p in preds]
        scs = [p.get("keypoint_scores", [1.0] * k) for p in preds]
    else:
        raise VisualizeError(f"preds: expected a list of predictions or a mapping, got {type(preds).__name__}")
    kps = np.asarray(kps, np.float32)
    scs = np.asarray(scs, np.float32)
    if kps.ndim == 2:  # a single person
        kps, scs = kps[None], scs[None]
    if kps.ndim != 3 or kps.shape[1:] != (k, 2) or scs.shape != kps.shape[:2]:
        raise VisualizeError(f"preds: keypoints must be (N, {k}, 2) with scores (N, {k}); got "
                             f"{kps.shape} and {scs.shape}")
    return kps, scs


def draw_poses(image: np.ndarray, preds: Any, meta, *, kpt_thr: float = 0.3, radius: int | None = None,
               thickness: int | None = None, scale: float = 1.0) -> np.ndarray:
    """Draw predicted skeletons on a copy of ``image`` (BGR uint8 (H, W, 3)) and return it.

    Args:
        preds: RAW prediction dicts (``keypoints`` [[x, y], ...], ``keypoint_scores``), or a mapping with
            ``keypoints`` (N, K, 2) and ``keypoint_scores`` (N, K), in image pixels.
        meta: :class:`harness.data.DatasetMeta` (skeleton links and keypoint names -> body sides).
        kpt_thr: keypoints scoring below this are not drawn, nor the links touching them.
        scale: multiply coordinates by this first (the image was resized by it).
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise VisualizeError(f"image: expected a BGR uint8 array (H, W, 3), got "
                             f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}")
    k = meta.num_keypoints
    kps, scs = _as_arrays(preds, k)
    out = image.copy()
    h, w = out.shape[:2]
    r0, t0 = default_radius(h, w)
    lut = _lut()
    pts = kps * float(scale)
    ok = (scs >= kpt_thr) & np.isfinite(pts).all(-1)  # (N, K)
    colors = lut[np.clip((scs * 255).round(), 0, 255).astype(np.int64)]  # (N, K, 3) colormap rows
    # Draw people with the lowest mean confidence first so confident skeletons end up on top.
    order = np.argsort(np.where(ok, scs, 0).mean(1) if len(scs) else np.zeros(0))
    return draw_skeletons(out, pts, ok, meta, joint_colors=colors, order=order, radius=radius or r0,
                          thickness=thickness or t0)


def _letterbox(image: np.ndarray, cell_hw: tuple[int, int], dim: float = 0.0) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Scale ``image`` to fit the cell (aspect kept) on a dark background, darkened by ``dim``; return it,
    the scale and the offset of the image inside the cell."""
    ch, cw = cell_hw
    h, w = image.shape[:2]
    s = min(ch / h, cw / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    if dim:
        resized = cv2.convertScaleAbs(resized, alpha=1.0 - float(dim))
    cell = np.full((ch, cw, 3), 24, np.uint8)
    y0, x0 = (ch - nh) // 2, (cw - nw) // 2
    cell[y0:y0 + nh, x0:x0 + nw] = resized
    return cell, s, (x0, y0)


def _text(img: np.ndarray, text: str, centre_x: int, base_y: int, scale: float = 0.55,
          color=(235, 235, 235)) -> None:
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(img, text, (int(centre_x - tw / 2), base_y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _legend(width: int, kpt_thr: float) -> np.ndarray:
    """Two rows: the confidence colour bar, then the limb-side swatches (fits a single 256-px column)."""
    band = np.full((LEGEND_H, width, 3), 255, np.uint8)
    font, fs, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40)
    x0, bw, y0, bh = 8, min(120, max(50, width // 5)), 5, 10
    band[y0:y0 + bh, x0:x0 + bw] = _lut()[np.linspace(0, 255, bw).round().astype(int)][None]
    cv2.putText(band, f"0 .. 1  keypoint confidence (>= {kpt_thr:g})", (x0 + bw + 6, y0 + 9), font, fs, ink, 1,
                cv2.LINE_AA)
    x, y = x0, y0 + bh + 17
    for side in ("left", "right", "center"):
        colour = SIDE_COLORS[side] if side != "center" else (150, 150, 150)
        cv2.line(band, (x, y - 4), (x + 18, y - 4), colour, 3, cv2.LINE_AA)
        cv2.putText(band, f"{side} limbs", (x + 22, y), font, fs, ink, 1, cv2.LINE_AA)
        x += 84
    return band


def _read_image(item: Any) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    from harness.data.coco import ImageError, load_image

    try:
        return load_image(item)
    except ImageError as e:
        raise VisualizeError(str(e)) from None


def make_comparison(images: Sequence[tuple[int, Any]], predictions: Mapping[str, Any], out_png: str | os.PathLike,
                    meta=None, *, cell_height: int = 320, kpt_thr: float = 0.3,
                    titles: Mapping[str, str] | None = None, dim: float = 0.35) -> ComparisonInfo:
    """Write the comparison grid to ``out_png`` (atomically) and return what was drawn.

    Args:
        images: ``[(image_id, path or BGR array), ...]``, one row each.
        predictions: ``{model_name: preds}`` in column order; ``preds`` is a list of RAW dicts (each with
            ``image_id``) or a mapping ``image_id -> RAW dicts of that image``.
        meta: dataset metadata (default COCO's 17 keypoints).
        cell_height: height of one cell in pixels; its width follows the widest image's aspect ratio.
        titles: column titles (default: the model names).
        dim: darken the photos by this fraction so the skeletons stand out (0 = as they are).
    """
    from harness.data.metainfo import COCO_META

    meta = meta or COCO_META
    if not images:
        raise VisualizeError("images: no images to draw")
    if not predictions:
        raise VisualizeError("predictions: no models to compare")
    if not isinstance(cell_height, int) or cell_height < 32:
        raise VisualizeError(f"cell_height: must be an integer >= 32, got {cell_height!r}")
    if not 0.0 <= float(dim) < 1.0:
        raise VisualizeError(f"dim: must be in [0, 1), got {dim!r}")
    decoded = [(int(i), _read_image(src)) for i, src in images]
    aspect = max(im.shape[1] / im.shape[0] for _, im in decoded)
    cell_hw = (cell_height, int(round(cell_height * aspect)))
    by_model: dict[str, dict[int, list]] = {}
    for name, preds in predictions.items():
        if isinstance(preds, Mapping):
            by_model[name] = {int(k): list(v) for k, v in preds.items()}
        else:
            grouped: dict[int, list] = {}
            for i, p in enumerate(preds):
                if not isinstance(p, Mapping) or "image_id" not in p:
                    raise VisualizeError(f"predictions[{name!r}][{i}]: must be an object with an 'image_id'")
                grouped.setdefault(int(p["image_id"]), []).append(p)
            by_model[name] = grouped
    models = list(by_model)
    rows = []
    drawn = {m: 0 for m in models}
    for image_id, im in decoded:
        cells = []
        for m in models:
            cell, s, (x0, y0) = _letterbox(im, cell_hw, dim)
            preds = by_model[m].get(image_id, [])
            if not preds:
                log.warning("%s: no predictions for image %d", m, image_id)
            else:
                kps, scs = _as_arrays(preds, meta.num_keypoints)
                kps = kps * s + np.array([x0, y0], np.float32)
                cell = draw_poses(cell, {"keypoints": kps, "keypoint_scores": scs}, meta, kpt_thr=kpt_thr)
                drawn[m] += int((scs >= kpt_thr).any(1).sum())  # people with something drawn
            cv2.rectangle(cell, (0, 0), (cell_hw[1] - 1, cell_hw[0] - 1), (255, 255, 255), 1)
            cells.append(cell)
        rows.append(np.concatenate(cells, axis=1))
    grid = np.concatenate(rows, axis=0)
    width = grid.shape[1]
    header = np.full((HEADER_H, width, 3), 255, np.uint8)
    for c, m in enumerate(models):
        _text(header, (titles or {}).get(m, m), c * cell_hw[1] + cell_hw[1] // 2, HEADER_H - 11, color=(20, 20, 20))
    canvas = np.concatenate([header, grid, _legend(width, kpt_thr)], axis=0)
    out = atomic_write_png(Path(out_png), canvas)
    return ComparisonInfo(path=out, models=models, image_ids=[i for i, _ in decoded], cell_hw=cell_hw,
                          size_hw=canvas.shape[:2], drawn=drawn)


# --------------------------------------------------------------------------------------------- sources


def load_raw_predictions(path: str | os.PathLike, num_keypoints: int = 17) -> list[dict]:
    """Read and validate a RAW.json (the ``evaluate-predictions`` input); errors name the file."""
    from harness.eval.postprocess import RawPredictions

    path = Path(path)
    if not path.is_file():
        raise VisualizeError(f"predictions file {path}: not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VisualizeError(f"predictions file {path}: not valid JSON ({e})") from None
    try:
        RawPredictions.from_list(data, num_keypoints, source=str(path))
    except ValueError as e:
        raise VisualizeError(str(e)) from None
    return data


def select_images(coco, num: int, image_ids: Sequence[int] | None = None) -> list[int]:
    """The ``num`` most crowded images of a parsed annotation file (most annotated people with
    keypoints, then lowest id), or the given ``image_ids`` (each checked to exist)."""
    if image_ids:
        missing = [i for i in image_ids if i not in coco.images]
        if missing:
            raise VisualizeError(f"--image-id: {missing} not in {coco.ann_file}")
        return [int(i) for i in image_ids]
    ids = np.array(sorted(coco.images), np.int64)
    if not len(ids):
        raise VisualizeError(f"{coco.ann_file}: no images")
    ann_img = np.array([a["image_id"] for a in coco.annotations
                        if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0], np.int64)
    counts = np.searchsorted(ids, ann_img)
    people = np.bincount(counts, minlength=len(ids))
    order = np.lexsort((ids, -people))  # most people first, ties by id
    return [int(i) for i in ids[order[:num]]]


def predict_images(model_name: str, checkpoint: str | os.PathLike | None, dataset, image_ids: Sequence[int], *,
                   device: str = "cpu", flip_test: bool = True, progress: bool = False) -> list[dict]:
    """Run ``model_name`` (weights from ``checkpoint``; None = untrained) on the GT boxes of ``image_ids``
    in ``dataset`` (a TopDownDataset built with ``train=False``) and return RAW predictions."""
    import torch

    from harness import create_pose_model, load_weights
    from harness.data.dataset import TopDownDataset
    from harness.eval import predict

    try:
        model = create_pose_model(model_name, num_keypoints=dataset.num_keypoints)
    except (KeyError, ValueError) as e:
        raise VisualizeError(f"model {model_name!r}: {e}") from None
    if checkpoint is not None:
        from harness.engine.testing import weights_from_file

        try:
            weights, _ = weights_from_file(checkpoint)
            load_weights(model, weights, strict=True)
        except FileNotFoundError as e:
            raise VisualizeError(f"checkpoint for {model_name}: {e}") from None
        except (RuntimeError, KeyError, ValueError) as e:
            raise VisualizeError(f"checkpoint {checkpoint} does not fit {model_name}: {e}") from None
    wanted = set(int(i) for i in image_ids)
    insts = [inst for inst in dataset.instances if int(inst.image_id) in wanted]
    if not insts:
        raise VisualizeError(f"no ground-truth people in images {sorted(wanted)}")
    sub = TopDownDataset(dataset.coco, insts, input_size=dataset.input_size, train=False, codec=dataset.codec)
    with torch.inference_mode():
        return predict(model.to(device).eval(), sub, batch_size=16, flip_test=flip_test, device=device,
                       progress=progress)
