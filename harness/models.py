"""Top-down pose model = registered backbone + the references' heatmap head (one 1x1 conv).

The backbone returns its highest-resolution map (1/4 of the input); the head maps it to one heatmap
per keypoint.  This is mmpose's ``HeatmapHead`` without deconvolutions (HRNet/HRFormer configs) and the
HRNeXt authors' ``TopdownHeatmapSimpleHead`` with ``num_deconv_layers=0``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

import backbones
from backbones.layers import fold_batchnorm, fuse_conv_activations


class HeatmapHead(nn.Module):
    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)

    def init_weights(self):
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(feats[0])


class PoseModel(nn.Module):
    """``model(imgs (N, 3, H, W)) -> heatmaps (N, K, H/4, W/4)``."""

    def __init__(self, backbone: nn.Module, num_keypoints: int = 17):
        super().__init__()
        self.backbone = backbone
        self.head = HeatmapHead(backbone.out_channels[0], num_keypoints)
        self.head.init_weights()
        if getattr(backbone, "channels_last", False):  # the head's input is then channels-last too
            self.head.to(memory_format=torch.channels_last)
        self.model_name = getattr(backbone, "model_name", type(backbone).__name__)
        self.family = getattr(backbone, "family", None)
        self.num_keypoints = num_keypoints

    fused: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def fuse(self) -> "PoseModel":
        """An inference copy with every BatchNorm that follows a static conv folded into it (eval mode).

        Same heatmaps as ``self.eval()`` up to float rounding, fewer passes over memory.  The copy cannot
        train (its state dict has conv biases instead of those BNs); ``self`` is left unchanged.
        """
        model = fuse_conv_activations(fold_batchnorm(copy.deepcopy(self).eval()))
        model.fused = True
        return model

    def train(self, mode: bool = True) -> "PoseModel":
        if mode and self.fused:
            raise RuntimeError("a fused model (PoseModel.fuse()) is for inference only: fuse the trained "
                               "model again instead of training the fused copy")
        return super().train(mode)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)


def create_pose_model(name: str, num_keypoints: int = 17, **backbone_overrides) -> PoseModel:
    """Build ``name`` (see ``backbones.list_models()``) with a fresh heatmap head.

    ``backbone_overrides`` change backbone config fields, e.g. ``with_cp=True``, ``norm_layer="syncbn"``,
    ``drop_path_rate=0.0``; an unknown field raises an error listing the valid ones.
    """
    if not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise ValueError(f"num_keypoints={num_keypoints!r}: expected a positive integer")
    return PoseModel(backbones.create_backbone(name, **backbone_overrides), num_keypoints)
