"""A model of a real model's shape with random weights, for timing where the weights cannot go.

    python benchmarks/random_model.py shape qwen2.5-coder-0.5b-instruct .device-carry/qwen05
    python benchmarks/random_model.py build .device-carry/qwen05 /tmp/random-qwen05 --device cuda

`shape` (here, with the embedded model installed) writes an embedded model's config and
tokenizer, no weights: a few MB where the weights are hundreds. `build` (on the machine that
times it) gives that shape seeded random weights and saves a model directory that `--model`
and `benchmarks/bench_eval.py --model` load like any checkpoint.

What it is good for: speed. The products, attention and cache sizes are those of the real
model, so tokens/s and judgments/s are. What it is not: its answers are noise, and with
logits near zero it almost never samples the stop token, so every answer runs to its
`max_tokens` (a fixed-length workload). No judge figure comes from it. `benchmarks/device_check.sh`
uses it on a GPU machine, where nothing can be downloaded and the working tree that travels
is capped at 64 MiB (the 0.5B model's GGUF alone is 491 MB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

#: files of a model directory that say its shape and its tokenizer (no weights)
SHAPE_FILES = ("config.json", "generation_config.json", "chat_template.jinja",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def save_shape(name: str, out: Path) -> list[str]:
    """Copy the config and tokenizer of the installed embedded model `name` to `out` (the
    model is converted from its GGUF first if it never was); the names of the files copied."""
    from pytest_emergent.models.hf import load as hf_load
    from pytest_emergent.models.registry import embedded_gguf

    cache = hf_load.default_cache_dir().expanduser()
    model_dir, _sha = hf_load.convert_gguf(embedded_gguf(name).resolve(), cache,
                                           hf_load.HashMemo(cache))
    out.mkdir(parents=True, exist_ok=True)
    copied = [f for f in SHAPE_FILES if (model_dir / f).is_file()]
    for f in copied:
        shutil.copyfile(model_dir / f, out / f)
    (out / "random_model.json").write_text(json.dumps({"shape_of": name}) + "\n")
    return copied


def build(shape: Path, out: Path, *, seed: int = 0, device: str = "cpu") -> int:
    """Save a model of `shape`'s config with weights drawn from the config's own initialiser
    (seeded), and its tokenizer, to `out`; returns the parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (shape / "config.json").is_file():
        raise SystemExit(f"{shape}: no config.json here; write it with "
                         "`python benchmarks/random_model.py shape NAME DIR` first")
    config = AutoConfig.from_pretrained(str(shape), local_files_only=True)
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: seconds on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    for f in SHAPE_FILES:
        if f != "config.json" and (shape / f).is_file():
            shutil.copyfile(shape / f, out / f)
    meta = json.loads((shape / "random_model.json").read_text()) if (
        shape / "random_model.json").is_file() else {}
    (out / "random_model.json").write_text(json.dumps({**meta, "seed": seed}) + "\n")
    return sum(p.numel() for p in model.parameters())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    shape = sub.add_parser("shape", help="an embedded model's config and tokenizer, no weights")
    shape.add_argument("name", help="embedded model name (python -m pytest_emergent.models list)")
    shape.add_argument("out", type=Path)
    made = sub.add_parser("build", help="random weights in a shape written by `shape`")
    made.add_argument("shape", type=Path)
    made.add_argument("out", type=Path)
    made.add_argument("--seed", type=int, default=0)
    made.add_argument("--device", default="cpu", help="where to initialise (cpu, cuda)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "shape":
        files = save_shape(args.name, args.out)
        size = sum((args.out / f).stat().st_size for f in files)
        print(f"{args.out}: {', '.join(files)} ({size / 2**20:.1f} MiB) of {args.name}")
    else:
        count = build(args.shape, args.out, seed=args.seed, device=args.device)
        print(f"{args.out}: {count / 1e6:.0f}M random parameters (seed {args.seed}) in "
              f"{time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
