"""AP by occlusion level (harness.eval.breakdown) on the real samples and on constructed cases."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.data import get_meta
from harness.eval.breakdown import (ATTRIBUTES, Attribute, Bin, assign_bins, attributes_for, box_iou,
                                    breakdown_from_cocoeval, bin_tables, evaluated_people)
from harness.eval.coco_eval import evaluate, evaluate_results, load_coco_gt
from support.paths import SHARED, MMPOSE_REF as REF

EXPECTED = json.loads((REF / "expected.json").read_text())["expected"]
NOISY = ["coco-mini__noise0.02.json", "coco-samples__noise0.02.json", "ochuman__noise0.02.json",
         "ochuman__noise0.08.json", "crowdpose__noise0.08.json"]
EVERYONE = Attribute("everyone", "everyone", "person", (Bin("all", -math.inf, math.inf),),
                     lambda gt: {a: 0.0 for a in gt.anns})


def _evaluate(fname: str, hook, ann: Path | None = None):
    exp = EXPECTED[fname]
    preds = json.loads((REF / fname).read_text())
    return evaluate(preds, ann or SHARED / exp["ann"], get_meta(exp["dataset"]), on_eval=hook)


@pytest.mark.parametrize("fname", NOISY)
def test_bins_partition_people_and_everyone_bin_equals_plain_ap(fname):
    dataset = EXPECTED[fname]["dataset"]
    seen = {}

    def hook(ev):
        people = evaluated_people(ev)
        seen["people"] = len(people)
        for attr in attributes_for("occlusion", dataset):
            members = assign_bins(attr, ev.cocoGt, people)
            ids = [a for m in members.values() for a in m]
            assert len(ids) == len(set(ids)) == len(people), attr.name  # disjoint and complete
        (_, n, table), = bin_tables(ev, EVERYONE)
        seen["everyone"] = table.metrics(np.ones((1, table.num_images)))
        seen["n"] = n
        seen["breakdown"] = breakdown_from_cocoeval(ev, "occlusion", dataset)

    m = _evaluate(fname, hook)
    assert seen["n"] == seen["people"] > 0
    for k in ("AP", "AP .5", "AP .75", "AR"):
        assert seen["everyone"][k][0] == m[k]  # exactly
    for attr in seen["breakdown"]["attributes"]:
        assert sum(b["people"] for b in attr["bins"]) == seen["people"]
        for b in attr["bins"]:
            assert (b["AP"] is None) == (b["people"] == 0)


def test_ochuman_max_iou_from_boxes():
    gt = load_coco_gt(SHARED / "data/ochuman-samples/test_ochuman.json")
    vals = ATTRIBUTES["max_iou"].values(gt)
    by_img = {}
    for a in gt.anns.values():
        by_img.setdefault(a["image_id"], []).append(a)
    for anns in by_img.values():
        iou = box_iou([a["bbox"] for a in anns])
        for i, a in enumerate(anns):
            others = [iou[i, j] for j in range(len(anns)) if j != i]
            assert vals[a["id"]] == pytest.approx(max(others, default=0.0))
    # The samples: one person alone (low), one pair at 0.59 (moderate), one at 0.78 (hard).
    people = {a: gt.anns[a]["image_id"] for a in gt.anns}
    members = assign_bins(ATTRIBUTES["max_iou"], gt, people)
    assert {k: len(v) for k, v in members.items()} == {"low": 1, "moderate": 2, "hard": 2}
    # An annotation that carries OCHuman's own max_iou uses it.
    ann = next(iter(gt.anns.values()))
    ann["max_iou"] = 0.9
    assert ATTRIBUTES["max_iou"].values(gt)[ann["id"]] == 0.9


def test_coco_overlap_and_keypoint_bins_follow_coco_analyze():
    assert [b.range for b in ATTRIBUTES["overlaps"].bins] == ["[0, 1)", "[1, 3)", "[3, inf)"]
    assert [(b.lo, b.hi) for b in ATTRIBUTES["num_keypoints"].bins] == [(1, 6), (6, 11), (11, 16), (16, math.inf)]
    gt = load_coco_gt(SHARED / "data/coco-mini/annotations/person_keypoints_val2017.json")
    ov = ATTRIBUTES["overlaps"].values(gt)
    # Image 183709: person 0 overlaps person 1 at IoU 0.16 (and nobody else above 0.1).
    anns = gt.imgToAnns[183709]
    iou = box_iou([a["bbox"] for a in anns])
    assert ov[anns[0]["id"]] == np.count_nonzero(iou[0] > 0.1) - 1 == 1
    nk = ATTRIBUTES["num_keypoints"].values(gt)
    assert all(nk[a["id"]] == a["num_keypoints"] for a in gt.anns.values())


def _crowdpose_with_index(tmp_path, index: dict[int, float]) -> Path:
    data = json.loads((SHARED / "data/crowdpose-samples/test_crowdpose.json").read_text())
    for im in data["images"]:
        im["crowdIndex"] = index.get(im["id"], im["crowdIndex"])
    out = tmp_path / "crowdpose.json"
    out.write_text(json.dumps(data))
    return out


def test_crowdpose_bins_equal_the_evaluators_easy_medium_hard(tmp_path):
    """Image 106848 made easy (0.1), 103319 hard (0.9): our bins give the evaluator's AP(E)/AP(H)."""
    ann = _crowdpose_with_index(tmp_path, {106848: 0.1, 103319: 0.9})
    seen = {}
    m = _evaluate("crowdpose__noise0.08.json",
                  lambda ev: seen.update(b=breakdown_from_cocoeval(ev, "occlusion", "crowdpose")), ann=ann)
    bins = {b["bin"]: b for b in seen["b"]["attributes"][0]["bins"]}
    assert bins["easy"]["people"] == 2 and bins["hard"]["people"] == 2 and bins["medium"]["people"] == 0
    assert round(bins["easy"]["AP"], 4) == m["AP(E)"]  # the evaluator rounds to 4 decimals
    assert round(bins["hard"]["AP"], 4) == m["AP(H)"]
    assert bins["medium"]["AP"] is None and m["AP(M)"] == -1  # nobody: the evaluator's mean of -1


def _constructed(tmp_path):
    """Two images: people A, B overlapping at box IoU ~0.82 (hard); C, D at ~0.60 (moderate).
    Perfect predictions for everyone, A's and B's scored higher than C's and D's."""
    kps = lambda x0: [v for k in range(17) for v in (x0 + 3 * k, 20 + 5 * k, 2)]  # noqa: E731
    boxes = {1: [0, 0, 100, 100], 2: [5, 5, 100, 100], 3: [0, 0, 100, 100], 4: [20, 0, 100, 100]}
    imgs = {1: 1, 2: 1, 3: 2, 4: 2}
    anns = [dict(id=i, image_id=imgs[i], category_id=1, iscrowd=0, bbox=b, area=b[2] * b[3] * 0.5,
                 num_keypoints=17, keypoints=kps(b[0])) for i, b in boxes.items()]
    data = dict(images=[dict(id=1, width=200, height=200, file_name="1.jpg"),
                        dict(id=2, width=200, height=200, file_name="2.jpg")],
                annotations=anns, categories=[dict(id=1, name="person", keypoints=[], skeleton=[])])
    score = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}
    results = [dict(image_id=a["image_id"], category_id=1, keypoints=[float(v) if j % 3 < 2 else 1.0
                                                                      for j, v in enumerate(a["keypoints"])],
                    score=score[a["id"]]) for a in anns]
    full = tmp_path / "full.json"
    full.write_text(json.dumps(data))
    dropped = copy.deepcopy(data)
    dropped["annotations"] = [a for a in anns if a["image_id"] == 2]  # moderate bin only: A, B removed
    drop = tmp_path / "dropped.json"
    drop.write_text(json.dumps(dropped))
    return full, drop, results


def test_ignore_versus_drop(tmp_path):
    """Ignoring the out-of-bin people leaves the moderate bin's AP at 1; dropping them turns the two
    correct (and higher-scored) detections of A and B into false positives: precision 1/3 at the first
    moderate hit and 1/2 at the second, whose envelope is 1/2 at every recall: AP 0.5."""
    full, drop, results = _constructed(tmp_path)
    meta = get_meta("ochuman")
    seen = {}
    evaluate_results(results, full, meta, on_eval=lambda ev: seen.update(b=breakdown_from_cocoeval(
        ev, "occlusion", "ochuman")))
    bins = {b["bin"]: b for b in seen["b"]["attributes"][0]["bins"]}
    assert bins["moderate"]["people"] == 2 and bins["hard"]["people"] == 2
    assert bins["moderate"]["AP"] == pytest.approx(1.0) and bins["hard"]["AP"] == pytest.approx(1.0)
    dropped = evaluate_results(results, drop, meta)["AP"]
    assert dropped == pytest.approx(0.5, abs=1e-9)
    assert dropped < bins["moderate"]["AP"] - 0.4


def test_unknown_breakdown_kind():
    with pytest.raises(ValueError, match="unknown kind 'pose'"):
        attributes_for("pose", "coco")


def test_cli_evaluate_predictions_breakdown(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "m.json"
    rc = main(["evaluate-predictions", "--ann", str(SHARED / "data/ochuman-samples/test_ochuman.json"), "--dataset",
               "ochuman", "--preds", str(REF / "ochuman__noise0.02.json"), "--breakdown", "occlusion",
               "--json", str(out)])
    assert rc == 0
    assert "AP by MaxIoU with another person (boxes)" in capsys.readouterr().out
    res = json.loads(out.read_text())
    bins = {b["bin"]: b for b in res["breakdown"]["attributes"][0]["bins"]}
    assert [bins[k]["people"] for k in ("low", "moderate", "hard")] == [1, 2, 2]
    assert res["AP"] == pytest.approx(EXPECTED["ochuman__noise0.02.json"]["metrics"]["bbox_keypoint/0.2/oks_nms/0.9"]["AP"], abs=1e-9)
