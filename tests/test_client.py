"""The facade as an app uses it: open, log, recommend, over a real SQLite file and the int8 graph."""

from __future__ import annotations

import re
from collections import Counter

import pytest

import edgerec


def _genre(title: str) -> str:
    return re.search(r"Genre \d+", title).group(0)


@pytest.fixture
def rec(tmp_path, trained_bundle):
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as r:
        yield r


def test_quickstart(rec):
    rec.log(user="u1", item="50", event="click")  # as in README.md
    recs = rec.recommend(user="u1", k=10)
    assert len(recs) == 10
    assert all(isinstance(r, edgerec.Recommendation) for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert "50" not in [r.item for r in recs]
    assert len({r.item for r in recs}) == 10
    title = rec.bundle.catalogue.titles[rec.bundle.catalogue.item_ids.index("50")]
    assert (recs[0].because, recs[0].reason) == ("50", f"because you clicked {title}")


def test_cold_start_is_a_popular_list(rec, trained_bundle):
    recs = rec.recommend(user="nobody", k=10)
    assert len(recs) == 10
    assert all(r.reason == "popular right now" and r.because is None for r in recs)
    assert [r.item for r in rec.recommend(user="someone-else", k=10)] == [r.item for r in recs]


def test_a_click_changes_the_very_next_answer(rec):
    cat = rec.bundle.catalogue
    before = [r.item for r in rec.recommend(user="u1", k=10)]
    genre = "Genre 3"
    clicked = [i for i, t in zip(cat.item_ids, cat.titles) if genre in t][:4]
    for item in clicked:
        rec.log(user="u1", item=item, event="click")
    after = rec.recommend(user="u1", k=10)
    assert [r.item for r in after] != before
    assert not set(clicked) & {r.item for r in after}
    # The planted structure: after clicks in one genre, that genre dominates what comes next.
    genres = Counter(_genre(r.title) for r in after)
    assert genres[genre] >= 5, genres
    assert any(r.because in clicked and r.reason.startswith("because you clicked Item") for r in after)


def test_dismissed_items_disappear_even_when_seen_items_may_return(rec):
    first = rec.recommend(user="u2", k=5)[0].item
    rec.log(user="u2", item=first, event="dismiss")
    assert first not in [r.item for r in rec.recommend(user="u2", k=20)]
    assert first not in [r.item for r in rec.recommend(user="u2", k=20, exclude_seen=False)]
    rec.log(user="u2", item="7", event="purchase")
    again = [r.item for r in rec.recommend(user="u2", k=len(rec.bundle.catalogue), exclude_seen=False)]
    assert "7" in again
    assert "7" not in [r.item for r in rec.recommend(user="u2", k=200)]


def test_candidates_and_exclude_restrict_the_answer(rec):
    pool = ["1", "2", "3", "4", "5", "not-in-catalogue"]
    recs = rec.recommend(user="u3", k=10, candidates=pool, exclude=["2"])
    assert {r.item for r in recs} == {"1", "3", "4", "5"}
    assert {r.item for r in rec.recommend(user="u3", k=2, candidates=pool)} <= set(pool)


def test_impressions_are_not_consumption(rec):
    top = rec.recommend(user="u4", k=3)
    for r in top:
        rec.log(user="u4", item=r.item, event="impression")
    assert [r.item for r in rec.recommend(user="u4", k=3)] == [r.item for r in top]


def test_unknown_items_are_stored_ignored_by_recommend_and_warned_about_once(rec):
    cold = [r.item for r in rec.recommend(user="u5", k=4)]
    with pytest.warns(edgerec.UnknownItemWarning, match=r"item 'brand-new-item' is not in the installed "
                      r"model's catalogue \(model version 1, 120 items\): the event is stored") as caught:
        assert rec.log(user="u5", item="brand-new-item", event="purchase")
    assert caught[0].filename == __file__  # points at the app's call, not at edgerec
    assert [e["item"] for e in rec.export("u5")] == ["brand-new-item"]  # offline-first: kept
    assert [r.item for r in rec.recommend(user="u5", k=4)] == cold  # and ignored
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither again, nor for a known item, nor for a retry
        rec.log(user="u5", item="brand-new-item", event="view")
        rec.log(user="u5", item="7", event="click")
    events = ({"user": "u5", "item": item} for item in ("7", "brand-new-item", "other-new", "other-new"))
    with pytest.warns(edgerec.UnknownItemWarning) as caught:  # a generator is read only once
        assert rec.log_many(events) == 4
    assert [str(w.message).split()[1] for w in caught] == ["'other-new'"]


def test_bad_input_raises_clearly_and_keeps_what_was_stored(rec):
    rec.log(user="u6", item="1")
    with pytest.raises(edgerec.InvalidEventError, match="unknown event type"):
        rec.log(user="u6", item="2", event="teleport")
    with pytest.raises(edgerec.InvalidEventError):
        rec.log_many([{"user": "u6", "item": "3"}, {"user": "u6", "item": "4", "value": float("nan")}])
    assert [e["item"] for e in rec.export("u6")] == ["1"]
    with pytest.raises(edgerec.ConfigError):
        rec.recommend(user="u6", k=0)
    with pytest.raises(edgerec.InvalidEventError):
        rec.recommend(user="", k=3)


def test_forget_and_export(rec):
    rec.log_many([{"user": "u7", "item": str(i), "event": "view", "ts": 100.0 + i} for i in range(3)])
    exported = rec.export("u7")
    assert [(e["item"], e["event"]) for e in exported] == [("0", "view"), ("1", "view"), ("2", "view")]
    assert rec.forget("u7") == 3
    assert rec.export("u7") == []
    assert all(r.reason == "popular right now" for r in rec.recommend(user="u7", k=3))


def test_state_survives_reopening(tmp_path, trained_bundle):
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as r:
        r.log(user="u8", item="5", event="click", event_id="e1")
        first = [x.item for x in r.recommend(user="u8", k=5)]
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as r:
        assert r.log(user="u8", item="5", event="click", event_id="e1") is False
        assert [x.item for x in r.recommend(user="u8", k=5)] == first
        assert r.model_version == 1


def test_fine_tune_personalises_at_once_and_sends_nothing(tmp_path, trained_bundle):
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as rec:
        cat = rec.bundle.catalogue
        liked = [i for i, t in zip(cat.item_ids, cat.titles) if "Genre 2" in t][:30]
        rec.log_many([{"user": "me", "item": item, "event": "click", "ts": 1000.0 + n}
                      for n, item in enumerate(liked)])
        before = [(r.item, r.score) for r in rec.recommend("me", k=10)]
        update = rec.fine_tune(edgerec.FineTuneConfig(epochs=1, adapter_epochs=3))
        assert update.n_examples == len(liked) and update.loss_after < update.loss_before
        after = [(r.item, r.score) for r in rec.recommend("me", k=10)]
        assert after != before
        assert rec.ledger.entries() == []  # fine-tuning alone sends nothing
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as rec:
        assert [(r.item, r.score) for r in rec.recommend("me", k=10)] == after  # adapter persisted
        rec.forget("someone")
        assert [(r.item, r.score) for r in rec.recommend("me", k=10)] == before  # erased with data


def test_forget_does_not_hold_back_the_next_round(tmp_path, trained_bundle):
    from edgerec.sync.device import SyncRecords

    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as rec:
        rec.log_many([{"user": u, "item": str(i)} for u in ("a", "b") for i in range(5)])
        records = SyncRecords(rec.device_state, rec.clock)
        records.save_mark(rec.store.high_water_mark())  # as after taking part in a round
        assert rec.forget("a") == 5
        assert rec.store.count_since(records.last_mark()) == 0  # not -5
        rec.log("b", "9")
        assert rec.store.count_since(records.last_mark()) == 1  # the new event counts as new


def test_forget_returns_an_erasure_result_and_export_reads_old_ids(tmp_path, trained_bundle):
    with edgerec.open(tmp_path / "app.db", bundle=trained_bundle) as rec:
        rec.log_many([{"user": "a", "item": str(i)} for i in range(3)])
        result = rec.forget("a")
        assert isinstance(result, edgerec.ErasureResult)
        assert result == result.deleted == 3 and result.erased_on_disk and not result.pending
        assert rec.export("a") == [] and rec.forget("a") == 0
        # A read or erase of an id the write rules refuse is a lookup that finds nothing, not
        # an error: ids stored by older versions must stay erasable.
        assert rec.export("a\u200b") == [] and rec.forget("a\u200b") == 0
        with pytest.raises(edgerec.InvalidEventError, match="user"):
            rec.forget(3.5)


def test_retention_applies_on_open_and_prune_applies_it_at_once(tmp_path, trained_bundle):
    path, now = tmp_path / "app.db", [2000.0]
    with edgerec.open(path, bundle=trained_bundle) as rec:
        rec.log_many([{"user": "a", "item": str(i % 10), "ts": 1000.0 + i} for i in range(30)])
    keep = edgerec.Retention(max_rows=10, max_age_s=1000.0)
    with edgerec.open(path, bundle=trained_bundle, retention=keep, clock=lambda: now[0]) as rec:
        assert rec.store.count() == 10  # opening enforced max_rows: the 10 newest are left
        assert [e["ts"] for e in rec.export("a")] == [1020.0 + i for i in range(10)]
        now[0] = 2025.5  # ts 1020..1025 are now older than max_age_s
        assert rec.prune() == 6
        assert [e["ts"] for e in rec.export("a")] == [1026.0 + i for i in range(4)]
        assert rec.prune() == 0


def test_a_recommendation_never_mixes_two_installed_models(rec, trained_bundle):
    import threading

    from edgerec import load_bundle
    from edgerec.scoring import Scorer

    other = load_bundle(trained_bundle)
    errors, stop = [], threading.Event()

    def swap():
        while not stop.is_set():
            rec.install(other, scorer=Scorer(other.model_path, len(other.catalogue), other.config.history))

    t = threading.Thread(target=swap)
    t.start()
    try:
        for n in range(200):
            try:
                assert len(rec.recommend(user="u9", k=5, candidates=["1", "2", "3", "4", "5", "6"])) == 5
            except Exception as exc:  # noqa: BLE001 - any failure under a swap is the bug
                errors.append(exc)
    finally:
        stop.set()
        t.join()
    assert errors == []
