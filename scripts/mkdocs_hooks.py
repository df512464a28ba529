"""MkDocs hook: links from a docs page to files outside docs/ become plain repository paths.

Pages such as docs/performance.md link to files elsewhere in the repository
(`[README](../benchmarks/README.md)`). Those work on a code-hosting site but are not part of
the built docs, so `mkdocs build --strict` would reject them. The hook rewrites such a link
as its path in code type (`benchmarks/README.md`), keeping the link text when it says more
than the file name, so the page source stays readable where it is and the site builds
strictly. Links inside docs/ are left to MkDocs' own validation.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

# [text](../path) with an optional #anchor; images (![...]) are left alone
_OUTSIDE_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def _plain(match: re.Match[str], page_dir: str) -> str:
    text, target = match.group(1), match.group(2)
    # the path relative to the repository root (docs_dir is <root>/docs)
    path = posixpath.normpath(posixpath.join("docs", page_dir, target))
    name = posixpath.basename(path)
    if text.strip("` ").lower() in {path.lower(), name.lower(), name.rsplit(".", 1)[0].lower()}:
        return f"`{path}`"
    return f"{text} (`{path}`)"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite links that leave docs/ (called by MkDocs for every page)."""
    page_dir = posixpath.dirname(page.file.src_uri)
    return _OUTSIDE_LINK.sub(lambda m: _plain(m, page_dir), markdown)
