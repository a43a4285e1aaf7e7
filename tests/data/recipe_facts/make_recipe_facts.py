"""Read the recipe facts of each source from its repository and write ``<source>.json`` (run by hand).

    python tests/data/recipe_facts/make_recipe_facts.py [--mirrors /work/.mirror]

Every fact is found in the source's own files at a fixed commit (a git mirror per repository,
``<mirrors>/<owner>+<name>/repo``): a regular expression must match a line, the value is parsed from
that line, and file, line number and text are stored next to it. Facts are in hrbench's vocabulary
(``optim.lr``, ``augment.rot_factor``, ...); where a value combines two lines (a batch size is images per
GPU x GPUs) both are cited. ``tests/test_recipes.py`` compares every registered experiment of a recipe
with these files field by field. Nothing here is imported by the project or the tests.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent

HRNET = ("leoxiaobin/deep-high-resolution-net.pytorch", "6f69e4676ad8d43d0d61b64b1b9726f0c369e7b1")
HRFORMER = ("HRNet/HRFormer", "1245b88b5824fbd8cdb358b5ee909a4e537a2ef5")
HRNEXT = ("ZiyiZhang27/HRNeXt", "8bbbb0f3067cde4ea2eb0238487da4090522b093")
MMPOSE1 = ("open-mmlab/mmpose", "5408bc76f5b848cf925a0d1857899011d8c5b497")  # v1.3.2
MMPOSE0_23 = ("open-mmlab/mmpose", "4b4822c5d0b94a9dd9a2c63893d0a505892181c8")  # v0.23.0 (HRNeXt requirements)

SIZES = {"256x192": (256, 192), "384x288": (384, 288)}


class Repo:
    def __init__(self, mirrors: Path, repo: tuple[str, str]):
        self.name, self.commit = repo
        self.git = mirrors / self.name.replace("/", "+") / "repo"
        self._cache: dict[str, list[str]] = {}

    def lines(self, path: str) -> list[str]:
        if path not in self._cache:
            text = subprocess.run(["git", "--git-dir", str(self.git), "show", f"{self.commit}:{path}"],
                                  check=True, capture_output=True, text=True).stdout
            self._cache[path] = text.splitlines()
        return self._cache[path]

    def cite(self, path: str, pattern: str, after: str | None = None) -> tuple[dict, re.Match]:
        """The first line of ``path`` matching ``pattern`` (after the first line matching ``after``)."""
        lines = self.lines(path)
        start = 0
        if after is not None:
            start = next(i for i, l in enumerate(lines) if re.search(after, l)) + 1
        for i in range(start, len(lines)):
            m = re.search(pattern, lines[i])
            if m:
                where = {"file": path, "line": i + 1, "text": lines[i].strip()}
                if self.name != getattr(self, "_owner", self.name):
                    where["repo"] = self.name
                return where, m
        raise LookupError(f"{self.name}@{self.commit[:7]}:{path}: no line matches {pattern!r}")


def fact(value, *cites: dict) -> dict:
    """``{"value": v, "from": ["[repo:]file:line: text", ...]}``."""
    return {"value": value, "from": [f"{c['repo'] + ':' if 'repo' in c else ''}{c['file']}:{c['line']}: {c['text']}"
                                     for c in cites]}


def read(repo: Repo, path: str, pattern: str, conv=lambda m: m.group(1), after: str | None = None):
    where, m = repo.cite(path, pattern, after)
    return conv(m), where


def num(m):
    return float(m.group(1))


def ints(m):
    return [int(x) for x in re.findall(r"\d+", m.group(1))]


def hw_from_wh(m):
    w, h = ints(m)
    return [h, w]


# ------------------------------------------------------------------------------------------- HRNet authors
def hrnet_authors(mirrors: Path) -> dict:
    r = Repo(mirrors, HRNET)
    configs = []
    for width in ("32", "48"):
        for size in SIZES:
            path = f"experiments/coco/hrnet/w{width}_{size}_adam_lr1e-3.yaml"
            f: dict = {}
            hw, c = read(r, path, r"IMAGE_SIZE:", lambda m: None)
            w_, cw = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after="IMAGE_SIZE")
            h_, ch = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after=r"^\s*- " + str(w_) + "$")
            f["data.input_size"] = fact([h_, w_], cw, ch)
            hm_w, cw = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after="HEATMAP_SIZE")
            hm_h, ch = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after=r"^\s*- " + str(hm_w) + "$")
            f["codec.heatmap_size"] = fact([hm_h, hm_w], cw, ch)
            v, c = read(r, path, r"SIGMA: (\d+)", num)
            f["data.sigma"] = fact(v, c)
            # lib/dataset/JointsDataset.py: the augmentation code; the yaml gives its factors.
            jd = "lib/dataset/JointsDataset.py"
            _, c1 = read(r, jd, r"(np\.clip\(np\.random\.randn\(\)\*sf \+ 1, 1 - sf, 1 \+ sf\))")
            f["augment.convention"] = fact("mmpose0x", c1, read(r, jd, r"(np\.clip\(np\.random\.randn\(\)\*rf, -rf\*2, rf\*2\))")[1])
            v, c = read(r, path, r"SCALE_FACTOR: ([0-9.]+)", num)
            f["augment.scale_factor"] = fact(v, c)
            v, c = read(r, path, r"ROT_FACTOR: ([0-9.]+)", num)
            f["augment.rot_factor"] = fact(v, c)
            v, c = read(r, jd, r"if random\.random\(\) <= ([0-9.]+) else 0", num)
            f["augment.rot_prob"] = fact(v, c)
            v, c = read(r, jd, r"if self\.flip and random\.random\(\) <= ([0-9.]+)", num)
            f["augment.flip_prob"] = fact(v, c)
            v, c = read(r, path, r"NUM_JOINTS_HALF_BODY: (\d+)", lambda m: int(m.group(1)))
            f["augment.half_body_min_kpts"] = fact(v, c, read(r, jd, r"(np\.sum\(joints_vis\[:, 0\]\) > self\.num_joints_half_body)")[1])
            v, c = read(r, path, r"PROB_HALF_BODY: ([0-9.]+)", num)
            f["augment.half_body_prob"] = fact(v, c)
            v, c = read(r, jd, r"scale = scale \* ([0-9.]+)", num)
            f["augment.half_body_padding"] = fact(v, c)
            # lib/dataset/coco.py _box2cs: centre = box centre, no random shift.
            _, c = read(r, "lib/dataset/coco.py", r"(center\[0\] = x \+ w \* 0\.5)")
            f["augment.shift_mode"] = fact("none", c)
            v, c = read(r, path, r"OPTIMIZER: (\w+)")
            f["optim.name"] = fact(v, c)
            v, c = read(r, path, r"^\s*LR: ([0-9.e-]+)", num)
            f["optim.lr"] = fact(v, c)
            _, c = read(r, "lib/utils/utils.py", r"(optimizer = optim\.Adam\()")
            _, c2 = read(r, "lib/utils/utils.py", r"(lr=cfg\.TRAIN\.LR$)", after=r"optim\.Adam\(")
            f["optim.weight_decay"] = fact(0.0, c, c2)  # Adam(params, lr) only: WD is passed to SGD alone
            f["optim.betas"] = fact([0.9, 0.999], c)  # torch.optim.Adam's defaults
            f["optim.no_decay_keys"] = fact([], c)
            _, c = read(r, "tools/train.py", r"(torch\.optim\.lr_scheduler\.MultiStepLR\()")
            f["sched.name"] = fact("multistep", c)
            f["sched.warmup_iters"] = fact(0, c)
            m1, c1 = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after="LR_STEP")
            m2, c2 = read(r, path, r"^\s*- (\d+)", lambda m: int(m.group(1)), after=r"^\s*- " + str(m1) + "$")
            f["sched.milestones"] = fact([m1, m2], c1, c2)
            v, c = read(r, path, r"LR_FACTOR: ([0-9.]+)", num)
            f["sched.gamma"] = fact(v, c)
            v, c = read(r, path, r"END_EPOCH: (\d+)", lambda m: int(m.group(1)))
            f["train.epochs"] = fact(v, c)
            per_gpu, c1 = read(r, path, r"BATCH_SIZE_PER_GPU: (\d+)", lambda m: int(m.group(1)), after="^TRAIN:")
            gpus, c2 = read(r, path, r"GPUS: \(([\d,]+)\)", lambda m: len(ints(m)))
            f["train.batch_size"] = fact(per_gpu * gpus, c1, c2)
            _, c = read(r, "tools/train.py", r"(torch\.nn\.DataParallel\()")
            f["train.sync_bn"] = fact(False, c)
            f["train.amp"] = fact("none", c)
            f["train.clip_grad"] = fact(None, read(r, "lib/core/function.py", r"(optimizer\.step\(\))")[1])
            v, c = read(r, path, r"PRETRAINED: '(.+)'")
            f["init.pretrain"] = fact("imagenet", read(r, path, r"INIT_WEIGHTS: (true)")[1])
            f["init.weights"] = fact(Path(v).name, c)
            # Checkpoint selection: validate every epoch, keep the best by AP (tools/train.py), on val2017
            # with ground-truth boxes (the yaml's TEST.USE_GT_BBOX; the README tests with detections).
            _, c1 = read(r, "tools/train.py", r"(perf_indicator = validate\()")
            _, c2 = read(r, "tools/train.py", r"(if perf_indicator >= best_perf:)")
            f["train.val_interval"] = fact(1, c1)
            f["select.metric"] = fact("AP", c2, read(r, "lib/dataset/coco.py", r"(return name_value, name_value\['AP'\])")[1])
            f["train.ckpt_interval"] = fact(1, read(r, "tools/train.py", r"(save_checkpoint\(\{)")[1])
            v, c = read(r, path, r"TEST_SET: '(\w+)'")
            f["data.val_dataset"] = fact("coco", c)
            f["data.val_split"] = fact("val", c)
            v, c = read(r, path, r"USE_GT_BBOX: (true)")
            f["data.val_boxes"] = fact("gt", c)
            v, c = read(r, "README.md", r"(TEST\.USE_GT_BBOX False)")
            f["eval.boxes"] = fact("det", c, read(r, path, r"COCO_BBOX_FILE: '(.+)'")[1])
            v, c = read(r, path, r"FLIP_TEST: (true)")
            f["eval.flip_test"] = fact(True, c)
            v, c = read(r, path, r"SHIFT_HEATMAP: (true)")
            f["eval.shift_heatmap"] = fact(True, c)
            v, c = read(r, path, r"IN_VIS_THRE: ([0-9.]+)", num)
            f["eval.keypoint_score_thr"] = fact(v, c)
            v, c = read(r, path, r"OKS_THRE: ([0-9.]+)", num)
            f["eval.nms_thr"] = fact(v, c)
            v, c = read(r, path, r"IMAGE_THRE: ([0-9.]+)", num)
            f["eval.det_score_thr"] = fact(v, c)
            configs.append({"config": path, "facts": f})
    return {"source": {"repo": r.name, "commit": r.commit}, "configs": configs}


# ------------------------------------------------------------------------------------------- mmpose 0.x style
def mmcv0x_facts(r: Repo, path: str, f: dict, pipeline_repo: Repo, pipeline_file: str, dataset_file: str) -> None:
    """Facts common to the mmpose-0.x configs of the HRFormer and HRNeXt authors."""
    f["data.input_size"] = fact(*read(r, path, r"image_size=\[(\d+, \d+)\]", hw_from_wh))
    f["codec.heatmap_size"] = fact(*read(r, path, r"heatmap_size=\[(\d+, \d+)\]", hw_from_wh))
    f["data.sigma"] = fact(*read(r, path, r"TopDownGenerateTarget', sigma=(\d+)", num))
    f["augment.convention"] = fact("mmpose0x", read(r, path, r"(TopDownGetRandomScaleRotation)")[1],
                                   pipeline_repo.cite(pipeline_file, r"np\.clip\(np\.random\.randn\(\) \* sf \+ 1")[0])
    f["augment.flip_prob"] = fact(*read(r, path, r"TopDownRandomFlip', flip_prob=([0-9.]+)", num))
    f["augment.half_body_min_kpts"] = fact(*read(r, path, r"num_joints_half_body=(\d+)", lambda m: int(m.group(1))))
    f["augment.half_body_prob"] = fact(*read(r, path, r"prob_half_body=([0-9.]+)", num))
    f["augment.half_body_padding"] = fact(*read(pipeline_repo, pipeline_file, r"scale = scale \* ([0-9.]+)", num))
    f["augment.scale_factor"] = fact(*read(r, path, r"scale_factor=([0-9.]+)", num))
    f["augment.rot_factor"] = fact(*read(r, path, r"rot_factor=([0-9.]+)", num))
    f["augment.rot_prob"] = fact(*read(pipeline_repo, pipeline_file, r"rot_factor=40, scale_factor=0\.5, rot_prob=([0-9.]+)", num))
    w1 = pipeline_repo.cite(dataset_file, r"if \(not self\.test_mode\) and np\.random\.rand\(\) < 0\.3:")[0]
    w2 = pipeline_repo.cite(dataset_file, r"center \+= 0\.4 \* \(np\.random\.rand\(2\) - 0\.5\) \* \[w, h\]")[0]
    f["augment.shift_mode"] = fact("per_instance", w1, w2)
    f["augment.shift_prob"] = fact(0.3, w1)
    f["augment.shift_factor"] = fact(0.2, w2)  # 0.4 * (U(0,1) - 0.5) = 0.2 * U(-1, 1)
    f["optim.name"] = fact(*read(r, path, r"type='(AdamW)'", lambda m: m.group(1).lower()))
    f["optim.lr"] = fact(*read(r, path, r"^\s*lr=([0-9.e-]+)", num))
    f["optim.betas"] = fact(*read(r, path, r"betas=\(([0-9., ]+)\)", lambda m: [float(x) for x in m.group(1).split(",")]))
    f["optim.weight_decay"] = fact(*read(r, path, r"^\s*weight_decay=([0-9.]+)", num))
    f["optim.no_decay_keys"] = fact(*read(r, path, r"custom_keys=\{'(\w+)': dict\(decay_mult=0\.\)", lambda m: [m.group(1)]))
    f["train.clip_grad"] = fact(*read(r, path, r"optimizer_config = dict\(grad_clip=(None)\)", lambda m: None))
    f["sched.warmup_iters"] = fact(*read(r, path, r"warmup_iters=(\d+)", lambda m: int(m.group(1))))
    f["sched.warmup_ratio"] = fact(*read(r, path, r"warmup_ratio=([0-9.]+)", num))
    f["train.epochs"] = fact(*read(r, path, r"total_epochs = (\d+)", lambda m: int(m.group(1))))
    f["train.sync_bn"] = fact(*read(r, path, r"norm_cfg\s*=\s*dict\(type='(SyncBN)'", lambda m: True))
    f["model.drop_path_rate"] = fact(*read(r, path, r"drop_path_rate=([0-9.]+)", num))
    f["train.val_interval"] = fact(*read(r, path, r"evaluation = dict\(interval=(\d+)", lambda m: int(m.group(1))))
    f["select.metric"] = fact(*read(r, path, r"(?:save_best|key_indicator)='(AP)'"))
    f["train.ckpt_interval"] = fact(*read(r, path, r"checkpoint_config = dict\(interval=(\d+)", lambda m: int(m.group(1))))
    f["eval.flip_test"] = fact(*read(r, path, r"flip_test=(True)", lambda m: True))
    f["eval.shift_heatmap"] = fact(*read(r, path, r"shift_heatmap=(True)", lambda m: True))
    f["eval.keypoint_score_thr"] = fact(*read(r, path, r"vis_thr=([0-9.]+)", num))
    f["eval.nms_thr"] = fact(*read(r, path, r"oks_thr=([0-9.]+)", num))
    f["eval.det_score_thr"] = fact(*read(r, path, r"det_bbox_thr=([0-9.]+)", num))


def _val_set(r: Repo, path: str, f: dict) -> None:
    names = {"TopDownCocoDataset": "coco", "TopDownOCHumanDataset": "ochuman", "TopDownCrowdPoseDataset": "crowdpose"}
    ds, c1 = read(r, path, r"type='(TopDown\w+Dataset)'", lambda m: names[m.group(1)], after=r"^\s*val=dict\(")
    split, c2 = read(r, path, r"ann_file=.*(val2017|_val_|_test)", lambda m: {"val2017": "val", "_val_": "val",
                                                                            "_test": "test"}[m.group(1)],
                     after=r"^\s*val=dict\(")
    gt, c3 = read(r, path, r"use_gt_bbox=(True|False)", lambda m: m.group(1) == "True")
    f["data.val_dataset"] = fact(ds, c1)
    f["data.val_split"] = fact(split, c2)
    f["data.val_boxes"] = fact("gt" if gt else "det", c3)
    f["eval.boxes"] = fact("gt" if gt else "det", c3)


def hrformer_authors(mirrors: Path) -> dict:
    r = Repo(mirrors, HRFORMER)
    configs = []
    gpus, cg = read(r, "pose/run_dist.sh", r"CUDA_VISIBLE_DEVICES=([\d,]+) ", lambda m: len(ints(m)))
    for size_name in ("small", "base"):
        for size in SIZES:
            path = f"pose/configs/top_down/hrt/coco/hrt_{size_name}_coco_{size}.py"
            f: dict = {}
            mmcv0x_facts(r, path, f, r, "pose/mmpose/datasets/pipelines/top_down_transform.py",
                         "pose/mmpose/datasets/datasets/top_down/topdown_coco_dataset.py")
            f["sched.name"] = fact(*read(r, path, r"policy='(step)'", lambda m: "multistep"))
            f["sched.milestones"] = fact(*read(r, path, r"step=\[([\d, ]+)\]", ints))
            f["sched.gamma"] = fact(0.1, read(r, path, r"policy='(step)'")[1])  # mmcv StepLrUpdaterHook gamma default
            per_gpu, c = read(r, path, r"samples_per_gpu=(\d+)", lambda m: int(m.group(1)))
            f["train.batch_size"] = fact(per_gpu * gpus, c, cg)
            f["train.amp"] = fact(*read(r, path, r"fp16 = dict\(loss_scale='(dynamic)'\)", lambda m: "fp16"))
            f["train.grad_checkpoint"] = fact(False, read(r, path, r"(type='HRT')")[1])
            f["init.pretrain"] = fact("imagenet", read(r, path, r"pretrained='(.+?)'")[1])
            # The authors' placeholder names their ImageNet files hrt_small.pth / hrt_base.pth (the 384x288
            # small config says hrt_base.pth, a slip the registry notes and departs from).
            f["init.weights"] = fact(*read(r, path, r"pretrained='(.+?)'", lambda m: Path(m.group(1)).name))
            _val_set(r, path, f)
            configs.append({"config": path, "facts": f})
    return {"source": {"repo": r.name, "commit": r.commit}, "configs": configs}


def hrnext_authors(mirrors: Path) -> dict:
    r = Repo(mirrors, HRNEXT)
    mm = Repo(mirrors, MMPOSE0_23)
    mm._owner = HRNEXT[0]
    gpus, cg = read(r, "README.md", r"dist_train\.sh configs/coco/hrnext_small_coco_256x192\.py (\d+)",
                    lambda m: int(m.group(1)))
    configs = []
    for dataset in ("coco", "ochuman", "crowdpose"):
        for size_name in ("small", "base"):
            for size in SIZES:
                path = f"configs/{dataset}/hrnext_{size_name}_{dataset}_{size}.py"
                f: dict = {}
                mmcv0x_facts(r, path, f, mm, "mmpose/datasets/pipelines/top_down_transform.py",
                             "mmpose/datasets/datasets/base/kpt_2d_sview_rgb_img_top_down_dataset.py")
                f["sched.name"] = fact(*read(r, path, r"policy='(CosineAnnealing)'", lambda m: "cosine"))
                f["sched.min_lr_ratio"] = fact(*read(r, path, r"min_lr_ratio=([0-9.]+)", num))
                per_gpu, c = read(r, path, r"samples_per_gpu=(\d+)", lambda m: int(m.group(1)))
                f["train.batch_size"] = fact(per_gpu * gpus, c, cg)
                f["train.amp"] = fact("none", read(r, path, r"(optimizer_config = dict\(grad_clip=None\))")[1])
                f["train.grad_checkpoint"] = fact(*read(r, path, r"with_cp=(True)", lambda m: True))
                f["init.pretrain"] = fact(*read(r, path, r"load_from = (None)", lambda m: "none"))
                f["init.weights"] = fact(None, read(r, path, r"load_from = (None)")[1])
                _val_set(r, path, f)
                if dataset == "crowdpose":  # the half-body split of CrowdPose's 14 keypoints
                    f["meta.upper_body_ids"] = _upper_ids(r, "configs/_base_/datasets/crowdpose.py")
                configs.append({"config": path, "facts": f})
    return {"source": {"repo": r.name, "commit": r.commit}, "configs": configs}


def _upper_ids(r: Repo, path: str) -> dict:
    """Keypoint ids whose ``type='upper'`` in an mmpose 0.x dataset_info file (each keypoint cited)."""
    lines = r.lines(path)
    ids, cites, kid = [], [], None
    for i, line in enumerate(lines):
        m = re.search(r"id=(\d+)", line)
        if m:
            kid = int(m.group(1))
        if "type='upper'" in line and kid is not None:
            ids.append(kid)
            cites.append({"file": path, "line": i + 1, "text": line.strip()})
    return fact(sorted(set(ids)), *cites)


# ------------------------------------------------------------------------------------------- mmpose 1.x
def mmpose_1x(mirrors: Path) -> dict:
    r = Repo(mirrors, MMPOSE1)
    ct = "mmpose/datasets/transforms/common_transforms.py"
    metric = "mmpose/evaluation/metrics/coco_metric.py"
    runtime = "configs/_base_/default_runtime.py"
    d = "configs/body_2d_keypoint/topdown_heatmap"
    paths = [f"{d}/coco/td-hm_hrnet-w32_8xb64-210e_coco-{s}.py" for s in SIZES]
    paths += [f"{d}/coco/td-hm_hrnet-w48_8xb32-210e_coco-{s}.py" for s in SIZES]
    paths += [f"{d}/coco/td-hm_hrformer-{n}_8xb32-210e_coco-{s}.py" for n in ("small", "base") for s in SIZES]
    paths += [f"{d}/crowdpose/td-hm_hrnet-w32_8xb64-210e_crowdpose-256x192.py"]
    common: dict = {}
    common["augment.convention"] = fact("mmpose1x", r.cite(ct, r"return truncnorm\.rvs\(low, high")[0])
    common["augment.flip_prob"] = fact(*read(r, ct, r"prob: Union\[float, List\[float\]\] = ([0-9.]+)", num))
    common["augment.half_body_min_kpts"] = fact(*read(r, ct, r"min_total_keypoints: int = (\d+)", lambda m: int(m.group(1)) - 1))
    common["augment.half_body_min_upper"] = fact(*read(r, ct, r"min_upper_keypoints: int = (\d+)", lambda m: int(m.group(1))))
    common["augment.half_body_min_lower"] = fact(*read(r, ct, r"min_lower_keypoints: int = (\d+)", lambda m: int(m.group(1))))
    common["augment.half_body_padding"] = fact(*read(r, ct, r"padding: float = ([0-9.]+),", num, after="class RandomHalfBody"))
    common["augment.half_body_prob"] = fact(*read(r, ct, r"prob: float = ([0-9.]+),", num, after="class RandomHalfBody"))
    common["augment.half_body_upper_prob"] = fact(*read(r, ct, r"upper_prioritized_prob: float = ([0-9.]+)", num))
    common["augment.shift_mode"] = fact("per_sample", r.cite(ct, r"def _get_transform_params\(self, num_bboxes")[0])
    common["augment.shift_factor"] = fact(*read(r, ct, r"shift_factor: float = ([0-9.]+),", num))
    common["augment.shift_prob"] = fact(*read(r, ct, r"shift_prob: float = ([0-9.]+),", num))
    common["augment.scale_factor"] = fact(*read(r, ct, r"scale_factor: Tuple\[float, float\] = \(([0-9.]+), ([0-9.]+)\)",
                                                lambda m: (float(m.group(2)) - float(m.group(1))) / 2))
    common["augment.rot_factor"] = fact(*read(r, ct, r"rotate_factor: float = ([0-9.]+),", num))
    common["augment.rot_prob"] = fact(*read(r, ct, r"rotate_prob: float = ([0-9.]+)\)", num))
    common["eval.keypoint_score_thr"] = fact(*read(r, metric, r"keypoint_score_thr: float = ([0-9.]+)", num))
    common["eval.nms_thr"] = fact(*read(r, metric, r"nms_thr: float = ([0-9.]+)", num))
    common["train.ckpt_interval"] = fact(*read(r, runtime, r"checkpoint=dict\(type='CheckpointHook', interval=(\d+)\)",
                                              lambda m: int(m.group(1))))
    configs = []
    for path in paths:
        f = dict(common)
        f["data.input_size"] = fact(*read(r, path, r"input_size=\((\d+, \d+)\)", hw_from_wh))
        f["codec.heatmap_size"] = fact(*read(r, path, r"heatmap_size=\((\d+, \d+)\)", hw_from_wh))
        f["data.sigma"] = fact(*read(r, path, r"sigma=(\d+)\)", num))
        for t in ("RandomFlip", "RandomHalfBody", "RandomBBoxTransform"):  # the pipeline uses the defaults
            r.cite(path, rf"dict\(type='{t}'(, direction='horizontal')?\),")
        f["optim.name"] = fact(*read(r, path, r"type='(Adam|AdamW)'", lambda m: m.group(1).lower()))
        f["optim.lr"] = fact(*read(r, path, r"lr=([0-9.e-]+),", num))
        if f["optim.name"]["value"] == "adamw":
            f["optim.betas"] = fact(*read(r, path, r"betas=\(([0-9., ]+)\)", lambda m: [float(x) for x in m.group(1).split(",")]))
            f["optim.weight_decay"] = fact(*read(r, path, r"weight_decay=([0-9.]+)", num))
            f["optim.no_decay_keys"] = fact(*read(r, path, r"custom_keys=\{'(\w+)': dict\(decay_mult=0\.\)", lambda m: [m.group(1)]))
            f["train.sync_bn"] = fact(*read(r, path, r"norm_cfg = dict\(type='(SyncBN)'", lambda m: True))
            f["model.drop_path_rate"] = fact(*read(r, path, r"drop_path_rate=([0-9.]+)", num))
            f["train.amp"] = fact(*read(r, path, r"fp16 = dict\(loss_scale='(dynamic)'\)", lambda m: "fp16"))
        else:
            c = r.cite(path, r"type='Adam',")[0]
            f["optim.betas"] = fact([0.9, 0.999], c)  # torch's Adam defaults
            f["optim.weight_decay"] = fact(0.0, c)
            f["optim.no_decay_keys"] = fact([], c)
            f["train.sync_bn"] = fact(False, r.cite(path, r"type='HRNet',")[0])  # mmpose's HRNet default: BN
            f["train.amp"] = fact("none", c)
        f["sched.warmup_iters"] = fact(*read(r, path, r"type='LinearLR', begin=0, end=(\d+), start_factor", lambda m: int(m.group(1))))
        f["sched.warmup_ratio"] = fact(*read(r, path, r"start_factor=([0-9.]+),", num))
        f["sched.name"] = fact(*read(r, path, r"type='(MultiStepLR)'", lambda m: "multistep"))
        f["sched.milestones"] = fact(*read(r, path, r"milestones=\[([\d, ]+)\]", ints))
        f["sched.gamma"] = fact(*read(r, path, r"gamma=([0-9.]+)", num))
        f["train.epochs"] = fact(*read(r, path, r"max_epochs=(\d+)", lambda m: int(m.group(1))))
        per_gpu, c1 = read(r, path, r"batch_size=(\d+),", lambda m: int(m.group(1)), after="train_dataloader")
        # GPUs: the config's name (8xb64 = 8 GPUs x 64). Its auto_scale_lr.base_batch_size is not used:
        # the HRNet-W48 configs say 512 there although they run 8 x 32 = 256.
        gpus, per_gpu_name = (int(x) for x in re.search(r"_(\d+)xb(\d+)-", path).groups())
        assert per_gpu_name == per_gpu, path
        c2 = {"file": path, "line": 0, "text": f"(file name) {gpus}xb{per_gpu}"}
        f["train.batch_size"] = fact(per_gpu * gpus, c1, c2)
        f["train.val_interval"] = fact(*read(r, path, r"val_interval=(\d+)", lambda m: int(m.group(1))))
        f["select.metric"] = fact(*read(r, path, r"save_best='\w+/(AP)'"))
        f["init.pretrain"] = fact("imagenet", r.cite(path, r"type='Pretrained',")[0])
        f["init.weights"] = fact(*read(r, path, r"'pretrain_models/(.+\.pth)'"))
        ds, c = read(r, path, r"dataset_type = '(\w+)Dataset'", lambda m: m.group(1).lower())
        f["data.val_dataset"] = fact(ds, c)
        f["data.val_split"] = fact(*read(r, path, r"ann_file='annotations/.*(val2017|_test)\.json'",
                                         lambda m: {"val2017": "val", "_test": "test"}[m.group(1)], after="val_dataloader"))
        f["data.val_boxes"] = fact("det", r.cite(path, r"bbox_file=", after="val_dataloader")[0])
        f["eval.boxes"] = fact("det", r.cite(path, r"bbox_file=", after="val_dataloader")[0])
        f["eval.flip_test"] = fact(*read(r, path, r"flip_test=(True)", lambda m: True))
        f["eval.shift_heatmap"] = fact(*read(r, path, r"shift_heatmap=(True)", lambda m: True))
        f["eval.det_score_thr"] = fact(0.0, r.cite(path, r"bbox_file=", after="val_dataloader")[0])  # no bbox_score_thr
        f["train.grad_checkpoint"] = fact(False, r.cite(path, r"backbone=dict\(")[0])
        f["train.clip_grad"] = fact(None, r.cite(path, r"optim_wrapper = dict\(")[0])
        configs.append({"config": path, "facts": f})
    return {"source": {"repo": r.name, "commit": r.commit}, "configs": configs}


SOURCES = {"hrnet_authors": hrnet_authors, "hrformer_authors": hrformer_authors,
           "hrnext_authors": hrnext_authors, "mmpose_1x": mmpose_1x}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    args = ap.parse_args()
    for name, fn in SOURCES.items():
        data = fn(args.mirrors)
        data["generated_by"] = "tests/data/recipe_facts/make_recipe_facts.py"
        lines = [json.dumps({k: data[k] for k in ("source", "generated_by")})[:-1] + ', "configs": [']
        for i, c in enumerate(data["configs"]):
            lines.append(f' {{"config": {json.dumps(c["config"])}, "facts": {{')
            items = [f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in sorted(c["facts"].items())]
            lines.append(",\n".join(items))
            lines.append(" }}" + ("," if i < len(data["configs"]) - 1 else ""))
        lines.append("]}")
        text = "\n".join(lines) + "\n"
        assert json.loads(text) == json.loads(json.dumps(data))
        (OUT / f"{name}.json").write_text(text)
        print(name, len(data["configs"]), "configs,", sum(len(c["facts"]) for c in data["configs"]), "facts")


if __name__ == "__main__":
    main()
