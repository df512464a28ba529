"""Screenshot of a report.html in headless Chromium, for the docs (`make docs`).

    python scripts/report_screenshot.py build/docs-run/report.html docs/img/report.png

The page is self-contained (inline SVG, no network), so a plain `chromium --screenshot` of
the file shows it exactly as a reader's browser does. Chromium gets a fresh profile
directory and every background service off, so the picture does not depend on this
machine's browser state and nothing is fetched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str:
    """`$CHROMIUM`, else the first Chromium on PATH; SystemExit with the install hint."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("report_screenshot: no chromium found (apt-get install chromium, "
                     "or set CHROMIUM=/path/to/chrome)")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 1800,
               timeout: float = 120.0) -> None:
    """Render `html` in a `width` x `height` window and write the visible part to `png`."""
    if not html.is_file():
        raise SystemExit(f"report_screenshot: {html} does not exist (run the evaluation first)")
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp_png = png.with_name(png.name + ".tmp.png")
    tmp_png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="em-chromium-") as profile:
        cmd = [
            find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", f"--screenshot={tmp_png}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not tmp_png.is_file() or tmp_png.stat().st_size == 0:
        tmp_png.unlink(missing_ok=True)
        raise SystemExit(f"report_screenshot: chromium exited {proc.returncode} without a "
                         f"screenshot:\n{proc.stderr[-2000:]}")
    # replace the committed picture only once the new one is complete
    tmp_png.replace(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot a report.html in headless Chromium.")
    parser.add_argument("html", type=Path, help="the report.html to render")
    parser.add_argument("png", type=Path, help="where to write the PNG")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args(argv)
    screenshot(args.html, args.png, args.width, args.height)
    print(f"screenshot of {args.html} written to {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
