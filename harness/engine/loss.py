"""Keypoint heatmap loss."""
from __future__ import annotations

import torch
from torch import nn


class KeypointMSELoss(nn.Module):
    """Mean squared heatmap error, each keypoint's channel weighted by its target weight.

    Same semantics as mmpose 1.x ``KeypointMSELoss(use_target_weight=True)``:
    ``mean((pred - target)**2 * w[..., None, None]) * loss_weight``, the mean taken over all
    N*K*H*W elements (invisible keypoints count in the denominator with weight 0).

    Args:
        pred: (N, K, H, W) predicted heatmaps.
        target: (N, K, H, W) target heatmaps.
        target_weight: (N, K) per-keypoint weights, or None for an unweighted MSE.
    """

    def __init__(self, loss_weight: float = 1.0, use_target_weight: bool = True) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.use_target_weight = use_target_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"heatmap shape mismatch: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
        # Compute in float32 even under autocast: squared errors of small heatmap values underflow in fp16.
        err = (pred.float() - target.float()).pow(2)
        if self.use_target_weight and target_weight is not None:
            if target_weight.shape != pred.shape[:2]:
                raise ValueError(f"target_weight must be (N, K) = {tuple(pred.shape[:2])}, got {tuple(target_weight.shape)}")
            err = err * target_weight.float()[:, :, None, None]
        return err.mean() * self.loss_weight
