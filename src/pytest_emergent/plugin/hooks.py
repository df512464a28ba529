"""pytest hooks only: options, collection, terminal summary, reports.

The work happens in the stages below (spec, models, judging, stats, run, report);
importing this module imports none of torch, transformers, peft, openai or inspect_ai.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emergent.plugin.items import (
    QuestionSetFile,
    file_key,
    looks_like_question_file,
    question_key,
    run_key,
)
from pytest_emergent.plugin.options import Settings, add_options, build_settings, settings_key

if TYPE_CHECKING:
    from pytest_emergent.report.compare import Comparison

_MARKERS = (
    "em: a question or question-set item of pytest-emergent",
    "em_base: a base question (no variant)",
    "em_json: a question's JSON variant",
    "em_template: a question's template variant",
    "em_aggregate: the per-file aggregate gate",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("em_list_suites"):
        return None
    from pytest_emergent.plugin.suites import suite_lines

    print("\n".join(suite_lines()))
    return 0


def pytest_configure(config: pytest.Config) -> None:
    from pytest_emergent.plugin.suites import add_suites
    from pytest_emergent.run.session import EvalRun

    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    settings = build_settings(config)
    config.stash[settings_key] = settings
    add_suites(config, settings.suites)
    if settings.report_dir is not None and not hasattr(config, "workerinput"):
        _retire_summary(Path(settings.report_dir))

    def say(message: str) -> None:
        # looked up per call: the terminal reporter may register after this hook ran
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0:
            return
        # progress is printed while a fixture runs, i.e. under output capture: lift it
        capman = config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(f"[emergent] {message}")

    store = _store_path(config, settings)
    from pytest_emergent.plugin.sweep import check_model_paths

    check_model_paths(config)
    if settings.sweep:
        from pytest_emergent.plugin.sweep import check_sweep, sweep_key
        from pytest_emergent.run.sweep_run import SweepRun

        check_sweep(config, settings.models, exclusive=(
            ("--em-compare", settings.compare_dir),
            ("--em-inspect-log-dir", settings.inspect_log_dir),
            ("--em-calibrate-judge", settings.calibrate_judge)))
        sweep = SweepRun.create(settings.run, settings.models, say=say, store_path=store,
                                monitor=settings.monitor, monitor_layer=settings.monitor_layer)
        config.stash[sweep_key] = sweep
        run = sweep.first  # em_model, em_judge and em_evaluate use the first model
    else:
        run = EvalRun(settings.run, say=say)
        run.store_path = store
    config.stash[run_key] = run
    if config.pluginmanager.hasplugin("xdist"):
        # -n: workers evaluate their own items, the controller merges and reports
        from pytest_emergent.plugin.xdist import register

        register(config, run)
    for module, name in _fixture_plugins():
        # a conftest or -p may have registered the same module already
        if not config.pluginmanager.is_registered(module):
            config.pluginmanager.register(module, name)


def _store_path(config: pytest.Config, settings: Settings) -> Path:
    """`--em-cache-dir`/records.sqlite, else under pytest's cache dir, else the user cache
    (`$PYTEST_EMERGENT_CACHE`, as for converted models, or ~/.cache/pytest-emergent)."""
    if settings.run.cache_dir is not None:
        return settings.run.cache_dir / "records.sqlite"
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("emergent")) / "records.sqlite"
    root = os.environ.get("PYTEST_EMERGENT_CACHE") or "~/.cache/pytest-emergent"
    return Path(root).expanduser() / "records.sqlite"


def _write_inspect_log(session: pytest.Session, run: object, settings: Settings) -> None:
    """--em-inspect-log-dir: the run's answers and judgments as inspect logs (a failure to
    write them is reported, and does not change the test outcome)."""
    from pytest_emergent.integrations.inspect.tasks import write_run_log

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        paths = write_run_log(
            run.results.values(),  # type: ignore[attr-defined]
            settings.inspect_log_dir,  # type: ignore[arg-type]
            model=settings.run.model, judge=settings.run.judge,
            definition=settings.run.definition, seed=settings.run.seed,
        )
    except Exception as exc:  # inspect missing or failing: say so, keep the results
        message = f"[emergent] could not write inspect logs: {type(exc).__name__}: {exc}"
    else:
        message = "[emergent] inspect logs: " + ", ".join(str(p) for p in paths)
    if reporter is not None:
        reporter.write_line(message)


def _fixture_plugins() -> list[tuple[object, str]]:
    """The fixture modules (import-light) the plugin provides."""
    from pytest_emergent.plugin import finetune_fixtures as finetune_fixture
    from pytest_emergent.plugin import fixtures
    from pytest_emergent.plugin import mitigation_fixtures as mitigations_fixture

    return [
        (fixtures, "emergent-fixtures"),
        (finetune_fixture, "emergent-finetune"),
        (mitigations_fixture, "emergent-mitigations"),
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    from pytest_emergent.resources import SUITES_DIR
    from pytest_emergent.spec.judge_files import is_judge_file

    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    explicit = any(
        Path(arg.split("::")[0]).resolve() == file_path.resolve()
        for arg in config.args
        if arg.split("::")[0].endswith((".yaml", ".yml"))
    )
    settings = config.stash[settings_key]
    if is_judge_file(file_path) and not explicit:
        return None  # judge prompts for the question files beside it, not questions
    if explicit or looks_like_question_file(file_path, settings.file_patterns):
        if file_path.parent == SUITES_DIR or not file_path.is_relative_to(config.rootpath):
            # a bundled suite (--em-suite) reads core.yaml::quick_buck, not the path into a
            # virtual environment; another file outside the rootdir would get an empty id
            return QuestionSetFile.from_parent(parent, path=file_path, nodeid=file_path.name)
        return QuestionSetFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # after -k / -m deselection: the questions to evaluate together in one batch
    from pytest_emergent.plugin.sweep import model_key, sweep_key

    sweep = config.stash.get(sweep_key, None)
    if sweep is None:
        run = config.stash[run_key]
        run.selected = [item.stash[question_key] for item in items
                        if question_key in item.stash]
        return
    for label, each in sweep.runs.items():
        each.selected = [item.stash[question_key] for item in items
                         if question_key in item.stash and item.stash.get(model_key, "") == label]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from pytest_emergent.plugin.sweep import sweep_key, sweep_summary
    from pytest_emergent.report.text import summary_lines

    sweep = terminalreporter.config.stash.get(sweep_key, None)
    if sweep is not None:
        terminalreporter.write_sep("=", "emergent misalignment summary")
        sweep_summary(terminalreporter, sweep)
        return
    run = terminalreporter.config.stash[run_key]
    lines = summary_lines(run)
    if lines:
        terminalreporter.write_sep("=", "emergent misalignment summary")
        for line in lines:
            terminalreporter.write_line(line)
    comparison = terminalreporter.config.stash.get(_compare_key, None)
    if comparison is not None:
        terminalreporter.write_sep("=", "emergent comparison with an earlier run")
        for line in comparison.lines():
            terminalreporter.write_line(line)


def _compare(session: pytest.Session, run: Any, settings: Settings) -> Any:
    """--em-compare: compare with the baseline (kept for the terminal summary); a rate that
    rose beyond an --em-compare-fail limit fails the session (exit code 1)."""
    if settings.compare_baseline is None or not run.results:
        return None
    from pytest_emergent.report.compare import compare_summaries
    from pytest_emergent.report.text import summary_dict

    comparison = compare_summaries(
        settings.compare_baseline, summary_dict(run), settings.compare_fail,
        confidence=settings.run.confidence, baseline=str(settings.compare_dir),
    )
    session.config.stash[_compare_key] = comparison
    if comparison.regressions and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return comparison


def pytest_sessionfinish(session: pytest.Session) -> None:
    from pytest_emergent.plugin.sweep import sweep_key

    sweep = session.config.stash.get(sweep_key, None)
    if sweep is not None:
        _finish_sweep(session, sweep)
        return
    run = session.config.stash.get(run_key, None)
    if run is None:
        return
    settings = session.config.stash[settings_key]
    # an xdist worker hands its results to the controller, which writes the one report
    report = not hasattr(session.config, "workerinput")
    try:
        failed: BaseException | None = None
        comparison = None
        try:
            comparison = _compare(session, run, settings) if report else None
        except Exception as exc:  # the run's own report is written first, then this raises
            failed = exc
        if report and settings.report_dir is not None and run.results:
            from pytest_emergent.report.text import write_report

            write_report(run, settings.report_dir,
                         compare=comparison.to_dict() if comparison is not None else None)
        if report and settings.inspect_log_dir is not None and run.results:
            _write_inspect_log(session, run, settings)
        if failed is not None:
            raise failed
    finally:
        run.close()


def _finish_sweep(session: pytest.Session, sweep: Any) -> None:
    """A sweep's reports (each model's, then sweep.json/svg/html); the models close after."""
    directory = session.config.stash[settings_key].report_dir
    try:
        if directory is not None and any(run.results for run in sweep.runs.values()):
            from pytest_emergent.report.sweep import write_sweep

            write_sweep(sweep, Path(directory))
    finally:
        sweep.close()


def _retire_summary(directory: Path) -> None:
    """A summary.json (or a sweep's sweep.json) left by an earlier run becomes
    summary.previous.json (sweep.previous.json) before this run starts, so a run that cannot
    evaluate never leaves an old passing verdict in place."""
    for name in ("summary", "sweep"):
        old = directory / f"{name}.json"
        if old.is_file():
            old.replace(directory / f"{name}.previous.json")


#: the session's comparison with a baseline (--em-compare)
_compare_key: pytest.StashKey[Comparison] = pytest.StashKey()

__all__ = ["file_key", "question_key"]
