"""The kiosk's routes through Starlette's TestClient: the real app, edgerec and SQLite underneath."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the kiosk needs its extra: pip install -e '.[kiosk]'")

from examples.kiosk.app import COOKIE, FETCH_HEADER  # noqa: E402

FETCH = {FETCH_HEADER: "1"}
K = 12


def items(page: str) -> list[str]:
    """Item ids of the grid, in order."""
    return re.findall(r'<li class="card[^"]*" data-item="([^"]+)"', page)


def render_id(page: str) -> int:
    return int(re.search(r'id="grid" data-render="(\d+)"', page).group(1))


def post(client: Any, action: str, **fields: str) -> Any:
    return client.post(f"/{action}", data=fields, headers=FETCH)


def test_page_shows_k_cold_start_cards_and_sets_a_session_cookie(client: Any) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.cookies.get(COOKIE, "").startswith("kiosk-")
    shown = items(r.text)
    assert len(shown) == K and len(set(shown)) == K
    assert r.text.count("popular right now") == K  # no history yet: the cold-start list
    assert "model v1" in r.text and 'data-visitor="1"' in r.text


def test_click_logs_and_the_answer_is_the_new_grid_without_the_item(client: Any) -> None:
    first = client.get("/").text
    clicked = items(first)[0]
    r = post(client, "click", item=clicked)
    assert r.status_code == 200
    assert r.text.lstrip().startswith('<main id="kiosk"')  # a fragment for kiosk.js to swap in
    assert clicked not in items(r.text) and len(items(r.text)) == K
    assert render_id(r.text) > render_id(first)
    title = client.kiosk.rec.bundle.catalogue.title(client.kiosk.rec.bundle.catalogue.index[clicked])
    assert f"You picked {html.escape(title)}" in r.text
    assert "because you clicked" in r.text  # the reasons now come from the click
    session = client.cookies[COOKIE]
    assert [(e.item, e.event) for e in client.kiosk.rec.store.history(session)] == [(clicked, "click")]


def test_dismissed_items_stay_gone_for_the_session_only(client: Any) -> None:
    shown = items(client.get("/").text)
    r = post(client, "dismiss", item=shown[3])
    assert r.status_code == 200 and shown[3] not in items(r.text) and "Hidden:" in r.text
    r = post(client, "click", item=items(r.text)[0])
    assert shown[3] not in items(r.text)
    mine = client.cookies[COOKIE]
    client.cookies.clear()
    assert shown[3] in items(client.get("/").text)  # another visitor still gets the full list
    client.cookies.set(COOKIE, mine, domain="kiosk.local")
    assert shown[3] not in items(client.get("/").text)


def test_without_javascript_actions_redirect_back_with_the_filters(client: Any) -> None:
    client.get("/")
    item = items(client.get("/?stock=1").text)[0]
    r = client.post("/click", data={"item": item, "stock": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?stock=1"
    assert item not in items(client.get(r.headers["location"]).text)


def test_new_visitor_gets_a_new_session_and_the_cold_start_list(client: Any) -> None:
    cold = items(client.get("/").text)
    old = client.cookies[COOKIE]
    post(client, "click", item=cold[0])
    post(client, "dismiss", item=cold[1])
    r = post(client, "reset")
    assert r.status_code == 200
    assert client.cookies[COOKIE] != old and items(r.text) == cold
    assert 'data-visitor="2"' in r.text
    assert client.kiosk.rec.store.count(old) == 0  # forgotten once the session ended
    assert client.kiosk.forgotten == 2


def test_idle_session_ends_and_its_events_are_forgotten(client: Any, clock: Any) -> None:
    cold = items(client.get("/").text)
    old = client.cookies[COOKIE]
    post(client, "click", item=cold[0])
    clock.advance(client.kiosk.config.idle_timeout + 1)
    r = client.get("/")
    assert client.cookies[COOKIE] != old and items(r.text) == cold
    assert client.kiosk.rec.store.count(old) == 0


def test_the_sweeper_ends_idle_sessions_without_a_request(client: Any, clock: Any) -> None:
    client.get("/")
    old = client.cookies[COOKIE]
    post(client, "click", item=items(client.get("/").text)[0])
    clock.advance(client.kiosk.config.idle_timeout + 1)
    ended = client.kiosk.sessions.sweep()
    assert ended == [old] and client.kiosk.end(ended) == 1
    assert client.kiosk.sessions.live == 0


def test_kept_sessions_are_not_forgotten(make_kiosk: Any, serve: Any) -> None:
    kiosk = make_kiosk(forget_sessions=False)
    with serve(kiosk) as c:
        c.post("/click", data={"item": items(c.get("/").text)[0]}, headers=FETCH)
        old = c.cookies[COOKIE]
        c.post("/reset", headers=FETCH)
        assert kiosk.rec.store.count(old) == 1


def test_a_forged_or_stale_cookie_never_selects_a_stored_user(client: Any) -> None:
    client.kiosk.rec.log("someone-else", "5", "click")
    client.get("/")
    client.cookies.clear()
    client.cookies.set(COOKIE, "someone-else", domain="kiosk.local")
    r = client.get("/")
    assert client.cookies[COOKIE] != "someone-else"
    assert r.text.count("popular right now") == K


def test_stock_and_genre_filters_restrict_the_candidates(client: Any) -> None:
    f = client.kiosk.filters
    in_stock = items(client.get("/grid?stock=1").text)
    assert len(in_stock) == K and set(in_stock) <= f.stock
    genre = f.genres[2]
    both = items(client.get("/grid", params={"stock": "1", "genre": genre}).text)
    assert both and set(both) <= f.stock & set(f.genre_items[genre])
    page = client.get("/", params={"genre": genre}).text
    assert f'<option value="{genre}" selected>' in page
    assert '<input type="hidden" name="genre" value="' + genre + '">' in page  # kept by actions


def test_a_filter_with_nothing_left_says_so(client: Any) -> None:
    f = client.kiosk.filters
    genre = min(f.genres, key=lambda g: len(f.genre_items[g]))
    for item in f.genre_items[genre]:
        post(client, "dismiss", item=item, genre=genre)
    r = client.get("/grid", params={"genre": genre})
    assert items(r.text) == [] and "Nothing left to show" in r.text


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "message"),
    [
        ("/click", "item=no-such-item", None, 404, "unknown item 'no-such-item'"),
        ("/dismiss", "item=", None, 400, "missing form field 'item'"),
        ("/click", "", None, 400, "missing form field 'item'"),
        ("/click", "item=1&item=2", None, 400, "given 2 times"),
        ("/click", "item=%FF", None, 400, "malformed form"),
        ("/click", "garbage", None, 400, "malformed form"),
        ("/click", "item=1&genre=Polka", None, 400, "unknown genre 'Polka'"),
        ("/click", "item=1&stock=maybe", None, 400, "stock must be 1 or 0"),
        ("/click", "item=" + "x" * 300, None, 400, "longer than 200"),
        ("/click", "item=" + "x" * 5000, None, 413, "larger than 4096"),
        ("/click", '{"item": "1"}', "application/json", 415, "x-www-form-urlencoded"),
        ("/click", "item=1", "multipart/form-data; boundary=x", 415, "x-www-form-urlencoded"),
        ("/reset", "reason=%FF", None, 400, "malformed form"),
        ("/click", "item=%00", None, 404, "unknown item"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_kiosk_keeps_working(
        client: Any, path: str, body: str, ctype: str | None, status: int, message: str) -> None:
    client.get("/")
    headers = {**FETCH, "content-type": ctype or "application/x-www-form-urlencoded"}
    r = client.post(path, content=body.encode(), headers=headers)
    assert r.status_code == status, r.text
    assert message in r.text
    assert client.get("/healthz").json()["ok"] is True
    assert len(items(client.get("/").text)) == K


def test_bad_queries_and_methods(client: Any) -> None:
    assert client.get("/grid?genre=Polka").status_code == 400
    assert client.get("/grid?stock=1&stock=1").status_code == 400
    assert client.get("/click").status_code == 405
    assert client.get("/nope").status_code == 404


def test_operator_view_shows_the_model_and_hides_federation_without_a_server(client: Any) -> None:
    post(client, "click", item=items(client.get("/").text)[0])
    page = client.get("/operator").text
    assert '<dd id="model-version">1</dd>' in page and "synthetic" in page
    assert 'id="federation"' not in page and "ledger" not in page.lower()
    data = client.get("/operator.json").json()
    assert data["model_version"] == 1 and data["federation"] is None
    assert data["events_this_run"] == 1 and data["actions_timed"] == 1 and data["action_ms_p50"] > 0
    assert data["visitors"] == 1 and data["live_sessions"] == 1


def test_startup_forgets_sessions_a_previous_run_left_and_shutdown_forgets_live_ones(
        make_kiosk: Any, serve: Any) -> None:
    kiosk = make_kiosk()
    kiosk.rec.log("kiosk-0123456789abcdef", "1", "click")
    kiosk.rec.log("app-user", "1", "click")
    with serve(kiosk) as c:
        assert kiosk.rec.store.users() == ["app-user"]
        c.post("/click", data={"item": items(c.get("/").text)[0]}, headers=FETCH)
        assert kiosk.rec.store.count() == 2
    assert kiosk.rec.store.users() == ["app-user"]
