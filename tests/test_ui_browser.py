"""The page in a real headless Chromium (Debian's, driven by playwright): what only a browser can show.

CI installs Chromium (.ci/run) and fails here if it is missing; a developer machine without it skips
these tests with a reason in the summary (`make browser` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.store._experiments import get_or_create_experiment

from conftest import wait_until
from ui_support import (
    HOSTILE,
    HOSTILE_PARAM,
    INF_STEP,
    NAN_STEP,
    NINF_STEP,
    SPIKE_STEP,
    build_store,
    chromium,
    running,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("browser") / "mlruns"
    ids = build_store(root)
    exp = get_or_create_experiment(str(root), "many")
    for i in range(20):
        run = mm.Run(experiment_id=int(exp), name=f"sweep-{i:02d}", runs_dir=root)
        run.log_param("seed", i)
        for step in range(50):
            run.log_metric("loss", 1 / (1 + step) + i / 100, step=step)
        run.end()
    with running(root) as server:
        yield f"http://127.0.0.1:{server.port}", ids, root


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: errors.append(f"a dialog opened: {d.message}"))
    pg.errors = errors
    yield pg
    context.close()
    assert errors == []  # no script error, no alert() from a hostile name


def wait_js(page: Any, expression: str) -> Any:
    """Poll a JS expression until it is truthy (the page's CSP forbids eval, which wait_for_function uses)."""
    return wait_until(lambda: page.evaluate(expression), timeout=30, interval=0.02)


def ready(page: Any, view: str | None = None) -> None:
    """Wait until the page is drawn; after a click or key that changes the view, name the new view:
    the hash changes first and the view is replaced on the next event, so until then the old view's
    mark is still there."""
    page.wait_for_selector(f"#view[data-view='{view}'][data-ready]" if view else "#view[data-ready]")


def table_names(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#runs tbody tr[data-id] td:nth-child(3)", "cells => cells.map(c => c.textContent)"
    )


def exp_id(root: Path, name: str) -> str:
    return get_or_create_experiment(str(root), name)


def test_table_filter_sort_select_and_compare(page: Any, site) -> None:
    base, ids, root = site
    page.goto(f"{base}/#/runs?e={exp_id(root, 'vision')}")
    ready(page)
    assert sorted(table_names(page)) == ["calm-a", "calm-b", "spiky"]
    assert page.locator("#runs th.differs").all_text_contents() == ["≠ lr", "≠ optimizer"]
    # the table never loads the chart library; the compare view below draws its charts with it
    assert page.evaluate(
        "typeof window.uPlot === 'undefined' && !document.querySelector('script[src*=uPlot]')"
    )
    page.fill("#filter", "params.optimizer = 'adam'")
    page.press("#filter", "Enter")
    wait_js(page, "document.querySelectorAll('#runs tbody tr[data-id]').length === 2")
    assert "params.optimizer" in page.url  # the filter is in the URL
    page.fill("#filter", "metrics.acc >> 1")
    page.press("#filter", "Enter")
    error = page.locator("#filter-error")
    error.wait_for(state="visible")
    assert "invalid filter" in error.text_content() and "^" in error.text_content()
    page.fill("#filter", "")
    page.press("#filter", "Enter")
    wait_js(page, "document.querySelectorAll('#runs tbody tr[data-id]').length === 3")
    page.click("#columns summary")  # the column picker: a tag column joins the table and the URL
    page.check("#columns input[data-col='t:team']")
    assert "team" in page.locator("#runs thead th").all_text_contents()
    assert "t:team" in page.url
    page.click("#columns summary")
    page.click("#runs th[data-col='a:name']")
    assert table_names(page) == ["calm-a", "calm-b", "spiky"]
    page.click("#runs th[data-col='a:name']")
    assert table_names(page) == ["spiky", "calm-b", "calm-a"]
    page.click(f"#runs tr[data-id='{ids['spiky']}'] td.sel input")
    page.click(f"#runs tr[data-id='{ids['calm-a']}'] td.sel input")
    assert "2 selected" in page.text_content("#count")
    page.click("#compare-btn")
    ready(page, "compare")
    assert page.locator("#compare-table thead th a").all_text_contents() == ["calm-a", "spiky"] or sorted(
        page.locator("#compare-table thead th a").all_text_contents()
    ) == ["calm-a", "spiky"]
    differs = page.locator("#compare-table tr.differs th").all_text_contents()
    assert differs == ["≠ lr", "≠ optimizer"]
    assert "★" in page.text_content("#compare-table")
    page.check("#band")  # the mean and min-max band of the compared runs
    wait_js(
        page,
        "(() => { const c = miniMlflow.page.charts.get('val/acc'); return c && c.band && c.band.runs === 2; })()",
    )
    legend = page.locator(".chart[data-key='val/acc'] .u-legend").text_content()
    assert "mean of 2 runs" in legend


def _pixel_near(page: Any, key: str, x_value: float, y_value: float | None, band: str | None = None) -> bool:
    """Whether the chart's canvas has a non-background pixel at a data point (or an edge band)."""
    return page.evaluate(
        """([key, xv, yv, band]) => {
          const u = miniMlflow.page.charts.get(key).u;
          const ctx = u.ctx, {top, height} = u.bbox;
          const x = Math.round(u.valToPos(xv, "x", true));
          const y = band === "top" ? top + 5 * devicePixelRatio
                  : band === "bottom" ? top + height - 5 * devicePixelRatio
                  : band === "nan" ? top + height - 15 * devicePixelRatio
                  : Math.round(u.valToPos(yv, "y", true));
          const d = ctx.getImageData(x - 3, Math.round(y) - 3, 7, 7).data;
          for (let i = 0; i < d.length; i += 4) {
            // the run's blue: strong blue, weak red
            if (d[i + 3] > 0 && d[i + 2] > 120 && d[i] < 120) return true;
          }
          return false;
        }""",
        [key, x_value, y_value, band],
    )


def test_planted_spike_nan_and_infs_are_visible_at_full_zoom_out(page: Any, site) -> None:
    base, ids, _ = site
    page.goto(f"{base}/#/run/{ids['spiky'][:8]}")
    ready(page)
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_selector(".chart[data-key='train/loss'][data-drawn]")
    assert chart.get_attribute("data-points") == "10000"
    legend = chart.locator(".u-legend").text_content()
    assert "NaN×1" in legend and "+inf×1" in legend and "−inf×1" in legend
    assert "non-finite: NaN×1 +inf×1 −inf×1" in chart.locator(".chart-counts").text_content()
    assert page.evaluate("miniMlflow.page.charts.get('train/loss').u.scales.y.max") >= 50
    assert _pixel_near(page, "train/loss", SPIKE_STEP, 50.0)  # the spike's tip is drawn
    assert _pixel_near(page, "train/loss", INF_STEP, None, "top")  # ▲ for +inf
    assert _pixel_near(page, "train/loss", NINF_STEP, None, "bottom")  # ▼ for -inf
    assert _pixel_near(page, "train/loss", NAN_STEP, None, "nan")  # ◆ for NaN
    assert not _pixel_near(page, "train/loss", 2_000, None, "top")  # and nothing where nothing is
    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # hover: values in the legend
    values = chart.locator(".u-legend .u-series .u-value").all_text_contents()
    assert values[0] != "" and float(values[0]) > 0 and values[1] not in ("", "--")


def test_zoom_refetches_the_range_at_full_resolution(page: Any, site) -> None:
    base, ids, _ = site
    page.goto(f"{base}/#/run/{ids['spiky'][:8]}?m=train/loss")
    ready(page)
    page.wait_for_selector(".chart[data-key='train/loss'][data-drawn]")
    box = page.locator(".chart[data-key='train/loss'] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + 50)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + 60, steps=5)
    page.mouse.up()
    wait_js(page, "/[?&]z=/.test(location.hash)")
    lo, hi = (float(v) for v in re.search(r"z=([^&]+)", page.url).group(1).split("~"))
    assert 0 < lo < hi < 10_000
    wait_js(
        page,
        "miniMlflow.page.charts.get('train/loss').series.length && "
        f"miniMlflow.page.charts.get('train/loss').series[0].x[0] >= {lo}",
    )
    xs = page.evaluate("miniMlflow.page.charts.get('train/loss').series[0].x")
    assert xs == list(range(int(lo) + (lo % 1 > 0), int(hi) + 1))  # every step in the range


def test_a_live_point_arrives_without_reload(page: Any, site) -> None:
    base, _, root = site
    run = mm.Run(runs_dir=root, name="live-one")
    for step in range(10):
        run.log_metric("loss", 1.0, step=step)
    run.flush()
    try:
        page.goto(f"{base}/#/run/{run.run_id[:8]}")
        ready(page)
        page.wait_for_selector(".chart[data-key='loss'][data-drawn]")
        page.wait_for_selector("#live.on")
        run.log_metric("loss", 7.0, step=1000)
        run.flush()
        wait_js(page, "document.querySelector(\".chart[data-key='loss']\").dataset.lastX === '1000'")
        assert page.evaluate("miniMlflow.page.charts.get('loss').series[0].y.slice(-1)[0]") == 7.0
        run.log_metric("loss", float("nan"), step=1001)
        run.flush()
        wait_js(page, "document.querySelector(\".chart[data-key='loss']\").dataset.nan === '1'")
        assert page.text_content(".run-head .status") == "running"
        run.end()
        wait_js(page, "document.querySelector('.run-head .status').textContent === 'finished'")  # live status
    finally:
        if not run.ended:
            run.end()


def test_hostile_names_render_as_text(page: Any, site) -> None:
    base, ids, root = site
    page.goto(f"{base}/#/runs?e={exp_id(root, 'hostile')}")
    ready(page)
    assert table_names(page) == [HOSTILE]
    assert page.locator("#runs img").count() == 0
    page.goto(f"{base}/#/run/{ids['hostile'][:8]}")
    ready(page, "run")
    assert page.text_content("#run-title") == HOSTILE
    assert page.text_content("#params td") == HOSTILE_PARAM
    assert page.text_content("#tags td") == HOSTILE
    assert page.locator("main img, main script").count() == 0
    assert page.title() == "mini_mlflow"


def test_a_deep_link_restores_the_view(page: Any, site) -> None:
    base, ids, _ = site
    link = (
        f"{base}/#/compare?r={ids['calm-a'][:8]},{ids['calm-b'][:8]}&x=relative&sm=0.5&ly=1&m=val/acc&z=0.5~2"
    )
    page.goto(link)
    ready(page)
    page.wait_for_selector(".chart[data-key='val/acc'][data-drawn]")
    assert page.input_value("#x-mode") == "relative"
    assert page.input_value("#smoothing") == "0.5"
    assert page.is_checked("#log-y")
    assert page.locator(".chart").count() == 1  # m= kept only val/acc
    scale = page.evaluate(
        "(() => { const s = miniMlflow.page.charts.get('val/acc').u.scales; return [s.x.min, s.x.max, s.y.distr]; })()"
    )
    assert scale == [0.5, 2, 3]  # the zoom, and a log y scale
    page.reload()
    ready(page)
    page.wait_for_selector(".chart[data-key='val/acc'][data-drawn]")
    assert page.evaluate("miniMlflow.page.charts.get('val/acc').u.scales.x.min") == 0.5


def test_keyboard_only_path_and_a_20_run_link_under_2000_characters(page: Any, site) -> None:
    base, _, root = site
    page.goto(f"{base}/#/runs?e={exp_id(root, 'many')}")
    ready(page)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "filter"
    page.keyboard.type("params.seed < 100")
    page.keyboard.press("Enter")
    # The hash changes at once; the filtered table replaces the old one on the next event, and until
    # then the old table's ready mark is still there: wait for the new table itself to be ready.
    wait_js(
        page,
        "miniMlflow.page.params.f === 'params.seed < 100' && document.getElementById('view').dataset.ready",
    )
    assert "seed" in page.url  # the filter is in the URL
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "filter"
    for _ in range(20):
        page.keyboard.press("x")
        page.keyboard.press("j")
    assert "20 selected" in page.text_content("#count")
    page.keyboard.press("k")
    page.keyboard.press("x")  # unselect the last one again
    assert "19 selected" in page.text_content("#count")
    page.keyboard.press("x")
    page.keyboard.press("c")
    wait_js(page, "location.hash.startsWith('#/compare')")
    ready(page, "compare")
    assert page.locator("#compare-table thead th a").count() == 20
    page.locator("#smoothing").focus()
    page.keyboard.press("ArrowRight")  # smoothing by keyboard too
    wait_js(page, "location.hash.includes('sm=0.01')")
    url = page.url
    assert len(url) <= 2000, len(url)
    assert url.count(",") == 19
    page.keyboard.press("Escape")
    wait_js(page, "location.hash.startsWith('#/runs')")
    ready(page, "runs")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    wait_js(page, "location.hash.startsWith('#/run/')")
    ready(page, "run")
    assert page.text_content("#run-title").startswith("sweep-")


def test_dark_mode_follows_the_os_and_the_toggle_wins(browser: Any, site) -> None:
    base, _, _ = site
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(f"{base}/#/runs")
        ready(page)
        background = "getComputedStyle(document.body).backgroundColor"
        assert page.evaluate(background) == "rgb(15, 20, 25)"  # dark, from the OS setting
        page.click("#theme")
        assert page.evaluate(background) == "rgb(255, 255, 255)"
        page.reload()
        ready(page)
        assert page.evaluate(background) == "rgb(255, 255, 255)"  # the choice is remembered
        page.keyboard.press("t")
        assert page.evaluate(background) == "rgb(15, 20, 25)"
    finally:
        context.close()


def test_export_png_svg_with_legend_and_full_resolution_csv(page: Any, site, tmp_path: Path) -> None:
    base, ids, _ = site
    page.goto(f"{base}/#/run/{ids['spiky'][:8]}?m=train/loss")
    ready(page)
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_selector(".chart[data-key='train/loss'][data-drawn]")
    downloads = {}
    for kind in ("png", "svg", "csv"):
        with page.expect_download() as info:
            chart.locator(f"button.{kind}").click()
        target = tmp_path / f"out.{kind}"
        info.value.save_as(target)
        downloads[kind] = target.read_bytes()
    assert downloads["png"].startswith(b"\x89PNG")
    svg = downloads["svg"].decode()
    assert svg.startswith("<svg") and "<path" in svg and "spiky  [NaN×1 +inf×1 −inf×1]" in svg
    assert svg.count("▲") == 1 and svg.count("▼") == 1 and svg.count("◆") == 1
    csv = downloads["csv"].decode().splitlines()
    assert csv[0] == "run_id,step,value,timestamp" and len(csv) == 10_001


def test_a_new_run_and_a_status_change_appear_in_the_table_without_reload(page: Any, site) -> None:
    base, _, root = site
    exp = get_or_create_experiment(str(root), "fresh")
    first = mm.Run(experiment_id=int(exp), name="first", runs_dir=root)
    first.log_metric("loss", 0.5)
    first.end()
    page.goto(f"{base}/#/runs?e={exp}")
    ready(page)
    assert table_names(page) == ["first"]
    page.wait_for_selector("#live.on")
    second = mm.Run(experiment_id=int(exp), name="second", runs_dir=root)
    second.log_metric("loss", 0.25)
    second.flush()
    row = f"#runs tr[data-id='{second.run_id}']"
    try:
        wait_js(page, "document.querySelectorAll('#runs tbody tr[data-id]').length === 2")
        assert table_names(page) == ["second", "first"]  # newest first
        assert page.text_content(f"{row} .status") == "running"
        # its values come with it, and follow it: the loss column shows each run's own
        wait_js(page, f"document.querySelector(\"{row} td.num\").textContent === '0.25'")
        assert page.text_content(f"#runs tr[data-id='{first.run_id}'] td.num") == "0.5"
        second.log_metric("loss", 0.125)
        second.flush()
        wait_js(page, f"document.querySelector(\"{row} td.num\").textContent === '0.125'")
        assert page.text_content(f"#runs tr[data-id='{first.run_id}'] td.num") == "0.5"
    finally:
        second.end("KILLED")
    wait_js(
        page,
        f"document.querySelector(\"#runs tr[data-id='{second.run_id}'] .status\").textContent === 'killed'",
    )
