"""The kiosk's parts on their own: sessions, catalogue filters, settings, first-start training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgerec import Catalogue, load_bundle

pytest.importorskip("starlette", reason="the kiosk needs its extra: pip install -e '.[kiosk]'")

from examples.kiosk.bootstrap import ensure_bundle, load_dataset, movielens_path  # noqa: E402
from examples.kiosk.config import KioskConfig, parse_args  # noqa: E402
from examples.kiosk.filters import CatalogueFilters, FilterError, Filters, in_stock  # noqa: E402
from examples.kiosk.harness import percentile  # noqa: E402
from examples.kiosk.sessions import PREFIX, Sessions, new_session_id  # noqa: E402


def counter_ids() -> Any:
    n = iter(range(1, 1000))
    return lambda: f"s{next(n)}"


# -- sessions -------------------------------------------------------------------------------------
def test_sessions_accept_only_ids_they_issued(clock: Any) -> None:
    s = Sessions(10, clock=clock, new_id=counter_ids())
    a, ended = s.resolve(None)
    assert (a.id, a.number, ended) == ("s1", 1, [])
    assert s.resolve("s1")[0] is a
    b, _ = s.resolve("made-up")
    assert b.id == "s2" and s.live == 2


def test_sessions_end_after_inactivity_on_the_next_request_or_sweep(clock: Any) -> None:
    s = Sessions(10, clock=clock, new_id=counter_ids())
    s.resolve(None)
    clock.advance(9)
    assert s.resolve("s1")[0].id == "s1"  # activity keeps it alive
    clock.advance(10.5)
    visit, ended = s.resolve("s1")
    assert visit.id == "s2" and ended == ["s1"]
    clock.advance(11)
    assert s.sweep() == ["s2"] and s.live == 0 and s.ended == 2


def test_reset_ends_the_current_session_once(clock: Any) -> None:
    s = Sessions(10, clock=clock, new_id=counter_ids())
    s.resolve(None)
    visit, ended = s.reset("s1")
    assert visit.id == "s2" and ended == ["s1"]
    assert s.reset("s1")[1] == []  # already ended: nothing more to forget
    assert s.end_all() == ["s2", "s3"]


def test_session_ids_are_prefixed_and_unguessable() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith(PREFIX) and len(i) == len(PREFIX) + 16 for i in ids)


# -- filters --------------------------------------------------------------------------------------
def test_stock_is_deterministic_and_near_the_share() -> None:
    ids = [str(i) for i in range(2000)]
    share = np.mean([in_stock(i, 0.7) for i in ids])
    assert 0.65 < share < 0.75
    assert [in_stock(i, 0.7) for i in ids[:50]] == [in_stock(i, 0.7) for i in ids[:50]]
    assert all(in_stock(i, 1.0) for i in ids)


def test_genres_come_from_the_catalogue_features(kiosk_bundle: Path) -> None:
    cat = load_bundle(kiosk_bundle).catalogue
    f = CatalogueFilters(cat)
    assert f.genres == [f"Genre {g}" for g in range(8)]
    for genre, members in f.genre_items.items():  # synthetic titles name the primary genre
        assert sum(cat.titles[cat.index[i]].endswith(genre) for i in members) >= 0.8 * len(members)
    assert set().union(*f.genre_items.values()) == set(cat.item_ids)


def test_movielens_style_flags_make_multi_genre_items() -> None:
    feats = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32) / np.array([[2 ** 0.5], [1], [1]])
    cat = Catalogue(("a", "b", "c"), ("A", "B", "C"), feats.astype(np.float32),
                    ("genre:Action", "genre:Drama", "year:1990"))
    f = CatalogueFilters(cat)
    assert f.genre_items == {"Action": ("a",), "Drama": ("a", "b")}
    assert CatalogueFilters(Catalogue.plain(["x", "y"])).genres == []


def test_candidates_combine_filters_and_are_reused(kiosk_bundle: Path) -> None:
    f = CatalogueFilters(load_bundle(kiosk_bundle).catalogue)
    assert f.candidates(Filters()) is None
    both = f.candidates(Filters(in_stock=True, genre="Genre 1"))
    assert both and set(both) == f.stock & set(f.genre_items["Genre 1"])
    assert f.candidates(Filters(in_stock=True, genre="Genre 1")) is both
    assert set(f.candidates(Filters(in_stock=True))) == f.stock


@pytest.mark.parametrize("fields", [{"stock": "2"}, {"genre": "Genre 99"}, {"genre": "genre:1"}])
def test_bad_filter_values_are_refused(kiosk_bundle: Path, fields: dict[str, str]) -> None:
    with pytest.raises(FilterError):
        CatalogueFilters(load_bundle(kiosk_bundle).catalogue).parse(fields)


def test_filters_round_trip_through_their_fields(kiosk_bundle: Path) -> None:
    f = CatalogueFilters(load_bundle(kiosk_bundle).catalogue)
    for filters in (Filters(), Filters(True), Filters(False, "Genre 3"), Filters(True, "Genre 0")):
        assert f.parse(filters.query()) == filters
    assert f.parse({"stock": "on"}) == Filters(True)


# -- settings -------------------------------------------------------------------------------------
def test_cli_options_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEREC_KIOSK_PORT", "9999")
    monkeypatch.setenv("EDGEREC_KIOSK_DB", str(tmp_path / "x.db"))
    c = parse_args(["--idle-timeout", "5", "--keep-sessions", "--k", "6"])
    assert (c.port, c.db, c.idle_timeout, c.forget_sessions, c.k) == (9999, tmp_path / "x.db", 5.0, False, 6)
    assert parse_args([]).forget_sessions is True
    with pytest.raises(SystemExit):
        parse_args(["--k", "0"])
    with pytest.raises(ValueError):
        KioskConfig(idle_timeout=0)


# -- first start ----------------------------------------------------------------------------------
def test_data_source_is_movielens_when_present_else_synthetic(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEREC_ML100K", str(tmp_path / "absent"))
    assert movielens_path() is None
    assert load_dataset(None, quick=True).name == "synthetic"
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text("")
    monkeypatch.setenv("EDGEREC_ML100K", str(tmp_path / "ml"))
    assert movielens_path() == tmp_path / "ml"


def test_first_start_trains_a_bundle_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle"
    assert ensure_bundle(path, "synthetic", quick=True) == path
    assert "training one" in capsys.readouterr().out
    manifest = (path / "manifest.json").stat().st_mtime_ns
    ensure_bundle(path, "synthetic", quick=True)
    assert (path / "manifest.json").stat().st_mtime_ns == manifest
    assert "training" not in capsys.readouterr().out
    assert load_bundle(path).manifest.hyperparameters["dataset"] == "synthetic"


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 21))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (10, 19, 20)
    assert percentile([3.0], 95) == 3.0
