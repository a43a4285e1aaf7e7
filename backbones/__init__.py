"""The model zoo: HRNet, HRFormer and HRNeXt on one high-resolution scaffold.

    >>> import backbones
    >>> backbones.list_models()
    >>> net = backbones.create_backbone("hrnext-s", drop_path_rate=0.0)
"""
from .registry import create_backbone, get_config, get_entry, list_families, list_models
from . import hrnet, hrformer, hrnext  # noqa: F401  (registers the variants)

__all__ = ["create_backbone", "get_config", "get_entry", "list_families", "list_models"]
