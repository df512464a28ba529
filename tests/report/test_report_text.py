"""How the terminal table names question files: the file name, unless two share one."""

from __future__ import annotations

from pathlib import Path

from pytest_emergent.report.text import file_labels


def test_files_that_share_a_name_are_shown_by_their_paths_below_a_common_folder(
        tmp_path: Path) -> None:
    a, b, c = (str(tmp_path / "evals" / "a.yaml"), str(tmp_path / "evals" / "sub" / "a.yaml"),
               str(tmp_path / "other" / "b.yaml"))
    assert file_labels([a, b, c, a]) == {a: "a.yaml", b: "sub/a.yaml", c: "b.yaml"}
    assert file_labels([a, c]) == {a: "a.yaml", c: "b.yaml"}
    assert file_labels([]) == {}
