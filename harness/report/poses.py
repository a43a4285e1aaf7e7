"""The one skeleton drawer: people's keypoints and limbs on an image, limbs coloured by body side.

Used by the qualitative comparison (:mod:`harness.visualize`, joints coloured by confidence) and by the
synthetic-data preview (:func:`harness.data.synthetic.write_preview`, joints by side, occluded joints as
rings), so a left limb is the same colour in every picture the harness makes.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["SIDE_COLORS", "OCCLUDED_COLOR", "draw_skeletons", "default_radius"]

# BGR. Okabe-Ito blue / vermillion (colour-blind safe) for the left / right side and a light grey for the
# centre line.
SIDE_COLORS = {"left": (178, 114, 0), "right": (0, 94, 213), "center": (200, 200, 200)}
OCCLUDED_COLOR = (0, 0, 255)  # rings around joints that are labelled but hidden (v=1)


def default_radius(h: int, w: int) -> tuple[int, int]:
    """(joint radius, limb thickness - 1) in pixels for an ``h x w`` image."""
    return max(2, round(min(h, w) / 110)), max(1, round(min(h, w) / 220))


def draw_skeletons(image: np.ndarray, keypoints: np.ndarray, present: np.ndarray, meta, *,
                   joint_colors: np.ndarray | None = None, hollow: np.ndarray | None = None,
                   order: np.ndarray | None = None, radius: int | None = None,
                   thickness: int | None = None) -> np.ndarray:
    """Draw ``N`` people on ``image`` (BGR uint8 (H, W, 3), drawn on in place and returned).

    Args:
        keypoints: (N, K, 2) pixel coordinates.
        present: (N, K) bool, joints to draw; a limb is drawn when both its ends are present.
        meta: :class:`harness.data.DatasetMeta` (skeleton links, keypoint names -> body sides).
        joint_colors: (N, K, 3) BGR per joint; default: the joint's side colour.
        hollow: (N, K) bool, present joints drawn as :data:`OCCLUDED_COLOR` rings instead of dots.
        order: the order people are drawn in (later on top); default 0..N-1.
    """
    h, w = image.shape[:2]
    r0, t0 = default_radius(h, w)
    r, t = radius or r0, thickness or t0
    pts = np.round(np.nan_to_num(np.asarray(keypoints, float))).astype(np.int64)
    present = np.asarray(present, bool)
    links = np.asarray(meta.skeleton, np.int64).reshape(-1, 2)
    link_colors = [SIDE_COLORS.get(s, SIDE_COLORS["center"]) for s in meta.skeleton_sides]
    sides = [meta.side(k) for k in range(meta.num_keypoints)]
    for n in (range(len(pts)) if order is None else order):
        p = pts[n]
        for (a, b), c in zip(links, link_colors):
            if present[n, a] and present[n, b]:
                cv2.line(image, tuple(map(int, p[a])), tuple(map(int, p[b])), c, t + 1, cv2.LINE_AA)
        for j in np.nonzero(present[n])[0]:
            centre = tuple(map(int, p[j]))
            if hollow is not None and hollow[n, j]:
                cv2.circle(image, centre, r + 1, OCCLUDED_COLOR, 1, cv2.LINE_AA)
                continue
            c = SIDE_COLORS.get(sides[j], SIDE_COLORS["center"]) if joint_colors is None else joint_colors[n, j]
            cv2.circle(image, centre, r + 1, (255, 255, 255), -1, cv2.LINE_AA)  # a rim keeps dark dots visible
            cv2.circle(image, centre, r, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    return image
