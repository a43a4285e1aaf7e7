"""Name -> backbone registry (timm style): ``list_models()``, ``get_config()``, ``create_backbone()``.

Each family module registers its variants with their typed config next to the family's code; a variant
is just a config instance, so two variants differ only in the fields they set.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    cls: type[nn.Module]
    config: object  # the family's HRConfig subclass instance
    paper_input: str | None = None  # "HxW" for the six paper models


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, type] = {}


def register_family(family: str, cls: type[nn.Module], config_cls: type, variants: dict,
                    paper: dict[str, str] | None = None) -> None:
    """Register a backbone family and its named variants.

    Args:
        family: family name (``"hrnet"``, ``"hrformer"``, ``"hrnext"``), as listed by ``list_families()``.
        cls: the backbone class; ``cls(config)`` builds a module mapping images (N, in_channels, H, W) to a
            list of feature maps, the first at (N, widths[0], H/4, W/4).
        config_cls: the family's :class:`~backbones.scaffold.HRConfig` subclass.
        variants: variant name -> config instance (each name may be registered once).
        paper: variant name -> ``"HxW"`` input size, for the variants that are paper models.

    Raises:
        ValueError: a variant name is already registered.
    """
    _FAMILIES[family] = config_cls
    for name, cfg in variants.items():
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, family, cls, cfg, (paper or {}).get(name))


def list_models(family: str | None = None, paper_only: bool = False) -> list[str]:
    """Registered backbone names, optionally of one family or only the six paper models."""
    return sorted(n for n, e in _REGISTRY.items()
                  if (family is None or e.family == family) and (not paper_only or e.paper_input))


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} Valid names: {list_models()}") from None


def get_config(name: str, **overrides):
    """The variant's config with ``overrides`` applied and validated (errors name the field)."""
    return get_entry(name).config.replace(**overrides)


def create_backbone(name: str, init: bool = True, **overrides) -> nn.Module:
    """Build a registered backbone; ``overrides`` change config fields (e.g. ``with_cp=True``)."""
    entry = get_entry(name)
    model = entry.cls(get_config(name, **overrides))
    model.model_name = name
    model.family = entry.family
    if init:
        model.init_weights()
    return model
