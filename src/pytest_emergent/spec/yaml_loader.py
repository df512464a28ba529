"""YAML as data: PyYAML's safe loader (no Python objects), with a repeated mapping key an
error instead of "the last one wins", so a file cannot silently change a threshold by
repeating it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping with the same key twice (keys brought in by
    a `<<` merge may still be overridden, as YAML intends); notes the line each mapping
    starts on (`safe_load_lines`)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        #: id() of each mapping constructed -> the line (1-based) it starts on
        self.mapping_lines: dict[int, int] = {}

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise ConstructorError(
                        f"while reading a mapping (first {key!r} at line {first})",
                        node.start_mark,
                        f"found the key {key!r} again; a key may appear once per mapping",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_map(self, node: MappingNode) -> Any:
        """PyYAML's mapping constructor, noting the line each mapping starts on."""
        for data in super().construct_yaml_map(node):
            self.mapping_lines[id(data)] = node.start_mark.line + 1
            yield data


StrictSafeLoader.add_constructor("tag:yaml.org,2002:map", StrictSafeLoader.construct_yaml_map)


def safe_load(text: str) -> Any:
    """Parse YAML text as plain data; a repeated key is a `yaml.YAMLError`."""
    return safe_load_lines(text)[0]


def safe_load_lines(text: str) -> tuple[Any, dict[int, int]]:
    """`safe_load`, plus the line (1-based) each mapping of the result starts on, by `id()`
    of the mapping (valid while the result is alive; an alias shares its anchor's line)."""
    loader = StrictSafeLoader(text)
    try:
        data = loader.get_single_data()
        return data, loader.mapping_lines
    finally:
        loader.dispose()


class TooLarge(ValueError):
    """A file above the size a reader accepts (`read_capped`)."""


def read_capped(path: str | Path, limit: int) -> str:
    """A file's UTF-8 text, `TooLarge` above `limit` bytes: only `limit + 1` bytes are read,
    so a huge file costs no memory. The errors of reading it (not found, a directory, not
    UTF-8) pass through."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"is larger than {limit // 2**20} MiB")
    return data.decode("utf-8")


def read_bounded(path: str | Path) -> str:
    """A question or judge-prompt file's text, refused (`QuestionError` naming it) above
    `MAX_FILE_BYTES`: parsing a 50 MB file took half a minute before any check ran. The
    errors of reading it (not found, a directory, not UTF-8) pass through."""
    from pytest_emergent.errors import QuestionError
    from pytest_emergent.spec.schema import MAX_FILE_BYTES

    try:
        return read_capped(path, MAX_FILE_BYTES)
    except TooLarge as exc:
        raise QuestionError(f"{exc}, the limit for a question or judge-prompt file; split it",
                            path=path) from None
