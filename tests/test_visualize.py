"""Qualitative figure: grid geometry, what is drawn where, sources (RAW.json, checkpoints) and bad input."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from harness.data.metainfo import COCO_META
from harness.visualize import (HEADER_H, LEGEND_H, SIDE_COLORS, VisualizeError, _letterbox, draw_poses,
                               load_raw_predictions, make_comparison, predict_images)

pytestmark = pytest.mark.usefixtures("one_thread")


K = 17
# A standing person in a 200x160 image (x, y per COCO keypoint).
PERSON = np.array([[80, 30], [85, 25], [75, 25], [92, 28], [68, 28], [100, 55], [60, 55], [110, 85], [50, 85],
                   [115, 115], [45, 115], [92, 115], [68, 115], [95, 150], [65, 150], [97, 185], [63, 185]],
                  np.float32)


def cli_main(argv: list[str]) -> int:
    """``python -m harness visualize ...`` through the CLI's entry point (its one error path)."""
    from harness.cli import main

    return main(argv)


def _image(seed: int) -> np.ndarray:
    # Smooth, mid-grey: nothing in it looks like a drawn skeleton colour.
    rng = np.random.default_rng(seed)
    img = np.full((200, 160, 3), 110, np.uint8)
    img += rng.integers(0, 20, size=(200, 160, 1), dtype=np.uint8)
    return img


def _raw(image_id: int, kps: np.ndarray, score: float) -> dict:
    return {"image_id": image_id, "category_id": 1, "bbox": [40, 20, 80, 170], "bbox_score": 1.0, "area": 13600.0,
            "keypoints": kps.tolist(), "keypoint_scores": [score] * K}


@pytest.fixture
def two_images(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), _image(i))
        paths.append((100 + i, p))
    return paths


def test_grid_size_and_skeleton_pixels(tmp_path, two_images):
    preds = {"hrnet-demo": [_raw(100, PERSON, 0.9), _raw(101, PERSON + 3, 0.8)],
             "hrnext-demo": [_raw(100, PERSON + [5, 0], 0.95)],  # nothing for image 101
             "hrformer-demo": [_raw(100, PERSON, 0.05), _raw(101, PERSON, 0.05)]}  # all under kpt_thr
    out = tmp_path / "fig" / "q.png"
    info = make_comparison(two_images, preds, out, COCO_META, cell_height=240, dim=0.0)
    img = cv2.imread(str(out))
    assert img is not None and out.is_file()
    cell_h, cell_w = info.cell_hw
    assert (cell_h, cell_w) == (240, 192)  # 200x160 scaled by 1.2
    assert img.shape == (HEADER_H + 2 * cell_h + LEGEND_H, 3 * cell_w, 3) == (*info.size_hw, 3)
    assert info.models == list(preds) and info.image_ids == [100, 101]
    assert info.drawn == {"hrnet-demo": 2, "hrnext-demo": 1, "hrformer-demo": 0}

    def cell(r, c):
        y0 = HEADER_H + r * cell_h
        return img[y0:y0 + cell_h, c * cell_w:(c + 1) * cell_w].astype(int)

    raw0, s, (x0, y0) = _letterbox(_image(0), (cell_h, cell_w))
    raw1, _, _ = _letterbox(_image(1), (cell_h, cell_w))
    inner = (slice(2, -2), slice(2, -2))  # skip the 1-px cell border
    # Skeleton drawn: pixels at the keypoints differ from the raw image; a corner far from the person does not.
    a = cell(0, 0)
    for x, y in PERSON[[0, 9, 15]] * s + [x0, y0]:
        assert np.abs(a[int(round(y)), int(round(x))] - raw0[int(round(y)), int(round(x))]).sum() > 60
    assert np.array_equal(a[5:25, 5:25], raw0[5:25, 5:25].astype(int))
    changed = (np.abs(a - raw0).sum(-1) > 30)[inner].mean()
    assert 0.01 < changed < 0.4
    # Low-confidence model and a missing image: cell left as the raw image.
    assert np.array_equal(cell(0, 2)[inner], raw0[inner].astype(int))
    assert np.array_equal(cell(1, 1)[inner], raw1[inner].astype(int))
    # Limbs coloured by side: the middle of the left forearm (7 -> 9) is the "left" colour, right forearm "right".
    for (i, j), side in (((7, 9), "left"), ((8, 10), "right")):
        mx, my = ((PERSON[i] + PERSON[j]) / 2) * s + [x0, y0]
        px = a[int(round(my)), int(round(mx))]
        assert np.abs(px - np.array(SIDE_COLORS[side])).max() <= 40, (side, px)


def test_draw_poses_confidence_colour_and_threshold():
    img = _image(3)
    lo = draw_poses(img, [{"keypoints": PERSON.tolist(), "keypoint_scores": [0.35] * K}], COCO_META)
    hi = draw_poses(img, {"keypoints": PERSON[None], "keypoint_scores": np.full((1, K), 1.0)}, COCO_META)
    x, y = PERSON[0].astype(int)
    assert not np.array_equal(lo[y, x], hi[y, x])  # the colormap maps confidence to colour
    none = draw_poses(img, [{"keypoints": PERSON.tolist(), "keypoint_scores": [0.1] * K}], COCO_META)
    assert np.array_equal(none, img)
    assert np.array_equal(img, _image(3))  # input untouched
    with pytest.raises(VisualizeError, match=r"\(N, 17, 2\)"):
        draw_poses(img, [{"keypoints": PERSON[:5].tolist(), "keypoint_scores": [1.0] * 5}], COCO_META)
    with pytest.raises(VisualizeError, match="image"):
        draw_poses(img.astype(np.float32), [], COCO_META)


def test_bad_inputs_are_named(tmp_path, two_images):
    with pytest.raises(VisualizeError, match="not found"):
        load_raw_predictions(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VisualizeError, match="bad.json.*not valid JSON"):
        load_raw_predictions(bad)
    wrong_k = tmp_path / "wrong_k.json"
    wrong_k.write_text(json.dumps([{**_raw(100, PERSON[:13], 0.9), "keypoint_scores": [0.9] * 13}]))
    with pytest.raises(VisualizeError, match="wrong_k.json.*13 keypoints"):
        load_raw_predictions(wrong_k)
    with pytest.raises(VisualizeError, match="no models"):
        make_comparison(two_images, {}, tmp_path / "x.png")
    with pytest.raises(VisualizeError, match="image .*missing.png"):
        make_comparison([(1, tmp_path / "missing.png")], {"m": []}, tmp_path / "x.png")
    with pytest.raises(VisualizeError, match="image_id"):
        make_comparison(two_images, {"m": [{"keypoints": []}]}, tmp_path / "x.png")


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from harness.data.synthetic import SynthConfig, ensure_synthetic

    root = tmp_path_factory.mktemp("synth")
    ensure_synthetic(root, SynthConfig(image_size=(128, 128), num_images={"train": 0, "val": 0, "occluded": 3}),
                     progress=False)
    return root


def test_cli_from_saved_predictions_and_checkpoint(tmp_path, tiny_synth):
    from harness.data import build_dataset

    ds = build_dataset("synthetic", tiny_synth, "occluded", input_size=(64, 48), train=False)
    # "Saved predictions": the GT keypoints of every person as a perfect model would give them.
    raw = [_raw(int(i.image_id), i.keypoints, 0.9) for i in ds.instances]
    pfile = tmp_path / "RAW.json"
    pfile.write_text(json.dumps(raw))
    # A checkpoint of an untrained demo model (weights file; any layout load_weights detects).
    ckpt = tmp_path / "hrnet.pth"
    torch.save(__import__("harness").create_pose_model("hrnet-demo").state_dict(), ckpt)
    out = tmp_path / "q.png"
    rc = cli_main(["visualize", "--data", "synthetic", "--root", str(tiny_synth), "--images", "2",
                   "--preds", f"hrnet-demo={pfile}", "--checkpoint", f"hrnet-demo={ckpt}", "--input-size", "64x48",
                   "--no-flip", "--cell-height", "128", "--out", str(out)])
    assert rc == 0
    img = cv2.imread(str(out))
    assert img.shape == (HEADER_H + 2 * 128 + LEGEND_H, 2 * 128, 3)
    # The checkpoint path really predicts: image-pixel keypoints, one prediction per GT person.
    ids = sorted({i.image_id for i in ds.instances})[:1]
    preds = predict_images("hrnet-demo", ckpt, ds, ids, flip_test=False)
    assert len(preds) == sum(i.image_id == ids[0] for i in ds.instances)
    kp = np.array([p["keypoints"] for p in preds])
    # Untrained heatmaps peak anywhere in the padded crop, which may reach past the 128x128 image.
    assert kp.shape[1:] == (K, 2) and np.isfinite(kp).all() and (kp > -64).all() and (kp < 192).all()


def test_cli_errors(tmp_path, tiny_synth, capsys):
    base = ["visualize", "--root", str(tiny_synth), "--out", str(tmp_path / "q.png")]
    assert cli_main(base + ["--preds", "nonsense"]) == 2
    assert "MODEL=PATH" in capsys.readouterr().err
    assert cli_main(base + ["--preds", f"hrnet-demo={tmp_path / 'none.json'}"]) == 2
    assert "none.json: not found" in capsys.readouterr().err
    assert cli_main(base + ["--checkpoint", f"hrnet-demo={tmp_path / 'none.pth'}", "--input-size", "64x48"]) == 2
    assert "none.pth" in capsys.readouterr().err
    assert cli_main(base + ["--checkpoint", f"resnet-50={tmp_path / 'none.pth'}", "--input-size", "64x48"]) == 2
    assert "resnet-50" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps([_raw(42, PERSON, 0.9)]))
    assert cli_main(base + ["--preds", f"hrnet-demo={other}"]) == 2
    assert "none of its 1 image ids" in capsys.readouterr().err
    assert not (tmp_path / "q.png").exists()
