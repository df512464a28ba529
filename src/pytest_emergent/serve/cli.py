"""`python -m pytest_emergent.serve`: serve a local model until interrupted."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from pytest_emergent.serve.server import ModelServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.serve",
        description="Serve a local model over an OpenAI-compatible chat-completions API.",
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="local model spec")
    parser.add_argument("--name", default=None, help="model name reported by /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", default=None,
                        help="require the key held in this environment variable")
    parser.add_argument("--batch-size", type=int, default=32, help="rows decoded together")
    parser.add_argument("--enable-faults", action="store_true",
                        help="enable the /_faults control endpoint (tests only)")
    args = parser.parse_args(argv)

    from pytest_emergent.models.registry import resolve

    backend = resolve(args.model, batch_size=args.batch_size)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = ModelServer(backend, model_name=args.name or args.model, host=args.host,
                         port=args.port, api_key=key, faults=args.enable_faults,
                         max_batch=args.batch_size)
    server.start()
    print(f"serving {args.model} at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
