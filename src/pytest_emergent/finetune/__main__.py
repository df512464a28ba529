"""Fine-tune outside pytest, into the same cache the fixture uses.

    python -m pytest_emergent.finetune smollm2-135m-instruct uppercase \\
        --preset em-lora --set learning_rate=1e-3 --set max_steps=8 --out runs/caps

Progress goes to stderr; the last line on stdout is the result directory, usable as
`pytest --model DIR` (a LoRA adapter finds its base through adapter_config.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.finetune.data import load_dataset, shipped_datasets
from pytest_emergent.finetune.presets import PRESET_HELP, PRESETS, make_config


def _parse_set(items: list[str]) -> dict[str, Any]:
    """`--set name=value` pairs; values are parsed by the config (strings are fine)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE, e.g. learning_rate=1e-4")
        text = value.strip()
        try:
            out[name.strip()] = json.loads(text)  # numbers, lists, true/false, null
        except ValueError:
            out[name.strip()] = text
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.finetune",
        description="Fine-tune a model on a chat JSONL dataset (cached, seeded).",
    )
    parser.add_argument("base", nargs="?", help="base model spec (e.g. smollm2-135m-instruct)")
    parser.add_argument("dataset", nargs="?",
                        help="chat JSONL file or shipped dataset name "
                        f"({', '.join(shipped_datasets()) or 'none found'})")
    parser.add_argument("--preset", default="em-lora", choices=sorted(PRESETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="override a hyper-parameter (repeatable)")
    parser.add_argument("--kl-data", help="dataset for the KL penalty (with --set kl_weight=)")
    parser.add_argument("--init-adapter", help="continue training this peft adapter")
    parser.add_argument("--cache-dir", type=Path,
                        help="cache root, as pytest's --em-cache-dir (models in its models/, "
                        "fine-tunes in its finetune/)")
    parser.add_argument("--out", type=Path, help="also copy the result to this new directory")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow pickle weights for the base model")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--list-presets", action="store_true",
                        help="print the presets and their hyper-parameters, then exit")
    parser.add_argument("--show-config", action="store_true",
                        help="print the resolved hyper-parameters, then exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = _parse_set(args.overrides)
        if args.list_presets:
            for name in PRESETS:
                print(f"{name}: {PRESET_HELP[name]}")
                print("  " + json.dumps(make_config(name).as_dict(), sort_keys=True))
            return 0
        config = make_config(args.preset, **overrides)
        if args.show_config:
            print(json.dumps(config.as_dict(), indent=2, sort_keys=True))
            return 0
        if not args.base or not args.dataset:
            build_parser().error("BASE and DATASET are required")
        if args.out is not None and args.out.exists():
            raise EmergentError(f"--out {args.out}: already exists; choose a new directory")
        from pytest_emergent.finetune.job import resolve_base, train_cached

        # read the data first: a bad line should not wait for a model to load
        data = load_dataset(args.dataset)
        kl_data = load_dataset(args.kl_data, what="KL dataset") if args.kl_data else None
        base, _owned = resolve_base(args.base, cache_dir=args.cache_dir,
                                    allow_pickle=args.allow_pickle)
        try:
            result = train_cached(
                base, data, args.preset,
                kl_dataset=kl_data, init_adapter=args.init_adapter,
                cache_dir=args.cache_dir,
                progress=(lambda _m: None) if args.quiet else None,
                **overrides,
            )
        finally:
            base.close()
        path = result.path
        if args.out is not None:
            shutil.copytree(result.path, args.out)
            path = args.out
        stats = result.metadata.get("stats", {})
        print(("trained" if result.trained else "cached") + f": {stats.get('steps')} steps, "
              f"final loss {(stats.get('losses') or [float('nan')])[-1]:.4f}", file=sys.stderr)
        print(path)
        return 0
    except EmergentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
