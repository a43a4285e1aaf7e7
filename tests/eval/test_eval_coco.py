"""Evaluation: scoring modes, OKS, OKS-NMS, soft-OKS-NMS, COCO/CrowdPose metrics, equality with mmpose's
CocoMetric under every option, the options in EvalCfg and `evaluate-predictions`."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import COCO_META, CROWDPOSE_META, CocoKeypoints, get_meta
from harness.data.transforms import bbox_xywh_to_cs
from harness.eval import CROWD_METRIC_NAMES, METRIC_NAMES, RawPredictions, evaluate, oks_matrix, oks_nms, rescore
from harness.config import ConfigError, EvalCfg
from harness.eval.postprocess import instance_scores, postprocess, soft_oks_nms
from support.paths import SHARED, SHARED_DATA as DATA, MMPOSE_REF as REF

SETS = {
    "coco-samples": ("coco", DATA / "coco-samples" / "test_coco.json"),
    "coco-mini": ("coco", DATA / "coco-mini" / "annotations" / "person_keypoints_val2017.json"),
    "ochuman": ("ochuman", DATA / "ochuman-samples" / "test_ochuman.json"),
    "crowdpose": ("crowdpose", DATA / "crowdpose-samples" / "test_crowdpose.json"),
}


def gt_predictions(name: str, ann: Path) -> list[dict]:
    coco = CocoKeypoints(ann, ann.parent, get_meta(name))
    out = []
    for inst in coco.gt_instances():
        _, s = bbox_xywh_to_cs(inst.bbox[None], 0.75)
        out.append(dict(image_id=inst.image_id, category_id=1, bbox=inst.bbox.tolist(), bbox_score=1.0,
                        area=float(np.prod(s)), keypoints=inst.keypoints.tolist(),
                        keypoint_scores=inst.visible.tolist()))
    return out


# ----------------------------------------------------------------------------- building blocks
def test_rescore():
    ks = np.array([[0.1, 0.3, 0.5], [0.1, 0.2, 0.0], [0.9, 0.9, 0.9]])
    assert np.allclose(rescore(ks, np.array([0.5, 1.0, 2.0])), [0.5 * 0.4, 0.0, 1.8])


def test_oks_matrix_against_formula():
    rng = np.random.default_rng(0)
    kps = rng.uniform(0, 100, (4, 17, 2))
    areas = rng.uniform(100, 5000, 4)
    sig = COCO_META.sigmas_array
    m = oks_matrix(kps, areas, sig)
    i, j = 1, 3
    d2 = ((kps[i] - kps[j]) ** 2).sum(-1)
    expect = np.mean(np.exp(-d2 / (2 * ((areas[i] + areas[j]) / 2 + np.spacing(1)) * (2 * sig) ** 2)))
    assert m[i, j] == pytest.approx(expect, rel=1e-6) and m[j, i] == m[i, j]
    assert np.allclose(np.diag(m), 1.0)


def test_oks_nms_removes_duplicates_keeps_distinct():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 50, (17, 2))
    b = a + 200  # a different person
    kps = np.stack([a, a + 0.5, b, a + 0.1, b + 0.2])
    scores = np.array([0.9, 0.95, 0.5, 0.3, 0.6])
    keep = oks_nms(kps, scores, np.full(5, 2000.0), COCO_META.sigmas_array, 0.9)
    assert keep.tolist() == [1, 4]  # best of each cluster, in descending score order
    assert oks_nms(kps, scores, np.full(5, 2000.0), COCO_META.sigmas_array, 1.0).tolist() == [1, 0, 4, 2, 3]


def test_postprocess_groups_images_in_first_appearance_order():
    n = 6
    raw = RawPredictions(image_ids=np.array([7, 3, 7, 3, 9, 7]), category_ids=np.ones(n, np.int64),
                         keypoints=np.random.default_rng(0).uniform(0, 500, (n, 17, 2)).astype(np.float32),
                         keypoint_scores=np.full((n, 17), 0.5, np.float32),
                         bbox_scores=np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), areas=np.full(n, 1e4))
    sel, scores = postprocess(raw, COCO_META.sigmas_array)
    assert sel.tolist() == [5, 2, 0, 3, 1, 4]
    assert np.allclose(scores, raw.bbox_scores[sel] * 0.5)


# ----------------------------------------------------------------------------- metrics on the samples
@pytest.mark.parametrize("key", list(SETS))
def test_gt_predictions_give_ap_one(key):
    name, ann = SETS[key]
    m = evaluate(gt_predictions(name, ann), ann, get_meta(name))
    names = CROWD_METRIC_NAMES if name == "crowdpose" else METRIC_NAMES
    assert list(m) == list(names)
    assert m["AP"] == pytest.approx(1.0) and m["AR"] == pytest.approx(1.0) and m["AP .75"] == pytest.approx(1.0)


def test_perturbed_predictions_lower_ap_and_duplicates_removed(tmp_path):
    name, ann = SETS["coco-mini"]
    preds = gt_predictions(name, ann)
    rng = np.random.default_rng(0)
    noisy = copy.deepcopy(preds)
    for p in noisy:
        k = np.asarray(p["keypoints"])
        p["keypoints"] = (k + rng.normal(0, 0.05 * np.sqrt(p["area"]) / 1.25, k.shape)).tolist()
    ap_noisy = evaluate(noisy, ann, COCO_META)["AP"]
    assert 0.0 < ap_noisy < 0.9
    # near-duplicates of every person with lower scores: OKS-NMS removes them -> AP back to 1
    dups = copy.deepcopy(preds)
    for p in dups:
        p["keypoints"] = (np.asarray(p["keypoints"]) + 1.0).tolist()
        p["bbox_score"] = 0.5
    both = preds + dups
    m = evaluate(both, ann, COCO_META, outfile_prefix=tmp_path / "run")
    assert m["AP"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "run.keypoints.json").read_text())
    assert len(results) == len(preds)  # every duplicate suppressed
    assert json.loads((tmp_path / "run.metrics.json").read_text()) == m
    # without post-processing the duplicates are false positives at high recall ... AR unchanged
    m_raw = evaluate(both, ann, COCO_META, nms_mode="none")
    assert m_raw["AR"] == pytest.approx(1.0) and m_raw["AP"] <= 1.0


REF_EXPECTED = json.loads((REF / "expected.json").read_text())


@pytest.mark.parametrize("fname", sorted(REF_EXPECTED["expected"]))
def test_equal_to_mmpose_cocometric(fname):
    """Numbers mmpose 1.3.2's CocoMetric produced on the same raw prediction files, under every
    (score_mode, keypoint_score_thr, nms_mode, nms_thr) of the fixture."""
    exp = REF_EXPECTED["expected"][fname]
    settings = REF_EXPECTED["settings"]
    assert len(REF_EXPECTED["expected"]) == 13 and len(settings) == 14
    assert {s for s, *_ in settings} == {"bbox_keypoint", "bbox", "keypoint"}
    assert {n for _, _, n, _ in settings} == {"oks_nms", "soft_oks_nms", "none"}
    raw = RawPredictions.from_list(json.loads((REF / fname).read_text()))
    ann = SHARED / exp["ann"]
    meta = get_meta(exp["dataset"])
    from harness.eval.coco_eval import load_coco_gt

    gt = load_coco_gt(ann)
    for score_mode, kthr, nms_mode, nms_thr in settings:
        key = f"{score_mode}/{kthr:g}/{nms_mode}/{nms_thr:g}"
        ours = evaluate(raw, ann, meta, score_mode=score_mode, keypoint_score_thr=kthr, nms_mode=nms_mode,
                        nms_thr=nms_thr, coco_gt=copy.deepcopy(gt))
        assert list(ours) == list(exp["metrics"][key]), (fname, key)
        diff = max(abs(ours[k] - exp["metrics"][key][k]) for k in ours)
        assert diff <= 1e-12, (fname, key, ours, exp["metrics"][key])


def test_oks_and_nms_bitwise_equal_to_mmpose():
    """mmpose 1.3.2's oks_iou values (float32, bit for bit), oks_nms and soft_oks_nms picks on random
    images with tied scores (``nms_reference.json``)."""
    cases = json.loads((REF / "nms_reference.json").read_text())["cases"]
    assert len(cases) == 24 and any(len(c["scores"]) > 20 for c in cases)
    for i, c in enumerate(cases):
        sig = get_meta(c["dataset"]).sigmas_array
        scores = np.asarray(c["scores"], np.float32)
        n = len(scores)
        kp = np.frombuffer(bytes.fromhex(c["keypoints_f32_hex"]), "<f4").reshape(n, len(sig), 2)
        areas = np.frombuffer(bytes.fromhex(c["areas_f32_hex"]), "<f4")
        want = np.frombuffer(bytes.fromhex(c["oks_f32_hex"]), "<f4").reshape(n, n)
        assert np.array_equal(oks_matrix(kp, areas, sig), want), i
        assert oks_nms(kp, scores, areas, sig, c["thr"]).tolist() == c["oks_nms"], i
        assert soft_oks_nms(kp, scores, areas, sig, c["thr"]).tolist() == c["soft_oks_nms"], i


def test_score_modes():
    ks = np.array([[0.1, 0.3, 0.5], [0.1, 0.2, 0.0], [0.9, 0.9, 0.9]], np.float32)
    box = np.array([0.5, 1.0, 2.0])
    assert np.allclose(instance_scores(ks, box, "bbox_keypoint", 0.2), [0.5 * 0.4, 0.0, 1.8])
    assert np.allclose(instance_scores(ks, box, "bbox_keypoint", 0.0), [0.5 * 0.3, 0.15, 1.8])
    assert np.allclose(instance_scores(ks, box, "bbox"), box)
    assert np.allclose(instance_scores(ks, box, "keypoint"), [0.3, 0.1, 0.9])
    assert instance_scores(ks, box, "bbox").dtype == np.float32  # mmpose's scores are float32
    with pytest.raises(ValueError, match="score_mode: must be one of"):
        instance_scores(ks, box, "bbox_rle")


def test_soft_oks_nms_decays_ranking_not_scores():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 50, (17, 2))
    b = a + 300
    kps = np.stack([a, a + 0.3, b, a + 2.0])
    scores = np.array([0.9, 0.8, 0.5, 0.7], np.float32)
    areas = np.full(4, 2000.0)
    sig = COCO_META.sigmas_array
    # after the first pick, its near-duplicate (OKS ~1) ranks 0.8*exp(-1/0.9) = 0.26 and the shifted
    # copy (OKS 0.81) 0.7*exp(-0.81^2/0.9) = 0.36, both below the other person's 0.5
    oks = oks_matrix(kps, areas, sig)
    assert oks[0, 1] > 0.99 and 0.8 < oks[0, 3] < 0.82 and oks[0, 2] < 1e-6
    keep = soft_oks_nms(kps, scores, areas, sig, 0.9)
    assert keep.tolist() == [0, 2, 3, 1]  # all kept (<= 20), re-ranked
    assert soft_oks_nms(kps, scores, areas, sig, 0.9, max_dets=2).tolist() == [0, 2]
    raw = RawPredictions(image_ids=np.ones(4, np.int64), category_ids=np.ones(4, np.int64),
                         keypoints=kps.astype(np.float32), keypoint_scores=np.ones((4, 17), np.float32),
                         bbox_scores=scores.astype(np.float64), areas=areas)
    sel, sc = postprocess(raw, sig, score_mode="bbox", nms_mode="soft_oks_nms")
    assert sel.tolist() == [0, 2, 3, 1] and np.allclose(sc, scores[sel])  # the results keep their scores
    # more than 20 per image: only 20 survive
    many = RawPredictions(image_ids=np.ones(30, np.int64), category_ids=np.ones(30, np.int64),
                          keypoints=rng.uniform(0, 500, (30, 17, 2)).astype(np.float32),
                          keypoint_scores=np.ones((30, 17), np.float32), bbox_scores=rng.uniform(0, 1, 30),
                          areas=np.full(30, 1e4))
    assert len(postprocess(many, sig, nms_mode="soft_oks_nms")[0]) == 20
    assert len(postprocess(many, sig, nms_mode="none")[0]) == 30


@pytest.mark.parametrize("kwargs,match", [
    (dict(score_mode="rle"), "score_mode: must be one of"),
    (dict(nms_mode="nms"), "nms_mode: must be one of"),
    (dict(keypoint_score_thr=1.5), r"keypoint_score_thr: must be a number in \[0, 1\]"),
    (dict(nms_thr=-0.1), r"nms_thr: must be a number in \[0, 1\]"),
    (dict(nms_mode="soft_oks_nms", nms_thr=0.0), r"nms_thr: must be a number in \(0, 1\] for soft_oks_nms"),
])
def test_bad_options_are_named(kwargs, match):
    name, ann = SETS["coco-samples"]
    with pytest.raises(ValueError, match=match):
        evaluate(gt_predictions(name, ann), ann, COCO_META, **kwargs)
    with pytest.raises(ConfigError, match="eval." + match):
        EvalCfg(**kwargs)


def test_evalcfg_options_reach_the_evaluator(monkeypatch):
    """`test`, `evaluate` and validation during training score through builders.evaluate."""
    import harness.eval as he
    from harness.config import apply_overrides, get_experiment
    from harness.engine import builders

    seen = {}
    monkeypatch.setattr(he, "predict", lambda *a, **k: ["preds"])
    monkeypatch.setattr(he, "evaluate", lambda preds, ann, meta, **kw: seen.update(kw) or {"AP": 0.5})
    exp = get_experiment("coco-hrnet-w32-256x192-fair")
    assert (exp.eval.score_mode, exp.eval.keypoint_score_thr, exp.eval.nms_mode, exp.eval.nms_thr) == (
        "bbox_keypoint", 0.2, "oks_nms", 0.9)  # mmpose CocoMetric's defaults
    exp = apply_overrides(exp, ["eval.score_mode=bbox", "eval.nms_mode=soft_oks_nms", "eval.nms_thr=0.5",
                                "eval.keypoint_score_thr=0.3"])

    class DS:
        ann_file, meta = "x.json", COCO_META

    assert builders.evaluate(None, DS(), exp, device="cpu", progress=False) == {"AP": 0.5}
    assert seen == dict(score_mode="bbox", keypoint_score_thr=0.3, nms_mode="soft_oks_nms", nms_thr=0.5, on_eval=None)



@pytest.mark.parametrize("fuse", [True, False])
def test_evaluation_predicts_with_the_fused_model_unless_told_otherwise(monkeypatch, fuse):
    """eval.fuse (default true): the BatchNorm-folded inference copy predicts; the caller's model is unchanged."""
    import harness.eval as he
    from harness import create_pose_model
    from harness.config import apply_overrides, get_experiment
    from harness.engine import builders

    seen = {}
    monkeypatch.setattr(he, "predict", lambda model, *a, **k: seen.update(model=model) or ["preds"])
    monkeypatch.setattr(he, "evaluate", lambda preds, ann, meta, **kw: {"AP": 0.5})
    exp = apply_overrides(get_experiment("demo-hrnet"), [f"eval.fuse={str(fuse).lower()}"])
    model = create_pose_model("hrnet-demo").train()

    class DS:
        ann_file, meta = "x.json", COCO_META

    builders.evaluate(model, DS(), exp, device="cpu", progress=False)
    assert (seen["model"] is not model) == fuse and seen["model"].fused == fuse
    assert model.training and not model.fused  # the training model is untouched
    if fuse:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in seen["model"].modules())


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("mutate,match", [
    (lambda p: p[0].pop("area"), r"predictions\[0\]: missing field 'area'"),
    (lambda p: p[1].__setitem__("keypoints", p[1]["keypoints"][:14]), r"predictions\[1\] .*has 14 keypoints"),
    (lambda p: p[0].__setitem__("image_id", 123456789), "1 image ids not in"),
    (lambda p: p[0].__setitem__("keypoints", [[1.0]] * 17), r"predictions\[0\]\.keypoints: must be \[\[x, y\]"),
    (lambda p: p[2].__setitem__("bbox_score", float("nan")), r"predictions\[2\]\.bbox_score: nan is not a finite"),
    (lambda p: p.clear(), "no predictions"),
    # issue 15: range-checked, never coerced
    (lambda p: p[1].__setitem__("area", -3.0), r"predictions\[1\]\.area: -3\.0 must be > 0"),
    (lambda p: p[1].__setitem__("area", 0), r"predictions\[1\]\.area: 0 must be > 0"),
    (lambda p: p[0].__setitem__("image_id", 785.7), r"predictions\[0\]\.image_id: 785\.7 is not an integer"),
    (lambda p: p[0].__setitem__("image_id", "785"), r"predictions\[0\]\.image_id: '785' is not an integer"),
    (lambda p: p[0].__setitem__("image_id", True), r"predictions\[0\]\.image_id: True is not an integer"),
    (lambda p: p[0].__setitem__("bbox_score", "0.9"), r"predictions\[0\]\.bbox_score: '0\.9' is not a finite"),
    (lambda p: p[0].__setitem__("bbox_score", True), r"predictions\[0\]\.bbox_score: True is not a finite"),
    (lambda p: p[0].__setitem__("bbox_score", 1.5), r"predictions\[0\]\.bbox_score: 1\.5 must be in \[0, 1\]"),
    (lambda p: p[3]["keypoints"][2].__setitem__(0, "12"), r"predictions\[3\]\.keypoints\[2\]\[0\]: '12' is not"),
    (lambda p: p[3]["keypoint_scores"].__setitem__(5, False), r"predictions\[3\]\.keypoint_scores\[5\]: False is"),
    (lambda p: p[3]["keypoints"][2].__setitem__(1, 1e300), r"keypoints\[2\]\[1\]: 1e\+300 is not a finite number "
                                                            r"within float32 range"),
])
def test_bad_predictions_are_named(mutate, match):
    from harness.errors import PredictionError

    name, ann = SETS["coco-samples"]
    preds = gt_predictions(name, ann)
    mutate(preds)
    with pytest.raises(PredictionError, match=match):
        evaluate(preds, ann, COCO_META)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("annotations"), "missing top-level field 'annotations'"),
    (lambda d: d.pop("categories"), "missing top-level field 'categories'"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 424242), r"\.image_id: 424242 is not in 'images'"),
    (lambda d: d["annotations"][1].__setitem__("id", d["annotations"][0]["id"]), "duplicate annotation id"),
    (lambda d: d["annotations"][0].pop("keypoints"), r"annotations\[0\]: missing field 'keypoints'"),
    (lambda d: d["annotations"][0].__setitem__("keypoints", [0] * 50), r"\.keypoints: has 50 values, expected 51"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(1, "12"), r"\.bbox\[1\]: '12' is not a finite number"),
])
def test_evaluation_validates_the_annotation_file(tmp_path, mutate, match):
    """evaluate-predictions uses training's annotation validator (issue 15): no table of -1, no KeyError."""
    from harness.errors import AnnotationError

    name, ann = SETS["coco-samples"]
    preds = gt_predictions(name, ann)
    d = json.loads(ann.read_text())
    mutate(d)
    bad = tmp_path / "ann.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(AnnotationError, match=match):
        evaluate(preds, bad, COCO_META)


def test_wrong_dataset_for_predictions():
    name, ann = SETS["coco-samples"]
    with pytest.raises(ValueError, match="expected 14"):
        evaluate(gt_predictions(name, ann), SETS["crowdpose"][1], CROWDPOSE_META)


def test_missing_annotation_file(tmp_path):
    name, ann = SETS["coco-samples"]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        evaluate(gt_predictions(name, ann), tmp_path / "nope.json", COCO_META)


# ----------------------------------------------------------------------------- scale
def test_oks_nms_100k_predictions():
    """A full-size prediction set goes through rescoring + OKS-NMS (its speed is the bench's job)."""
    from harness.profile.databench import synthetic_raw_predictions

    raw = synthetic_raw_predictions(num_images=5000, per_image=20)
    sel, _ = postprocess(raw, COCO_META.sigmas_array)
    assert len(raw) == 100_000 and 5000 <= len(sel) < 100_000


# ----------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    from harness.cli import main

    return main(argv)


def test_cli_evaluate_predictions(tmp_path, capsys):
    exp = REF_EXPECTED["expected"]["crowdpose__noise0.02.json"]
    ref = exp["metrics"]
    out = tmp_path / "m.json"
    base = ["evaluate-predictions", "--ann", str(SHARED / exp["ann"]),
            "--preds", str(REF / "crowdpose__noise0.02.json"),
            "--dataset", "crowdpose", "--json", str(out)]
    assert _cli(base) == 0
    text = capsys.readouterr().out
    assert "| AP | AP .5 | AP .75 | AR | AR .5 | AR .75 | AP(E) | AP(M) | AP(H) |" in text
    assert "score bbox_keypoint 0.2; NMS oks_nms 0.9" in text
    assert json.loads(out.read_text()) == ref["bbox_keypoint/0.2/oks_nms/0.9"]
    for argv, key in [(["--no-postprocess"], "bbox_keypoint/0.2/none/0.9"),
                      (["--nms-mode", "none"], "bbox_keypoint/0.2/none/0.9"),
                      (["--score-mode", "bbox", "--no-postprocess"], "bbox/0.2/none/0.9"),
                      (["--score-mode", "keypoint", "--nms-mode", "soft_oks_nms"], "keypoint/0.2/soft_oks_nms/0.9"),
                      (["--keypoint-score-thr", "0.5"], "bbox_keypoint/0.5/oks_nms/0.9"),
                      (["--nms-thr", "0.5"], "bbox_keypoint/0.2/oks_nms/0.5")]:
        assert _cli(base + argv) == 0, argv
        assert json.loads(out.read_text()) == ref[key], argv
    capsys.readouterr()
    # contradicting flags, out-of-range options: clear error, non-zero exit
    assert _cli(base + ["--no-postprocess", "--nms-mode", "soft_oks_nms"]) == 2
    assert "--no-postprocess means --nms-mode none" in capsys.readouterr().err
    assert _cli(base + ["--nms-thr", "1.5"]) == 2
    assert "nms_thr: must be a number in [0, 1]" in capsys.readouterr().err
    # bad input: clear error, exit 2 (harness.cli: one error path for every command)
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"image_id\": 1}]")
    assert _cli(["evaluate-predictions", "--ann", str(SHARED / exp["ann"]), "--preds", str(bad),
                 "--dataset", "crowdpose"]) == 2
    assert "missing field 'keypoints'" in capsys.readouterr().err
    assert _cli(["evaluate-predictions", "--ann", str(tmp_path / "none.json"), "--preds", str(bad)]) == 2
    assert "none.json" in capsys.readouterr().err


def test_crowdpose_eval_needs_crowd_index(tmp_path):
    name, ann = SETS["crowdpose"]
    d = json.loads(ann.read_text())
    for img in d["images"]:
        img.pop("crowdIndex", None)
    bad = tmp_path / "no_crowd_index.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="needs 'crowdIndex' on every image"):
        evaluate(gt_predictions(name, ann), bad, CROWDPOSE_META)
