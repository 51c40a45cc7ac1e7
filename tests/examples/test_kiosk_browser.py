"""The kiosk in a real browser: its server as a subprocess, Debian's headless Chromium via Playwright.

Runs in CI (``.ci/run`` installs ``chromium``); skips, saying why, only when Chromium or Playwright
is genuinely absent. The screenshot and the click-to-grid timings land in ``tests/examples/artifacts/``
(or ``$EDGEREC_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("starlette", reason="the kiosk needs its extra: pip install -e '.[kiosk]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is missing: pip install -e '.[dev]'")

from examples.kiosk.harness import (KioskServer, chromium_path, grid_items,  # noqa: E402
                                    install_click_timer, measure_clicks, open_browser, percentile,
                                    timed_click)

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium at /usr/bin/chromium (or $EDGEREC_CHROMIUM): install it with "
           "`sudo apt-get install chromium` (Debian/Ubuntu, as .ci/run does) or set EDGEREC_CHROMIUM "
           "to a Chromium executable; Playwright drives it and never downloads a browser")

ARTIFACTS = Path(os.environ.get("EDGEREC_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
CLICKS = 20
FIRST_PICK = "#grid .card:first-child .pick"


@pytest.fixture(scope="module")
def server(kiosk_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    work = tmp_path_factory.mktemp("kiosk-server")
    srv = KioskServer(work / "kiosk.db", kiosk_bundle, log=work / "server.log")
    with srv:
        yield srv
    assert srv.proc is not None and srv.proc.returncode == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def context() -> Iterator[Any]:
    assert CHROMIUM is not None
    with sync_api.sync_playwright() as pw, open_browser(pw, CHROMIUM) as ctx:
        ctx.set_default_timeout(15_000)
        yield ctx


@pytest.fixture
def page(context: Any, server: KioskServer) -> Iterator[Any]:
    """A page opened by a brand-new visitor (no cookie)."""
    context.clear_cookies()
    pg = context.new_page()
    pg.goto(server.url + "/")
    install_click_timer(pg)
    yield pg
    pg.close()


def session_cookie(page: Any) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "kiosk_session")


def notice(page: Any) -> str:
    return str(page.inner_text("#notice"))


def test_a_click_updates_the_grid_at_once_without_the_clicked_item(page: Any) -> None:
    cold = grid_items(page)
    assert len(cold) == 12 and page.locator("#grid .reason").first.inner_text() == "popular right now"
    title = page.locator(FIRST_PICK + " .title").inner_text()
    ms = timed_click(page, FIRST_PICK)
    after = grid_items(page)
    assert cold[0] not in after and after != cold and len(after) == 12
    assert notice(page).startswith(f"You picked {title}")
    assert "because you clicked" in page.locator("#grid").inner_text()
    assert page.url.endswith("/")  # swapped in place, no navigation
    assert ms > 0


def test_not_interested_removes_the_item_for_the_rest_of_the_session(page: Any) -> None:
    victim = grid_items(page)[2]
    timed_click(page, f'#grid .card[data-item="{victim}"] .dismiss')
    assert victim not in grid_items(page) and notice(page).startswith("Hidden:")
    timed_click(page, FIRST_PICK)
    assert victim not in grid_items(page)


def test_new_visitor_starts_from_the_cold_start_list(page: Any) -> None:
    cold = grid_items(page)
    first = session_cookie(page)
    timed_click(page, FIRST_PICK)
    timed_click(page, "#grid .card:nth-child(3) .dismiss")
    assert grid_items(page) != cold
    timed_click(page, "#new-visitor")
    assert grid_items(page) == cold
    assert session_cookie(page) != first and notice(page).startswith("Welcome")


def test_in_stock_filter_restricts_the_grid_and_survives_clicks(page: Any) -> None:
    assert page.locator("#grid .card.out").count() > 0  # ~30% of the catalogue is out of stock
    render = page.get_attribute("#grid", "data-render")
    page.check("#filters input[name=stock]")
    page.wait_for_function(f"() => document.getElementById('grid').dataset.render !== '{render}'")
    assert page.url.endswith("/?stock=1")
    assert page.locator("#grid .card").count() == 12 and page.locator("#grid .card.out").count() == 0
    timed_click(page, FIRST_PICK)
    assert page.locator("#grid .card.out").count() == 0 and page.is_checked("#filters input[name=stock]")


def test_bad_request_shows_a_clear_message_and_the_kiosk_carries_on(page: Any, server: KioskServer) -> None:
    before = grid_items(page)
    page.eval_on_selector(FIRST_PICK, "b => b.form.querySelector('[name=item]').value = 'no-such-item'")
    page.click(FIRST_PICK)
    page.wait_for_function("() => document.getElementById('notice').classList.contains('error')")
    assert notice(page) == "unknown item 'no-such-item'" and grid_items(page) == before
    status = page.evaluate("""async () => (await fetch('/click', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{"item": 1}'})).status""")
    assert status == 415
    timed_click(page, "#grid .card:nth-child(2) .pick")
    assert before[1] not in grid_items(page)


def test_inactivity_returns_the_screen_to_the_cold_start_list(context: Any, server: KioskServer) -> None:
    context.clear_cookies()
    pg = context.new_page()
    try:
        pg.clock.install()  # fake timers in the page: the 90 s idle timeout passes at once
        pg.goto(server.url + "/")
        cold = grid_items(pg)
        install_click_timer(pg)
        timed_click(pg, FIRST_PICK)
        first = session_cookie(pg)
        pg.clock.fast_forward(91_000)
        pg.wait_for_function("cold => [...document.querySelectorAll('#grid .card')]"
                             ".map(c => c.dataset.item).join() === cold", arg=",".join(cold))
        assert session_cookie(pg) != first
    finally:
        pg.close()


def test_click_to_grid_time_is_reported_and_a_screenshot_saved(
        page: Any, capsys: pytest.CaptureFixture[str]) -> None:
    timed_click(page, FIRST_PICK)  # warm-up: first fetch, first template render
    times = measure_clicks(page, CLICKS)
    assert len(times) == CLICKS and all(t > 0 for t in times)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "kiosk.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    report = {"clicks": CLICKS, "median_ms": statistics.median(times), "p95_ms": percentile(times, 95),
              "max_ms": max(times), "times_ms": times, "target_ms": 50}
    (ARTIFACTS / "kiosk-click-to-grid.json").write_text(json.dumps(report, indent=1))
    with capsys.disabled():  # reported, not asserted (the target is under 50 ms on this machine)
        print(f"\nkiosk click-to-grid over {CLICKS} clicks: median {report['median_ms']:.1f} ms, "
              f"p95 {report['p95_ms']:.1f} ms (target < 50 ms); screenshot {shot}")
