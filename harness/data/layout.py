"""Where each dataset's files live, where users get them, and ``check_layout``.

Layouts (the ones mmpose's dataset docs use, so existing data folders work unchanged)::

    coco/       annotations/person_keypoints_{train,val}2017.json
                {train,val}2017/*.jpg
                person_detection_results/COCO_val2017_detections_AP_H_56_person.json
    ochuman/    annotations/ochuman_coco_format_{val,test}_range_0.00_1.00.json
                images/*.jpg
    crowdpose/  annotations/mmpose_crowdpose_{train,val,trainval,test}.json
                annotations/det_for_crowd_test_0.1_0.5.json (optional detections)
                images/*.jpg
    any COCO-format set (also the synthetic dataset):
                annotations/person_keypoints_<split>.json
                <split>/*.jpg
                detections/<split>_person_dets.json (optional)

If a named dataset's standard file is absent but the generic layout is present, the generic
layout is used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.coco import AnnotationError, CocoKeypoints, ImageError, load_image
from harness.data.metainfo import DatasetMeta
from harness.errors import MissingFileError

log = logging.getLogger(__name__)

__all__ = ["Layout", "resolve_layout", "check_layout", "CheckReport", "WHERE_TO_GET"]

WHERE_TO_GET = {
    "coco": (
        "COCO 2017 keypoints: images and annotations from https://cocodataset.org/#download "
        "('2017 Train images', '2017 Val images', '2017 Train/Val annotations'); the person "
        "detections COCO_val2017_detections_AP_H_56_person.json are the ones released with HRNet "
        "(Sun et al. 2019; linked from the deep-high-resolution-net.pytorch README and mmpose's "
        "COCO dataset docs)."
    ),
    "ochuman": (
        "OCHuman: images and COCO-format annotations (ochuman_coco_format_{val,test}_range_0.00_1.00.json) "
        "from https://github.com/liruilong940607/OCHumanApi."
    ),
    "crowdpose": (
        "CrowdPose: images and annotations from https://github.com/Jeff-sjtu/CrowdPose; the "
        "COCO-style files mmpose_crowdpose_*.json and det_for_crowd_test_0.1_0.5.json are linked "
        "from mmpose's CrowdPose dataset docs."
    ),
    "coco-format": (
        "a COCO-format keypoint dataset: annotations/person_keypoints_<split>.json and the images "
        "in <split>/ (e.g. `python -m harness` synthetic data, or your own export)."
    ),
}


@dataclass(frozen=True)
class Layout:
    """Resolved paths of one split."""

    name: str
    split: str
    ann_file: Path
    img_dir: Path
    det_file: Path | None


def _standard(name: str, root: Path, split: str) -> tuple[Path, Path, Path | None]:
    s = split
    if name == "coco":
        s = split if split.endswith("2017") else f"{split}2017"
        det = root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
        return (root / "annotations" / f"person_keypoints_{s}.json", root / s,
                det if s == "val2017" else None)
    if name == "ochuman":
        return (root / "annotations" / f"ochuman_coco_format_{s}_range_0.00_1.00.json",
                root / "images", None)
    if name == "crowdpose":
        det = root / "annotations" / "det_for_crowd_test_0.1_0.5.json"
        return (root / "annotations" / f"mmpose_crowdpose_{s}.json", root / "images",
                det if s == "test" else None)
    return _generic(root, s)


def _generic(root: Path, split: str) -> tuple[Path, Path, Path | None]:
    return (root / "annotations" / f"person_keypoints_{split}.json", root / split,
            root / "detections" / f"{split}_person_dets.json")


def resolve_layout(name: str, root: str | Path, split: str, *, ann_file: str | Path | None = None,
                   img_dir: str | Path | None = None, det_file: str | Path | None = None) -> Layout:
    """Paths for ``name``/``split`` under ``root``; explicit ``ann_file``/``img_dir`` win.

    ``det_file="auto"`` selects the layout's standard detection file (COCO val, CrowdPose test,
    ``detections/<split>_person_dets.json``); it must then exist.
    """
    root = Path(root)
    ann, img, det = _standard(name, root, split)
    if name in ("coco", "ochuman", "crowdpose") and not ann.exists():
        g_ann, g_img, g_det = _generic(root, split)
        if g_ann.exists():
            ann, img, det = g_ann, g_img, g_det
    if ann_file is not None:
        ann = Path(ann_file)
        if img_dir is None:
            img = ann.parent if not img.is_dir() else img
    if img_dir is not None:
        img = Path(img_dir)
    if det_file == "auto":
        if det is None or not det.exists():
            raise MissingFileError(
                f"det_file='auto': no standard detection file for {name!r} split {split!r} "
                f"(looked for {det})" + (f"; {WHERE_TO_GET.get(name, '')}" if name in WHERE_TO_GET else "")
            )
        chosen = det
    else:
        chosen = Path(det_file) if det_file is not None else None
    return Layout(name=name, split=split, ann_file=ann, img_dir=img, det_file=chosen)


@dataclass
class CheckReport:
    """What ``check_layout`` found; ``ok`` is True when nothing is missing or broken."""

    layout: Layout
    problems: list[str] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0
    num_instances: int = 0
    num_detections: int | None = None
    missing_images: list[str] = field(default_factory=list)
    corrupt_images: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    where_to_get: str | None = None  # set when something is missing

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "dataset": self.layout.name, "split": self.layout.split,
            "ann_file": str(self.layout.ann_file), "img_dir": str(self.layout.img_dir),
            "det_file": str(self.layout.det_file) if self.layout.det_file else None,
            "ok": self.ok, "problems": self.problems, "num_images": self.num_images,
            "num_annotations": self.num_annotations, "num_instances": self.num_instances,
            "num_detections": self.num_detections, "missing_images": self.missing_images,
            "corrupt_images": self.corrupt_images, "skipped": self.skipped,
            "where_to_get": self.where_to_get,
        }


def _quick_image_check(path: Path) -> str | None:
    """Cheap check without decoding: exists, non-empty, JPEG start and end markers."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if path.is_dir():
        return "is a directory, not an image file"
    if size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(2)
        if head != b"\xff\xd8":
            return None  # not a JPEG: leave it to the decoder (--decode)
        f.seek(max(0, size - 16))
        tail = f.read()
    if b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    return None


def check_layout(name: str, root: str | Path, split: str, meta: DatasetMeta, *,
                 ann_file: str | Path | None = None, img_dir: str | Path | None = None,
                 det_file: str | Path | None = None, decode: bool = False,
                 progress: bool = False) -> CheckReport:
    """Validate one split: files present, annotation file well-formed, every image present and
    (with ``decode``) decodable at the annotated size. Problems name the file and what to do."""
    try:
        layout = resolve_layout(name, root, split, ann_file=ann_file, img_dir=img_dir, det_file=det_file)
    except FileNotFoundError as e:
        ann, img, _ = _standard(name, Path(root), split)
        rep = CheckReport(Layout(name, split, ann, img, None))
        rep.problems.append(str(e).split("; ")[0])
        rep.where_to_get = WHERE_TO_GET.get(name, WHERE_TO_GET["coco-format"])
        return rep
    if det_file is None:
        # the layout's standard detection file is optional; validate it when it is there
        std_det = _standard(name, Path(root), split)[2]
        if std_det is not None and std_det.is_file():
            layout = Layout(layout.name, layout.split, layout.ann_file, layout.img_dir, std_det)
    rep = CheckReport(layout)
    get = WHERE_TO_GET.get(name, WHERE_TO_GET["coco-format"])
    if not layout.ann_file.is_file():
        rep.problems.append(f"missing annotation file {layout.ann_file}")
    if not layout.img_dir.is_dir():
        rep.problems.append(f"missing image directory {layout.img_dir}")
    if layout.det_file is not None and not layout.det_file.is_file():
        rep.problems.append(f"missing detection file {layout.det_file}")
    if rep.problems:
        rep.where_to_get = get
    if not layout.ann_file.is_file():
        return rep
    try:
        coco = CocoKeypoints(layout.ann_file, layout.img_dir, meta)
    except (AnnotationError, FileNotFoundError) as e:
        rep.problems.append(str(e))
        return rep
    rep.num_images = len(coco.images)
    rep.num_annotations = len(coco.annotations)
    rep.num_instances = len(coco.gt_instances())
    if rep.num_instances == 0:
        why = ", ".join(f"{n} {r}" for r, n in sorted(coco.skipped.items())) or "no annotations"
        rep.problems.append(f"{layout.ann_file}: no usable person instance ({why}); nothing to train or "
                            f"evaluate on")
    if layout.det_file is not None and layout.det_file.is_file():
        try:
            rep.num_detections = len(coco.det_instances(layout.det_file))
        except (AnnotationError, ValueError) as e:
            rep.problems.append(str(e))
    rep.skipped = dict(coco.skipped)
    if layout.img_dir.is_dir():
        items = list(coco.images.items())
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc=f"check {name}/{split} images", unit="img")
        for iid, img in items:
            path = layout.img_dir / img["file_name"]
            why = _quick_image_check(path)
            if why == "missing":
                rep.missing_images.append(str(path))
                continue
            if why is None and decode:
                try:
                    load_image(path, expect_hw=(int(img["height"]), int(img["width"])))
                except ImageError as e:
                    why = str(e).split(": ", 1)[-1]
            if why is not None:
                rep.corrupt_images.append(f"{path}: {why}")
        if rep.missing_images:
            rep.where_to_get = get
            shown = ", ".join(Path(p).name for p in rep.missing_images[:5])
            more = f" (+{len(rep.missing_images) - 5} more)" if len(rep.missing_images) > 5 else ""
            rep.problems.append(
                f"{len(rep.missing_images)} of {rep.num_images} images missing from {layout.img_dir}: "
                f"{shown}{more}"
            )
        if rep.corrupt_images:
            shown = "; ".join(rep.corrupt_images[:5])
            more = f" (+{len(rep.corrupt_images) - 5} more)" if len(rep.corrupt_images) > 5 else ""
            rep.problems.append(f"{len(rep.corrupt_images)} unreadable images: {shown}{more}")
    return rep

