"""`python -m harness models`: the model zoo, with each variant's config and size."""
from __future__ import annotations

import dataclasses
import json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered backbones (or show one's config)",
                       description="List the registered backbones with family and parameter count, or print "
                                   "one variant's full config as JSON.")
    p.add_argument("name", nargs="?", help="show this variant's config (e.g. hrnext-s)")
    p.add_argument("--family", choices=["hrnet", "hrformer", "hrnext"], help="only this family")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters")
    p.set_defaults(func=run)


def run(args) -> int:
    import backbones
    from harness.profile import model_params
    from harness.errors import UsageError

    if args.name:
        if args.name not in backbones.list_models():
            raise UsageError(f"models: unknown model {args.name!r}; registered: {', '.join(backbones.list_models())}")
        entry = backbones.get_entry(args.name)
        cfg = dataclasses.asdict(entry.config)
        print(json.dumps({"name": entry.name, "family": entry.family, "paper_input": entry.paper_input,
                          "config": cfg}, indent=2))
        return 0
    print(f"{'model':<15} {'family':<9} {'paper input':<12} {'params':>12}")
    for name in backbones.list_models(args.family):
        entry = backbones.get_entry(name)
        params = "" if args.no_params else f"{model_params(name):,}"
        print(f"{name:<15} {entry.family:<9} {entry.paper_input or '-':<12} {params:>12}")
    return 0
