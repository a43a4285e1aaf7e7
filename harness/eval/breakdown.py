"""AP and AR by occlusion level: per-person (or per-image) attributes, bins, and COCOeval with out-of-bin
people ignored.

A bin's AP is COCOeval's AP with every person outside the bin marked *ignored*, exactly as COCOeval
treats people outside an area range for AP (M)/(L): a detection matched to an ignored person is neither a
true nor a false positive, and a detection that matches nobody stays a false positive.  *Dropping* the
out-of-bin people instead would turn every correct detection of them into a false positive and
understate the bin's AP; ``tests/eval/test_eval_breakdown.py`` shows the difference on a constructed case.
For an image-level attribute (CrowdPose's crowd index) the unmatched detections of out-of-bin images are
ignored too, which is the same as evaluating the bin's images only -- what the CrowdPose evaluator does
for AP(E)/AP(M)/AP(H) (xtcocotools ``COCOeval.get_type_result``).  A bin holding every person reproduces
COCOeval's AP exactly.

The attributes (``ATTRIBUTES``):

* ``max_iou`` (OCHuman): a person's highest IoU with another person of the image, the OCHuman paper's
  MaxIoU, from the ground-truth *boxes*: OCHuman defines and publishes it (``max_iou`` in its own
  annotation file) over all 13,360 box-annotated people, of whom only 8,110 have masks; the COCO-format
  files keep the boxes (and masks) of the keypoint+mask subset only, so the MaxIoU computed from them can
  be lower than OCHuman's own value when the other person of a pair has no keypoints.  An annotation
  carrying ``max_iou`` uses that value.  Bins: the paper's moderate [0.5, 0.75) and hard [0.75, 1], plus
  low [0, 0.5) so that the bins cover everyone.
* ``crowd_index`` (CrowdPose, per image): easy [0, 0.2), medium [0.2, 0.8), hard >= 0.8, the thresholds
  the CrowdPose evaluator uses.
* ``overlaps`` (COCO): the number of other annotations of the image whose box IoU with the person's box
  exceeds 0.1: 0, 1-2, 3+; ``num_keypoints`` (COCO): labelled keypoints 1-5, 6-10, 11-15, 16-17.  Both
  as coco-analyze (matteorr/coco-analyze, ``analysisAPI/occlusionAndCrowdingSensitivity.py``) groups
  them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from harness.eval.bootstrap import MatchTable

__all__ = ["Bin", "Attribute", "ATTRIBUTES", "BREAKDOWNS", "attributes_for", "box_iou", "bin_tables",
           "breakdown_from_cocoeval", "assign_bins", "evaluated_people"]


@dataclass(frozen=True)
class Bin:
    """Values ``lo <= v < hi`` (``hi`` included when ``closed``)."""

    name: str
    lo: float
    hi: float
    closed: bool = False

    def contains(self, v: float) -> bool:
        return self.lo <= v < self.hi or (self.closed and v == self.hi)

    @property
    def range(self) -> str:
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:g}"
        return f"[{self.lo:g}, {hi}{']' if self.closed else ')'}"


@dataclass(frozen=True)
class Attribute:
    name: str
    title: str
    level: str  # "person": values keyed by annotation id; "image": by image id
    bins: tuple[Bin, ...]
    values: Callable[[object], dict[int, float]]  # xtcocotools COCO -> {id: value}


def box_iou(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of COCO boxes [x, y, w, h] (N, 4) -> (N, N); 0 where both boxes are empty."""
    b = np.asarray(boxes, float).reshape(-1, 4)
    x1, y1 = b[:, 0], b[:, 1]
    x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
    iw = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = iw * ih
    area = b[:, 2] * b[:, 3]
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _per_image(gt) -> Iterable[list[dict]]:
    for img in gt.getImgIds():
        yield gt.imgToAnns.get(img, [])


def _max_iou(gt) -> dict[int, float]:
    out = {}
    for anns in _per_image(gt):
        people = [a for a in anns if not a.get("iscrowd", 0)]
        iou = box_iou([a["bbox"] for a in people]) if people else np.zeros((0, 0))
        np.fill_diagonal(iou, 0.0)
        for i, a in enumerate(people):
            out[a["id"]] = float(a["max_iou"]) if "max_iou" in a else float(iou[i].max(initial=0.0))
    return out


def _overlaps(gt) -> dict[int, float]:
    out = {}
    for anns in _per_image(gt):
        iou = box_iou([a["bbox"] for a in anns]) if anns else np.zeros((0, 0))
        np.fill_diagonal(iou, 0.0)
        for i, a in enumerate(anns):
            out[a["id"]] = float(np.count_nonzero(iou[i] > 0.1))
    return out


def _num_keypoints(gt) -> dict[int, float]:
    # Labelled keypoints (v > 0): what COCO's num_keypoints counts and what COCOeval tests for "no keypoints".
    return {a["id"]: float(np.count_nonzero(np.asarray(a["keypoints"])[2::3] > 0)) for a in gt.anns.values()}


def _crowd_index(gt) -> dict[int, float]:
    missing = [i for i, im in gt.imgs.items() if "crowdIndex" not in im]
    if missing:
        raise ValueError(f"crowd_index breakdown: image {missing[0]} has no 'crowdIndex' ({len(missing)} images)")
    return {i: float(im["crowdIndex"]) for i, im in gt.imgs.items()}


_INF = math.inf
ATTRIBUTES: dict[str, Attribute] = {
    "max_iou": Attribute("max_iou", "MaxIoU with another person (boxes)", "person",
                         (Bin("low", 0.0, 0.5), Bin("moderate", 0.5, 0.75), Bin("hard", 0.75, 1.0, closed=True)),
                         _max_iou),
    "crowd_index": Attribute("crowd_index", "crowd index of the image", "image",
                             (Bin("easy", 0.0, 0.2), Bin("medium", 0.2, 0.8), Bin("hard", 0.8, _INF)),
                             _crowd_index),
    "overlaps": Attribute("overlaps", "other people overlapping (box IoU > 0.1)", "person",
                          (Bin("0", 0, 1), Bin("1-2", 1, 3), Bin("3+", 3, _INF)), _overlaps),
    "num_keypoints": Attribute("num_keypoints", "labelled keypoints", "person",
                               (Bin("1-5", 1, 6), Bin("6-10", 6, 11), Bin("11-15", 11, 16), Bin("16-17", 16, _INF)),
                               _num_keypoints),
}

#: breakdown kind -> dataset name -> attributes; "*" for any other dataset (e.g. the synthetic crowds).
BREAKDOWNS: dict[str, dict[str, tuple[str, ...]]] = {
    "occlusion": {"ochuman": ("max_iou",), "crowdpose": ("crowd_index",), "coco": ("overlaps", "num_keypoints"),
                  "*": ("max_iou", "overlaps", "num_keypoints")},
}


def attributes_for(kind: str, dataset: str) -> tuple[Attribute, ...]:
    if kind not in BREAKDOWNS:
        raise ValueError(f"breakdown: unknown kind {kind!r}; known: {sorted(BREAKDOWNS)}")
    table = BREAKDOWNS[kind]
    return tuple(ATTRIBUTES[a] for a in table.get(dataset, table["*"]))


def evaluated_people(ev) -> dict[int, int]:
    """Annotation id -> image id of every person COCOeval scores (not crowd, has keypoints)."""
    return {g["id"]: g["image_id"] for gts in ev._gts.values() for g in gts if not g["ignore"]}


def assign_bins(attr: Attribute, gt, people: Mapping[int, int]) -> dict[str, set[int]]:
    """Bin name -> the annotation ids of ``people`` (id -> image id) in it; raises if one fits no bin."""
    values = attr.values(gt)
    out: dict[str, set[int]] = {b.name: set() for b in attr.bins}
    for ann, img in people.items():
        v = values[img if attr.level == "image" else ann]
        hit = [b for b in attr.bins if b.contains(v)]
        if len(hit) != 1:
            raise ValueError(f"breakdown {attr.name}: annotation {ann} has value {v!r}, in {len(hit)} bins")
        out[hit[0].name].add(ann)
    return out


def _table(ev, keep: set[int], people: Mapping[int, int], image_level: bool) -> MatchTable:
    """Re-run COCOeval's per-image matching (its OKS values reused) with people outside ``keep`` ignored."""
    p = ev._paramsEval
    gts = [g for v in ev._gts.values() for g in v]
    base = [g["ignore"] for g in gts]
    drop_images = set()
    if image_level:
        kept_images = {people[a] for a in keep}
        drop_images = set(p.imgIds) - kept_images
    cat = p.catIds[0] if p.useCats else -1
    try:
        for g, b in zip(gts, base):
            g["ignore"] = b or (g["id"] not in keep) or (g["image_id"] in drop_images)
        evals = []
        for img in p.imgIds:
            e = ev.evaluateImg(img, cat, p.areaRng[0], p.maxDets[-1])
            if e is not None and img in drop_images:
                e["dtIgnore"] = np.logical_or(e["dtIgnore"], e["dtMatches"] < 0)
            evals.append(e)
    finally:
        for g, b in zip(gts, base):
            g["ignore"] = b
    return MatchTable.from_eval_imgs(evals, p.imgIds, p.recThrs, p.iouThrs, p.maxDets[-1])


def bin_tables(ev, attr: Attribute) -> list[tuple[Bin, int, MatchTable]]:
    """(bin, number of people, match table with everyone else ignored) for each bin of ``attr``."""
    people = evaluated_people(ev)
    members = assign_bins(attr, ev.cocoGt, people)
    return [(b, len(members[b.name]), _table(ev, members[b.name], people, attr.level == "image"))
            for b in attr.bins]


def _num(v: float) -> float | None:
    return None if v == -1 else float(v)


def breakdown_from_cocoeval(ev, kind: str, dataset: str) -> dict:
    """The ``breakdown`` of a result record: per attribute, per bin: people, AP, AP .5, AP .75, AR
    (None where the bin holds nobody)."""
    ones = None
    attrs = []
    for attr in attributes_for(kind, dataset):
        bins = []
        for b, n, table in bin_tables(ev, attr):
            if ones is None:
                ones = np.ones((1, table.num_images), np.int64)
            m = table.metrics(ones)
            bins.append({"bin": b.name, "range": b.range, "people": n,
                         **{k: _num(v[0]) for k, v in m.items()}})
        attrs.append({"attribute": attr.name, "title": attr.title, "level": attr.level, "bins": bins})
    return {"kind": kind, "attributes": attrs}
