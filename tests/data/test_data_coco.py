"""Datasets: metadata, loading the real samples, layouts, bad input, `data check`."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import harness.data as hd
from harness.data import (COCO_META, CROWDPOSE_META, AnnotationError, CocoKeypoints, DatasetMeta, ImageError,
                          build_dataset, check_layout, get_meta, load_image)
from support.paths import REPO, SHARED

DATA = SHARED / "data"
COCO_SAMPLES = DATA / "coco-samples"
COCO_MINI = DATA / "coco-mini"
OCHUMAN = DATA / "ochuman-samples"
CROWDPOSE = DATA / "crowdpose-samples"


# ----------------------------------------------------------------------------- metadata
def test_builtin_meta():
    assert COCO_META.num_keypoints == 17 and CROWDPOSE_META.num_keypoints == 14
    assert get_meta("ochuman").sigmas == COCO_META.sigmas
    assert COCO_META.flip_indices == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert CROWDPOSE_META.flip_indices == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
    # every flip pair maps a left_* name onto the matching right_* name
    for meta in (COCO_META, CROWDPOSE_META):
        for a, b in meta.flip_pairs:
            na, nb = meta.keypoint_names[a], meta.keypoint_names[b]
            assert na.replace("left", "right") == nb
    assert CROWDPOSE_META.iou_type == "keypoints_crowd" and not CROWDPOSE_META.use_area
    assert COCO_META.sigmas[0] == 0.026 and CROWDPOSE_META.sigmas[-1] == 0.079
    assert COCO_META.skeleton_sides[0] == "left"
    with pytest.raises(ValueError, match="unknown"):
        get_meta("mpii")


@pytest.mark.parametrize("field,value,match", [
    ("sigmas", (0.1,) * 3, "sigmas: has 3 values, expected 2"),
    ("flip_pairs", ((0, 5),), "flip_pairs: pair"),
    ("iou_type", "bbox", "iou_type"),
    ("joint_weights", (1.0, -1.0), "joint_weights: values"),
])
def test_meta_validation(field, value, match):
    kw = dict(name="x", keypoint_names=("left_a", "right_a"), flip_pairs=((0, 1),), sigmas=(0.1, 0.1),
              joint_weights=(1.0, 1.0), upper_body_ids=(0, 1), lower_body_ids=())
    kw[field] = value
    with pytest.raises(ValueError, match=match):
        DatasetMeta(**kw)


def test_meta_from_dict_infers_flip_pairs(tmp_path):
    f = tmp_path / "meta.json"
    f.write_text(json.dumps({"name": "hand", "keypoint_names": ["l_wrist", "r_wrist", "tip"], "sigmas": [0.1] * 3}))
    meta = hd.meta_from_dict(f)
    assert meta.flip_pairs == ((0, 1),) and meta.num_keypoints == 3
    with pytest.raises(ValueError, match="missing field 'sigmas'"):
        hd.meta_from_dict({"name": "x", "keypoint_names": ["a"]})


# ----------------------------------------------------------------------------- loading the samples
def test_load_coco_samples_gt_and_dets():
    coco = CocoKeypoints(COCO_SAMPLES / "test_coco.json", COCO_SAMPLES, COCO_META)
    gt = coco.gt_instances()
    assert len(coco.images) == 4 and len(coco.annotations) == 14
    assert len(gt) == 12 and coco.skipped == {"no labelled keypoint": 2}
    assert all(i.keypoints.shape == (17, 2) and i.visible.shape == (17,) for i in gt)
    dets = coco.det_instances(COCO_SAMPLES / "test_coco_det_AP_H_56.json")
    assert len(dets) == 118
    high = coco.det_instances(COCO_SAMPLES / "test_coco_det_AP_H_56.json", score_thr=0.5)
    assert len(high) == 18 and min(d.bbox_score for d in high) >= 0.5
    # boxes used as given (not clipped) for detections; GT boxes clipped to the image
    assert all((i.bbox[0] >= 0) and (i.bbox[0] + i.bbox[2] <= i.width - 1) for i in gt)


@pytest.mark.parametrize("name,ann,n", [("ochuman", OCHUMAN / "test_ochuman.json", 5),
                                         ("crowdpose", CROWDPOSE / "test_crowdpose.json", 4)])
def test_load_ochuman_crowdpose(name, ann, n):
    ds = build_dataset(name, ann.parent, "test", train=False, ann_file=ann, img_dir=ann.parent)
    assert len(ds) == n and ds.meta.name == name
    item = ds[0]
    assert item["img"].shape == (3, 256, 192) and item["target_weight"].shape == (ds.meta.num_keypoints,)
    if name == "crowdpose":
        assert ds.instances[0].crowd_index is not None


def test_build_dataset_coco_layout_train_item_contract():
    ds = build_dataset("coco", COCO_MINI, "train", train=True, seed=3)
    assert len(ds) == 86 and ds.ann_file.name == "person_keypoints_train2017.json"
    item = ds[0]
    assert item["img"].dtype == torch.float32 and item["img"].shape == (3, 256, 192)
    assert item["heatmaps"].shape == (17, 64, 48) and item["heatmaps"].dtype == torch.float32
    assert item["target_weight"].shape == (17,)
    assert item["center"].shape == (2,) and item["scale"].shape == (2,)
    assert isinstance(item["image_id"], int) and item["index"] == 0
    # normalised ImageNet RGB: roughly zero-mean, bounded
    assert -2.2 < float(item["img"].min()) and float(item["img"].max()) < 2.7
    batch = default_collate([ds[0], ds[1], ds[2]])
    assert batch["img"].shape == (3, 3, 256, 192) and batch["heatmaps"].shape == (3, 17, 64, 48)
    big = build_dataset("coco", COCO_MINI, "val2017", train=False, input_size=(384, 288))
    assert big[0]["img"].shape == (3, 384, 288) and big.codec.sigma == 3.0


def test_area_is_product_of_padded_aspect_fixed_scale():
    ds = build_dataset("coco", COCO_SAMPLES, "val", train=False, ann_file=COCO_SAMPLES / "test_coco.json",
                       img_dir=COCO_SAMPLES)
    inst = ds.instances[0]
    w, h = inst.bbox[2] * 1.25, inst.bbox[3] * 1.25
    w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
    assert ds[0]["area"] == pytest.approx(w * h)
    assert np.allclose(ds[0]["center"].numpy(), inst.bbox[:2] + inst.bbox[2:] / 2)


def test_generic_layout_with_det_file(tmp_path):
    """root/annotations/person_keypoints_<split>.json + root/<split>/ + detections/<split>_person_dets.json."""
    root = tmp_path / "mine"
    (root / "annotations").mkdir(parents=True)
    (root / "detections").mkdir()
    shutil.copytree(COCO_SAMPLES, root / "occluded", ignore=shutil.ignore_patterns("*.json"))
    shutil.copy(COCO_SAMPLES / "test_coco.json", root / "annotations" / "person_keypoints_occluded.json")
    shutil.copy(COCO_SAMPLES / "test_coco_det_AP_H_56.json", root / "detections" / "occluded_person_dets.json")
    ds = build_dataset("synthetic", root, "occluded", train=False)
    assert len(ds) == 12 and ds.meta.keypoint_names == COCO_META.keypoint_names
    dets = build_dataset("synthetic", root, "occluded", train=False, det_file="auto", det_score_thr=0.9)
    assert len(dets) == 14 and all(i.bbox_score >= 0.9 for i in dets.instances)
    with pytest.raises(ValueError, match="det_file is for evaluation"):
        build_dataset("synthetic", root, "occluded", train=True, det_file="auto")
    # `data check` finds the split and validates the optional detection file
    assert _cli(["data", "check", "synthetic", "--root", str(root)]) == 0
    (root / "detections" / "occluded_person_dets.json").write_text('[{"image_id": 785}]')
    assert _cli(["data", "check", "synthetic", "--root", str(root)]) == 1


# ----------------------------------------------------------------------------- bad input
def _write(tmp_path: Path, data, name="ann.json") -> Path:
    f = tmp_path / name
    f.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return f


def _base():
    return json.loads((COCO_SAMPLES / "test_coco.json").read_text())


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file .*nope.json: file not found"):
        CocoKeypoints(tmp_path / "nope.json", tmp_path, COCO_META)
    with pytest.raises(FileNotFoundError, match="data check coco"):
        build_dataset("coco", tmp_path, "val", train=False)


def test_invalid_json(tmp_path):
    f = _write(tmp_path, "{not json")
    with pytest.raises(AnnotationError, match="ann.json: not valid JSON"):
        CocoKeypoints(f, tmp_path, COCO_META)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("images"), "missing top-level field 'images'"),
    (lambda d: d["annotations"][3].__setitem__("keypoints", [1, 2, 2] * 14),
     r"annotation id \d+ \(annotations\[3\]\)\.keypoints: has 42 values, expected 51"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 999999), r"\.image_id: 999999 is not in 'images'"),
    (lambda d: d["annotations"][1].__setitem__("id", d["annotations"][0]["id"]), "duplicate annotation id"),
    (lambda d: d["annotations"][0].pop("bbox"), "annotations\\[0\\]: missing field 'bbox'"),
    (lambda d: d["annotations"][0].__setitem__("bbox", [1, 2, 3]), r"\.bbox: must be \[x, y, w, h\]"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(4, "x"), r"\.keypoints\[4\]: 'x' is not a finite number"),
    # issue 15: never coerce, never overflow, never crash on an unhashable id, never leave the root
    (lambda d: d["annotations"][0]["bbox"].__setitem__(0, "12"), r"\.bbox\[0\]: '12' is not a finite number"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(2, 1e300), r"\.bbox\[2\]: 1e\+300 is not a finite number "
                                                                   r"within float32 range"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, True), r"\.keypoints\[0\]: True is not a finite"),
    (lambda d: d["annotations"][0].__setitem__("id", [1]), r"annotations\[0\]\.id: \[1\] is not an integer"),
    (lambda d: d["annotations"][0].__setitem__("image_id", {"a": 1}), r"\.image_id: \{'a': 1\} is not an integer"),
    (lambda d: d["images"][0].__setitem__("id", 785.7), r"images\[0\]\.id: 785\.7 is not an integer"),
    (lambda d: d["images"][0].__setitem__("file_name", 5), r"images\[0\]\.file_name: 5 is not a file name"),
    (lambda d: d["images"][0].__setitem__("file_name", "../../../etc/hostname"),
     r"images\[0\]\.file_name: '\.\./\.\./\.\./etc/hostname' points outside"),
    (lambda d: d["images"][0].__setitem__("file_name", "/etc/hostname"), "points outside"),
    (lambda d: d.pop("categories"), "missing top-level field 'categories'"),
    (lambda d: d.__setitem__("categories", []), "'categories' is empty"),
    (lambda d: d["annotations"][0].__setitem__("area", -5.0), r"\.area: -5\.0 is negative"),
    (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id"),
    (lambda d: d["images"][0].pop("width"), r"images\[0\]: missing field 'width'"),
])
def test_malformed_annotations_are_named(tmp_path, mutate, match):
    d = _base()
    mutate(d)
    f = _write(tmp_path, d)
    with pytest.raises(AnnotationError, match=match):
        CocoKeypoints(f, COCO_SAMPLES, COCO_META)


def test_wrong_keypoint_count_for_dataset():
    with pytest.raises(AnnotationError, match="expected 42 .*14 keypoints.*'crowdpose'"):
        CocoKeypoints(COCO_SAMPLES / "test_coco.json", COCO_SAMPLES, CROWDPOSE_META)


def test_skips_are_counted_and_logged(tmp_path, caplog):
    d = _base()
    d["annotations"][0]["iscrowd"] = 1
    d["annotations"][1]["bbox"] = [5000, 5000, 10, 10]  # outside the image: empty after clipping
    f = _write(tmp_path, d)
    coco = CocoKeypoints(f, COCO_SAMPLES, COCO_META)
    with caplog.at_level("INFO", logger="harness.data.coco"):
        gt = coco.gt_instances()
    assert len(gt) == 10
    assert coco.skipped == {"crowd region": 1, "empty box after clipping to the image": 1, "no labelled keypoint": 2}
    assert "skipped 1 crowd region, 1 empty box after clipping to the image, 2 no labelled keypoint" in caplog.text


@pytest.mark.parametrize("dets,match", [
    ("[1, 2", "detection file .*: not valid JSON"),
    ({"a": 1}, "must be a list of detections"),
    ([{"image_id": 785, "bbox": [1, 2, 3, 4]}], r"entry 0: missing field 'score'"),
    ([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}], r"entry 0\.image_id: 1 is not in"),
    ([{"image_id": 785, "category_id": 1, "bbox": [1, 2], "score": 0.9}], r"entry 0\.bbox: must be"),
])
def test_bad_detection_file(tmp_path, dets, match):
    coco = CocoKeypoints(COCO_SAMPLES / "test_coco.json", COCO_SAMPLES, COCO_META)
    f = _write(tmp_path, dets, "dets.json")
    with pytest.raises(AnnotationError, match=match):
        coco.det_instances(f)


def test_detection_filtering_counts(tmp_path):
    coco = CocoKeypoints(COCO_SAMPLES / "test_coco.json", COCO_SAMPLES, COCO_META)
    f = _write(tmp_path, [{"image_id": 785, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.9},
                          {"image_id": 785, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.1},
                          {"image_id": 785, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.6}], "dets.json")
    assert len(coco.det_instances(f, 0.5)) == 1
    assert coco.skipped["not a person"] == 1 and coco.skipped["score < 0.5"] == 1


def _image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    shutil.copytree(COCO_SAMPLES, d, ignore=shutil.ignore_patterns("*.json"))
    return d


def test_missing_and_corrupt_images(tmp_path):
    d = _image_dir(tmp_path)
    ds = build_dataset("coco", d, "val", train=False, ann_file=COCO_SAMPLES / "test_coco.json", img_dir=d)
    victim = ds.instances[0].file
    raw = victim.read_bytes()
    victim.unlink()
    with pytest.raises(ImageError, match=f"image {victim}: file not found"):
        ds[0]
    victim.write_bytes(raw[: len(raw) // 2])  # truncated JPEG
    with pytest.raises(ImageError, match="truncated JPEG"):
        ds[0]
    victim.write_bytes(b"\xff\xd8garbage" * 10 + b"\xff\xd9")  # corrupt JPEG
    with pytest.raises(ImageError, match="cannot decode"):
        ds[0]
    victim.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        ds[0]


def test_image_size_disagreeing_with_annotation(tmp_path):
    img = load_image(COCO_SAMPLES / "000000000785.jpg")
    with pytest.raises(ImageError, match="disagrees with the annotation file"):
        load_image(COCO_SAMPLES / "000000000785.jpg", expect_hw=(img.shape[0] + 1, img.shape[1]))


# ----------------------------------------------------------------------------- check_layout / CLI
def test_check_layout_reports_missing_and_corrupt(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(COCO_SAMPLES / "test_coco.json", root / "annotations" / "person_keypoints_val2017.json")
    d = _image_dir(tmp_path)
    shutil.move(str(d), root / "val2017")
    (root / "val2017" / "000000000785.jpg").unlink()
    p = root / "val2017" / "000000040083.jpg"
    p.write_bytes(p.read_bytes()[:5000])
    rep = check_layout("coco", root, "val", COCO_META)
    assert not rep.ok and rep.num_images == 4 and rep.num_instances == 12
    assert rep.missing_images == [str(root / "val2017" / "000000000785.jpg")]
    assert len(rep.corrupt_images) == 1 and "truncated JPEG" in rep.corrupt_images[0]
    assert any("1 of 4 images missing" in p for p in rep.problems)
    assert "cocodataset.org" in rep.where_to_get
    rep = check_layout("coco", root, "train", COCO_META)
    assert not rep.ok and any("missing annotation file" in p for p in rep.problems)


def _cli(argv: list[str]) -> int:
    from harness.commands import data as data_cmd

    parser = argparse.ArgumentParser()
    data_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_data_check(tmp_path, capsys):
    assert _cli(["data", "check", "coco", "--root", str(COCO_MINI), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "[coco/train] OK" in out and "86 usable person instances" in out and "[coco/val] OK" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [r["split"] for r in rep] == ["train", "val"] and all(r["ok"] for r in rep)
    assert _cli(["data", "check", "crowdpose", "--root", str(tmp_path / "none"), "--split", "test"]) == 1
    out = capsys.readouterr().out
    assert "missing annotation file" in out and "mmpose_crowdpose_test.json" in out and "where to get it" in out
    assert _cli(["data", "check", "ochuman", "--root", str(OCHUMAN), "--split", "val", "--ann-file",
                 str(OCHUMAN / "test_ochuman.json"), "--decode"]) == 0


def test_cli_registered_in_harness_main():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness", "data", "check", "coco", "--root", str(COCO_MINI),
                           "--split", "val"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[coco/val] OK" in proc.stdout


def test_standard_layouts(tmp_path):
    from harness.data.layout import resolve_layout

    lay = resolve_layout("coco", tmp_path, "val")
    assert lay.ann_file == tmp_path / "annotations" / "person_keypoints_val2017.json"
    assert lay.img_dir == tmp_path / "val2017" and lay.det_file is None
    lay = resolve_layout("ochuman", tmp_path, "test")
    assert lay.ann_file.name == "ochuman_coco_format_test_range_0.00_1.00.json" and lay.img_dir.name == "images"
    lay = resolve_layout("crowdpose", tmp_path, "test")
    assert lay.ann_file.name == "mmpose_crowdpose_test.json"
    with pytest.raises(FileNotFoundError, match="COCO_val2017_detections_AP_H_56_person.json"):
        resolve_layout("coco", tmp_path, "val", det_file="auto")
