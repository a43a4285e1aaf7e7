"""Paired bootstrap over images for COCO keypoint AP/AR, without re-running COCOeval per resample.

COCOeval's per-image matching (``evaluateImg``: which detection matched which person at each OKS
threshold, which detections and people are ignored) does not depend on which *other* images are in the
set, so it is computed once (:class:`MatchTable`).  Resampling images with replacement is then a vector
of per-image multiplicities ``w`` (B, I); :meth:`MatchTable.accumulate` re-does COCOeval's
``accumulate`` with every detection counted ``w[image]`` times: detections sorted by score once (the
same stable mergesort over the same concatenation COCOeval uses), weighted cumulative TP/FP per
threshold, the precision envelope and COCO's 101-point interpolated precision.  With ``w = 1`` the
arithmetic is COCOeval's, operation for operation, so the identity resample reproduces its AP exactly.

The resample is shared by all models compared (a *paired* bootstrap): the interval of a difference
reflects the validation set's noise, not two independent draws of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["MatchTable", "resample_weights", "paired_bootstrap", "BootstrapResult", "ModelInterval",
           "DiffInterval"]


@dataclass
class MatchTable:
    """One prediction set's per-image COCOeval matching (one category, area 'all', COCO's maxDets).

    ``image_ids`` (I,) in COCOeval's image order; ``det_image`` (D,) index into ``image_ids`` of each
    detection, detections in COCOeval's global score order; ``tp`` / ``fp`` (T, D) bool per OKS
    threshold (ignored detections are neither; detections ignored at every threshold are dropped, which
    changes no cumulative count); ``num_gt`` (I,) non-ignored people per image; ``rec_thrs`` (R,).
    """

    image_ids: np.ndarray
    det_image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    num_gt: np.ndarray
    rec_thrs: np.ndarray
    iou_thrs: np.ndarray = field(default_factory=lambda: np.linspace(0.5, 0.95, 10))

    @classmethod
    def from_eval_imgs(cls, eval_imgs: Sequence[dict | None], image_ids: Sequence[int], rec_thrs,
                       iou_thrs, max_det: int) -> "MatchTable":
        """From ``evaluateImg`` results, one per image of ``image_ids`` (None: no people, no detections)."""
        image_ids = np.asarray(image_ids)
        if len(eval_imgs) != len(image_ids):
            raise ValueError(f"{len(eval_imgs)} per-image results for {len(image_ids)} images")
        T = len(iou_thrs)
        scores, owner, dtm, dtig = [], [], [], []
        num_gt = np.zeros(len(image_ids), np.int64)
        for i, e in enumerate(eval_imgs):
            if e is None:
                continue
            s = np.asarray(e["dtScores"][0:max_det], float)
            scores.append(s)
            owner.append(np.full(len(s), i, np.int64))
            dtm.append(np.asarray(e["dtMatches"])[:, 0:max_det].reshape(T, len(s)))
            dtig.append(np.asarray(e["dtIgnore"])[:, 0:max_det].reshape(T, len(s)))
            num_gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
        if scores:
            s = np.concatenate(scores)
            order = np.argsort(-s, kind="mergesort")  # COCOeval.accumulate's sort
            det_image = np.concatenate(owner)[order]
            m = np.concatenate(dtm, axis=1)[:, order]
            ig = np.concatenate(dtig, axis=1)[:, order].astype(bool)
        else:
            det_image = np.zeros(0, np.int64)
            m = np.zeros((T, 0), np.int64)
            ig = np.zeros((T, 0), bool)
        tp = (m >= 0) & ~ig
        fp = (m < 0) & ~ig
        keep = (tp | fp).any(axis=0)
        return cls(image_ids=image_ids, det_image=det_image[keep], tp=tp[:, keep], fp=fp[:, keep],
                   num_gt=num_gt, rec_thrs=np.asarray(rec_thrs, float), iou_thrs=np.asarray(iou_thrs, float))

    @classmethod
    def from_cocoeval(cls, ev) -> "MatchTable":
        """From an evaluated xtcocotools ``COCOeval`` (after ``evaluate()``, before ``summarize()``)."""
        p = ev._paramsEval
        cats = p.catIds if p.useCats else [-1]
        if len(cats) != 1:
            raise ValueError(f"bootstrap: expected one category (person), got {len(cats)}")
        n = len(p.imgIds)
        # evalImgs is ordered (category, area range, image); area range 0 is 'all'.
        return cls.from_eval_imgs(ev.evalImgs[0:n], p.imgIds, p.recThrs, p.iouThrs, p.maxDets[-1])

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def accumulate(self, weights: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval's ``accumulate`` with image multiplicities ``weights`` (B, I) -> precision (B, T, R),
        recall (B, T); -1 where the resample holds no person (as COCOeval marks an empty category)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = w[None]
        if w.shape[1] != self.num_images:
            raise ValueError(f"weights: expected (B, {self.num_images}), got {w.shape}")
        B, T, R, D = w.shape[0], self.tp.shape[0], len(self.rec_thrs), self.tp.shape[1]
        precision = -np.ones((B, T, R))
        recall = -np.ones((B, T))
        npig = w @ self.num_gt.astype(np.float64)  # (B,)
        # Only the true positives need precision values: a query of COCO's 101-point interpolation lands
        # on the first detection reaching a recall, always a true positive, and the envelope there is
        # the best precision at any later true positive (a false positive lowers precision).  The count of
        # detections before each true positive (tp + fp, the denominator) comes from one cumulative sum per
        # distinct "not ignored" mask.  The values are COCOeval's, operation for operation.
        valid = self.tp | self.fp
        masks, which = [], []
        for row in valid:
            same = [k for k, m in enumerate(masks) if np.array_equal(m, row)]
            if not same:
                masks.append(row.astype(np.float64))
            which.append(same[0] if same else len(masks) - 1)
        tp_idx = [np.flatnonzero(self.tp[t]) for t in range(T)]
        chunk = chunk or max(1, int(4_000_000 // max(D, 1)))
        for b0 in range(0, B, chunk):
            wb = w[b0:b0 + chunk]
            wd = wb[:, self.det_image]  # (b, D) multiplicity of each detection
            n = npig[b0:b0 + chunk]
            ok = n > 0
            counted = [np.cumsum(wd * m, axis=1) for m in masks]  # tp + fp up to each detection
            for t in range(T):
                idx = tp_idx[t]
                tp = np.cumsum(wd[:, idx], axis=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rc = tp / n[:, None]
                pr = tp / (counted[which[t]][:, idx] + np.spacing(1))
                recall[b0:b0 + chunk, t] = np.where(ok, rc[:, -1] if idx.size else 0.0, -1.0)
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the envelope
                for j in range(wb.shape[0]):
                    if not ok[j]:
                        continue
                    q = np.zeros(R)
                    inds = np.searchsorted(rc[j], self.rec_thrs, side="left")
                    hit = inds < idx.size  # COCOeval stops at the first recall beyond the last detection
                    q[hit] = pr[j, inds[hit]]
                    precision[b0 + j, t] = q
        return precision, recall

    def metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """AP, AP .5, AP .75 and AR per resample (B,), as COCOeval's ``summarize`` averages them."""
        precision, recall = self.accumulate(weights)
        t50 = int(np.where(self.iou_thrs == 0.5)[0][0])
        t75 = int(np.where(self.iou_thrs == 0.75)[0][0])
        return {"AP": _mean_valid(precision), "AP .5": _mean_valid(precision[:, t50:t50 + 1]),
                "AP .75": _mean_valid(precision[:, t75:t75 + 1]), "AR": _mean_valid(recall)}


def _mean_valid(x: np.ndarray) -> np.ndarray:
    """Per row, the mean over entries > -1 (COCOeval's ``np.mean(s[s > -1])``; -1 when none)."""
    flat = x.reshape(x.shape[0], -1)
    out = np.empty(flat.shape[0])
    for i, row in enumerate(flat):
        v = row[row > -1]
        out[i] = np.mean(v) if v.size else -1.0
    return out


def resample_weights(num_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, num_images) multiplicities of images drawn with replacement (each row sums to I)."""
    if num_images < 1:
        raise ValueError("bootstrap: no images to resample")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    w = np.zeros((resamples, num_images), np.int64)
    np.add.at(w, (np.arange(resamples)[:, None], draws), 1)
    return w


@dataclass(frozen=True)
class ModelInterval:
    name: str
    value: float  # on the full set (the identity resample = COCOeval's number)
    lo: float
    hi: float
    std: float


@dataclass(frozen=True)
class DiffInterval:
    a: str
    b: str
    diff: float  # value(a) - value(b) on the full set
    lo: float
    hi: float
    sign_flip: float  # fraction of resamples whose difference has the other sign (or is zero)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


@dataclass
class BootstrapResult:
    metric: str
    resamples: int
    confidence: float
    seed: int
    num_images: int
    models: dict[str, ModelInterval]
    diffs: list[DiffInterval]
    samples: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "resamples": self.resamples, "confidence": self.confidence,
                "seed": self.seed, "num_images": self.num_images,
                "models": {k: vars(v) for k, v in self.models.items()},
                "diffs": [{**vars(d), "excludes_zero": d.excludes_zero} for d in self.diffs]}


def paired_bootstrap(tables: Mapping[str, MatchTable], *, resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, metric: str = "AP",
                     pairs: Sequence[tuple[str, str]] | None = None) -> BootstrapResult:
    """Percentile intervals of each model's ``metric`` and of each pair's difference, all models scored
    on the same image resamples.  ``pairs`` default: every pair in the given order (a before b)."""
    names = list(tables)
    if not names:
        raise ValueError("bootstrap: no prediction sets")
    if not (0 < confidence < 1):
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples: must be >= 1, got {resamples!r}")
    ref = tables[names[0]].image_ids
    for n in names[1:]:
        if not np.array_equal(tables[n].image_ids, ref):
            raise ValueError(f"bootstrap: {n!r} was evaluated on other images than {names[0]!r}; "
                             "a paired comparison needs the same annotation file")
    w = resample_weights(len(ref), resamples, seed)
    ones = np.ones((1, len(ref)), np.int64)
    point, samples = {}, {}
    for n in names:
        point[n] = float(tables[n].metrics(ones)[metric][0])
        samples[n] = tables[n].metrics(w)[metric]
    a_lo, a_hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    models = {n: ModelInterval(n, point[n], float(np.percentile(samples[n], a_lo)),
                               float(np.percentile(samples[n], a_hi)), float(np.std(samples[n], ddof=1))
                               if resamples > 1 else 0.0) for n in names}
    if pairs is None:
        pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    diffs = []
    for a, b in pairs:
        d = samples[a] - samples[b]
        obs = point[a] - point[b]
        flip = float(np.mean(np.sign(d) != np.sign(obs)))
        diffs.append(DiffInterval(a, b, obs, float(np.percentile(d, a_lo)), float(np.percentile(d, a_hi)), flip))
    return BootstrapResult(metric, resamples, confidence, seed, len(ref), models, diffs, samples)
