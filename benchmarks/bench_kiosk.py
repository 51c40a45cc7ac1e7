"""Kiosk click-to-grid time, measured in headless Chromium (the browser test's driver).

    python -m benchmarks.bench_kiosk [--clicks 50] [--data synthetic|PATH]

Starts ``python -m examples.kiosk`` on a free local port with a quick bundle (MovieLens-100K when
present, else synthetic), drives Debian's /usr/bin/chromium through Playwright, clicks the first
card ``--clicks`` times and times, in the page, each click until the re-rendered grid is in the
DOM. Reported, not asserted; the target is under 50 ms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import httpx

from benchmarks._report import table, write_section
from examples.kiosk.bootstrap import train_kiosk_bundle
from examples.kiosk.harness import (KioskServer, chromium_path, install_click_timer, measure_clicks,
                                    open_browser, percentile, timed_click)


def run(clicks: int, data: str | None, work: Path) -> list[object]:
    """One measured run: a table row."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium at /usr/bin/chromium: apt-get install chromium")
    manifest = train_kiosk_bundle(work / "bundle", data, quick=True)
    with KioskServer(work / "kiosk.db", work / "bundle") as server, sync_playwright() as pw, \
            open_browser(pw, executable) as context:
        page = context.new_page()
        page.goto(server.url + "/")
        install_click_timer(page)
        timed_click(page, "#grid .card:first-child .pick")  # warm-up
        times = measure_clicks(page, clicks)
        op = httpx.get(server.url + "/operator.json").json()
    label = f"{manifest.hyperparameters['dataset']} ({manifest.n_items} items)"
    return [label, clicks, f"{statistics.median(times):.1f}", f"{percentile(times, 95):.1f}",
            f"{max(times):.1f}", f"{op['action_ms_p50']:.2f}", f"{op['action_ms_p95']:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--data", default=None, help="'synthetic' or a MovieLens folder (default: auto)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgerec-bench-kiosk-"))
    try:
        row = run(args.clicks, args.data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = (
        "A real click in headless Chromium (Debian's, via Playwright) on a grid card, until the "
        "grid re-rendered by the server is in the DOM: `fetch` POST, `rec.log()`, "
        "`rec.recommend(k=12)`, Jinja2 render, fragment swap. Timed in the page with "
        "`performance.now()`, from a capturing click listener to a MutationObserver; one warm-up "
        "click first. The server columns are the kiosk's own time per action (form parsing to "
        "rendered response), from its operator view. Target: under 50 ms.\n\n"
        + table(["catalogue", "clicks", "median ms", "p95 ms", "max ms", "server median ms",
                 "server p95 ms"], [row])
    )
    cmd = f"python -m benchmarks.bench_kiosk --clicks {args.clicks}"
    write_section("kiosk", "Kiosk: click to updated grid in a real browser", cmd, body)


if __name__ == "__main__":
    main()
