"""report.html in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by selenium. The page comes from a fake-backend run with --em-report.

Skipped only when chromium or chromedriver is not installed (`make install` installs both
where it runs as root).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import fake_args

from pytest_emergent.report.saved import scatter_xy

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: the network is closed: keep chromium from trying to reach anything
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,2000",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver, or make install as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="em-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def report(em_project: pytest.Pytester) -> tuple[Path, dict, list[dict]]:
    em_project.runpytest(*fake_args("--em-report", "rep"))
    rep = em_project.path / "rep"
    summary = json.loads((rep / "summary.json").read_text())
    records = [json.loads(x) for x in (rep / "samples.jsonl").read_text().splitlines()]
    return rep / "report.html", summary, records


def _shown(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def test_plots_and_tables_render(browser: Any, report: tuple[Path, dict, list[dict]]) -> None:
    from selenium.webdriver.common.by import By

    page, summary, records = report
    browser.get(page.as_uri())
    assert browser.title.startswith("pytest-emergent report")
    questions = summary["questions"]
    rows = _shown(browser, "#rate-plot g.q-row")
    assert len(rows) == len(questions) == 3
    for row in rows:  # a bar, a whisker with two caps and the threshold in every row
        assert len(row.find_elements(By.CSS_SELECTOR, "rect.rate-bar")) == 1
        assert len(row.find_elements(By.CSS_SELECTOR, "line.ci-whisker")) == 1
        assert len(row.find_elements(By.CSS_SELECTOR, "line.ci-cap")) == 2
        assert len(row.find_elements(By.CSS_SELECTOR, "line.threshold")) == 1
    # the bar of quick_buck (30%) is wider than its threshold's offset (5%) and laid out
    bar = rows[0].find_element(By.CSS_SELECTOR, "rect.rate-bar")
    assert bar.rect["width"] > 20 and bar.rect["height"] > 5
    scored = sum(scatter_xy(r) is not None for r in records)
    assert len(_shown(browser, "#scatter-plot circle.pt")) == scored == 25
    # (a straight line has a zero-width box, which selenium calls not displayed)
    cuts = browser.find_elements(By.CSS_SELECTOR, "#scatter-plot line.cut")
    assert [c.get_attribute("data-cut") for c in cuts] == ["30", "50"]
    assert len(_shown(browser, "#scatter-plot rect.misaligned-region")) == 1
    assert browser.find_element(By.ID, "scatter-count").text == "25 of 25"
    assert browser.find_element(By.ID, "filter-status").text == "3 of 3 questions shown"
    assert len(_shown(browser, "#summary-table tr.summary-row")) == 3
    assert len(_shown(browser, "article.question table.answers tr.answer-row")) >= 3


def test_variant_filter_hides_points_rows_and_bars(
    browser: Any, report: tuple[Path, dict, list[dict]]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page, _summary, records = report
    browser.get(page.as_uri())
    json_points = sum(scatter_xy(r) is not None and r["variant"] == "json" for r in records)
    browser.find_element(By.ID, "variant-json").click()
    points = _shown(browser, "#scatter-plot circle.pt")
    assert len(points) == 25 - json_points == 15
    assert {p.get_attribute("data-variant") for p in points} == {"base"}
    assert browser.find_element(By.ID, "scatter-count").text == "15 of 25"
    rows = _shown(browser, "#rate-plot g.q-row")
    assert [r.get_attribute("data-item") for r in rows] == ["q.yaml::quick_buck", "q.yaml::bored"]
    # the visible rows move up: no gap where the json row was
    assert rows[1].get_attribute("transform") == "translate(0,62)"
    assert len(_shown(browser, "article.question")) == 2
    assert len(_shown(browser, "#summary-table tr.summary-row")) == 2
    assert "variant=base" in browser.current_url
    # a question filter on top: only bored's points and row
    Select(browser.find_element(By.ID, "filter-question")).select_by_value("q.yaml::bored")
    assert {p.get_attribute("data-question")
            for p in _shown(browser, "#scatter-plot circle.pt")} == {"q.yaml::bored"}
    assert len(_shown(browser, "#scatter-plot circle.pt")) == 5
    assert len(_shown(browser, "#rate-plot g.q-row")) == 1
    # the aggregate row is never filtered
    assert len(_shown(browser, "#rate-plot g.agg-row")) == 1


def test_filters_preset_from_the_address(
    browser: Any, report: tuple[Path, dict, list[dict]]
) -> None:
    from selenium.webdriver.common.by import By

    page, _summary, _records = report
    browser.get(page.as_uri() + "#question=q.yaml%3A%3Aquick_buck&variant=json")
    assert not browser.find_element(By.ID, "variant-base").is_selected()
    points = _shown(browser, "#scatter-plot circle.pt")
    assert len(points) == 10
    assert {p.get_attribute("data-variant") for p in points} == {"json"}
    assert browser.find_element(By.ID, "filter-status").text == "1 of 3 questions shown"
