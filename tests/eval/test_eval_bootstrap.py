"""Paired image bootstrap (harness.eval.bootstrap): exactness against COCOeval, zero width for identical
predictions, coverage on synthetic predictions with a known difference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.data import get_meta
from harness.eval.bootstrap import MatchTable, paired_bootstrap, resample_weights
from harness.eval.coco_eval import evaluate, evaluate_results
from support.paths import SHARED, MMPOSE_REF as REF

EXPECTED = json.loads((REF / "expected.json").read_text())["expected"]


def _table(fname: str, ann: Path | None = None) -> tuple[MatchTable, dict]:
    exp = EXPECTED[fname]
    seen = {}
    m = evaluate(json.loads((REF / fname).read_text()), ann or SHARED / exp["ann"], get_meta(exp["dataset"]),
                 on_eval=lambda ev: seen.update(t=MatchTable.from_cocoeval(ev)))
    return seen["t"], m


@pytest.mark.parametrize("fname", sorted(EXPECTED))
def test_identity_resample_equals_cocoeval_exactly(fname):
    table, m = _table(fname)
    got = table.metrics(np.ones((1, table.num_images), np.int64))
    for k in ("AP", "AP .5", "AP .75", "AR"):
        assert got[k][0] == m[k], k


def test_multiplicity_equals_duplicated_images(tmp_path):
    """Weight 2 on an image == COCOeval on an annotation file holding that image twice."""
    fname = "coco-mini__noise0.02.json"
    exp = EXPECTED[fname]
    ann = SHARED / exp["ann"]
    meta = get_meta("coco")
    seen = {}
    prefix = tmp_path / "p"
    evaluate(json.loads((REF / fname).read_text()), ann, meta, outfile_prefix=prefix,
             on_eval=lambda ev: seen.update(t=MatchTable.from_cocoeval(ev)))
    results = json.loads(Path(f"{prefix}.keypoints.json").read_text())
    table = seen["t"]
    rng = np.random.default_rng(3)
    w = rng.integers(0, 3, table.num_images)
    data = json.loads(ann.read_text())
    imgs = {im["id"]: im for im in data["images"]}
    new_imgs, new_anns, new_res = [], [], []
    next_img, next_ann = 10**9, 10**9
    for img_id, k in zip(table.image_ids.tolist(), w.tolist()):
        for _ in range(k):
            next_img += 1
            new_imgs.append({**imgs[img_id], "id": next_img})
            for a in data["annotations"]:
                if a["image_id"] == img_id:
                    next_ann += 1
                    new_anns.append({**a, "id": next_ann, "image_id": next_img})
            new_res += [{**r, "image_id": next_img} for r in results if r["image_id"] == img_id]
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({**data, "images": new_imgs, "annotations": new_anns}))
    ref = evaluate_results(new_res, dup, meta)
    got = table.metrics(w[None])
    for k in ("AP", "AP .5", "AP .75", "AR"):
        assert got[k][0] == pytest.approx(ref[k], abs=1e-12), k


def test_identical_predictions_give_zero_width_interval():
    table, m = _table("ochuman__noise0.02.json")
    res = paired_bootstrap({"a": table, "b": table}, resamples=200, seed=1)
    d = res.diffs[0]
    assert d.diff == 0 and d.lo == 0 and d.hi == 0 and d.sign_flip == 0 and not d.excludes_zero
    assert res.models["a"].value == m["AP"]
    assert res.models["a"].lo <= m["AP"] <= res.models["a"].hi


def test_resample_weights_rows_sum_to_the_number_of_images():
    w = resample_weights(7, 50, seed=0)
    assert w.shape == (50, 7) and (w.sum(1) == 7).all() and (w >= 0).all()
    assert np.array_equal(w, resample_weights(7, 50, seed=0))


def test_paired_bootstrap_needs_the_same_images():
    a, _ = _table("ochuman__noise0.02.json")
    b, _ = _table("coco-samples__noise0.02.json")
    with pytest.raises(ValueError, match="other images"):
        paired_bootstrap({"a": a, "b": b}, resamples=10)


# ------------------------------------------------------------------ coverage on synthetic predictions
THRS = np.linspace(0.5, 0.95, 10)
RECS = np.linspace(0.0, 1.0, 101)


def _synthetic_pair(n_images: int, rng) -> tuple[MatchTable, MatchTable]:
    """Per image 1-4 people; each model detects each person with a model-specific OKS quality (B's worse)
    and adds false positives; scores follow quality with noise.  The two models share the people."""
    people = rng.integers(1, 5, n_images)
    tables = []
    difficulty = rng.normal(0, 0.06, people.sum())  # shared per person: the pairing
    owner_p = np.repeat(np.arange(n_images), people)
    for shift, fp_rate in ((0.0, 0.6), (-0.04, 0.8)):
        oks = np.clip(0.85 + shift + difficulty + rng.normal(0, 0.06, len(difficulty)), 0, 1)
        hit = rng.random(len(oks)) < 0.9
        n_fp = rng.poisson(fp_rate, n_images)
        owner = np.r_[owner_p[hit], np.repeat(np.arange(n_images), n_fp)]
        quality = np.r_[oks[hit], np.zeros(n_fp.sum())]
        score = np.r_[oks[hit], rng.uniform(0.3, 0.8, n_fp.sum())] + rng.normal(0, 0.1, len(owner))
        order = np.argsort(-score, kind="mergesort")
        tp = quality[order][None, :] >= THRS[:, None]
        tables.append(MatchTable(np.arange(n_images), owner[order], tp, ~tp, people.astype(np.int64), RECS, THRS))
    return tables[0], tables[1]


def _ap(t: MatchTable) -> float:
    return float(t.metrics(np.ones((1, t.num_images), np.int64))["AP"][0])


@pytest.mark.slow
def test_interval_covers_a_known_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    a, b = _synthetic_pair(40000, rng)  # the population: its difference is the truth
    truth = _ap(a) - _ap(b)
    assert 0.02 < truth < 0.1
    draws, hits = 80, 0
    for i in range(draws):
        a, b = _synthetic_pair(150, rng)
        res = paired_bootstrap({"a": a, "b": b}, resamples=300, seed=i)
        hits += res.diffs[0].lo <= truth <= res.diffs[0].hi
    # Binomial(80, 0.95): 95% of draws land in [72, 80].
    assert 70 <= hits <= 80, hits
