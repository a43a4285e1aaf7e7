"""Datasets, transforms and heatmap codecs for the top-down pipeline.

Entry point: :func:`build_dataset`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from harness.data.codecs import HeatmapCodec
from harness.data.coco import AnnotationError, CocoKeypoints, ImageError, Instance, load_image
from harness.data.dataset import TopDownDataset
from harness.data.layout import CheckReport, Layout, check_layout, resolve_layout
from harness.data.metainfo import (
    COCO_META,
    CROWDPOSE_META,
    OCHUMAN_META,
    DatasetMeta,
    get_meta,
    meta_from_coco_categories,
    meta_from_dict,
)
from harness.data.transforms import AugmentConfig
from harness.errors import DataError, MissingFileError

log = logging.getLogger(__name__)

__all__ = [
    "build_dataset", "resolve_meta", "TopDownDataset", "CocoKeypoints", "Instance", "DatasetMeta",
    "HeatmapCodec", "AugmentConfig", "AnnotationError", "ImageError", "load_image", "check_layout",
    "CheckReport", "Layout", "resolve_layout", "get_meta", "meta_from_dict", "COCO_META",
    "OCHUMAN_META", "CROWDPOSE_META",
]


def resolve_meta(name: str, meta: DatasetMeta | dict | str | Path | None = None,
                 ann_file: str | Path | None = None) -> DatasetMeta:
    """Metadata for ``name``: explicit ``meta`` (object, dict or JSON file) wins; built-in names
    use their metadata; otherwise it is read from the annotation file's categories (works for
    COCO's 17 keypoints, e.g. the synthetic dataset)."""
    if isinstance(meta, DatasetMeta):
        return meta
    if meta is not None:
        return meta_from_dict(meta)
    try:
        return get_meta(name)
    except ValueError:
        if ann_file is None:
            raise
    from harness.data.coco import load_json

    data = load_json(ann_file, "annotation file")
    cats = data.get("categories") if isinstance(data, dict) else None
    if not cats:
        raise AnnotationError(f"annotation file {ann_file}: no 'categories' to read keypoint names from")
    return meta_from_coco_categories(cats, name)


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    *,
    input_size: tuple[int, int] = (256, 192),
    train: bool,
    det_file: str | Path | None = None,
    det_score_thr: float = 0.0,
    ann_file: str | Path | None = None,
    img_dir: str | Path | None = None,
    seed: int = 0,
    meta: DatasetMeta | dict | str | Path | None = None,
    codec: HeatmapCodec | None = None,
    augment: AugmentConfig | None = None,
    use_udp: bool = False,
    padding: float = 1.25,
    decode: str = "full",
) -> TopDownDataset:
    """Build a :class:`TopDownDataset`.

    Args:
        name: ``coco``, ``ochuman``, ``crowdpose`` or any name for a COCO-format folder
            (``root/annotations/person_keypoints_<split>.json`` + ``root/<split>/``).
        root: dataset folder (see ``harness.data.layout`` for the expected layouts).
        split: ``train``/``val`` (COCO, ``2017`` optional), ``val``/``test`` (OCHuman),
            ``trainval``/``test`` (CrowdPose), any ``<split>`` for a generic folder.
        input_size: (H, W), (256, 192) or (384, 288).
        train: random augmentation + heatmap targets (uses GT boxes; ``det_file`` not allowed).
        det_file: person detections (COCO results format) for evaluation; ``"auto"`` picks the
            layout's standard file; ``None`` evaluates on GT boxes.
        det_score_thr: drop detections scoring below this.
        ann_file / img_dir: override the layout.
        seed: augmentation seed (see ``TopDownDataset.set_epoch``).
        meta: dataset metadata for non-built-in datasets.
        decode: "full", "roi" or "scaled" JPEG decoding (``harness.data.decode``).
    """
    layout = resolve_layout(name, root, split, ann_file=ann_file, img_dir=img_dir, det_file=det_file)
    if not layout.ann_file.is_file():
        from harness.data.layout import WHERE_TO_GET

        raise MissingFileError(
            f"dataset {name!r} split {split!r}: annotation file {layout.ann_file} not found "
            f"(run `python -m harness data check {name} --root {root}`; "
            f"{WHERE_TO_GET.get(name, WHERE_TO_GET['coco-format'])})"
        )
    if not layout.img_dir.is_dir():
        raise MissingFileError(f"dataset {name!r} split {split!r}: image directory {layout.img_dir} not found")
    if train and layout.det_file is not None:
        raise DataError("build_dataset: det_file is for evaluation; training uses GT boxes (train=True)")
    dmeta = resolve_meta(name, meta, layout.ann_file)
    coco = CocoKeypoints(layout.ann_file, layout.img_dir, dmeta)
    if layout.det_file is not None:
        instances = coco.det_instances(layout.det_file, det_score_thr)
        source = f"detections {layout.det_file.name} (score >= {det_score_thr})"
    else:
        instances = coco.gt_instances()
        source = "GT boxes"
    if not instances:
        raise DataError(f"dataset {name!r} split {split!r}: no usable instances in {layout.ann_file} ({source})")
    log.info("%s/%s: %d instances over %d images from %s", name, split, len(instances),
             len({i.image_id for i in instances}), source)
    return TopDownDataset(coco, instances, input_size=input_size, train=train, codec=codec,
                          augment=augment, padding=padding, seed=seed, use_udp=use_udp,
                          decode=decode)
