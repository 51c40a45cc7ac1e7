"""A device's evaluation figures from its events: the held-out rule, LOO-full ranking, live
feedback attribution, and bounds under hostile inputs (checked against a brute-force reference)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec import ConfigError, EdgeRecError, InvalidEventError, ScoringError
from edgerec.events import CONSUMED_EVENTS, EventType, Interaction
from edgerec.evaluation.metrics import rank_of_target
from edgerec.fedeval import EvalConfig, device_eval, device_eval_vector, params_score_fn, scorer_score_fn
from edgerec.privacy import l2_norm
from edgerec.types import Catalogue

N = 20
CAT = Catalogue.plain([f"i{i}" for i in range(N)])
CFG = EvalConfig()


def ev(user, item, event, ts, value=1.0):
    return Interaction(user, item, event, value, float(ts))


def fixed(scores):
    scores = np.asarray(scores, dtype=np.float64)
    return lambda items, signals: scores


class Recorder:
    """A scorer that remembers the histories it was given."""

    def __init__(self, scores):
        self.scores, self.calls = np.asarray(scores, np.float64), []

    def __call__(self, items, signals):
        self.calls.append((items.tolist(), signals.tolist()))
        return self.scores


def run(events, *, config=CFG, scorers=None, cut=100.0, since=1000.0, until=10_000.0):
    scorers = scorers or {m: fixed(-np.arange(N)) for m in config.models}
    return device_eval(events, config=config, catalogue=CAT, scorers=scorers, held_out_after=cut,
                       live_since=since, until=until)


LOO_EVENTS = [
    ev("a", "i0", "view", 10), ev("a", "i1", "click", 20), ev("a", "i2", "impression", 110),
    ev("a", "i2", "click", 120), ev("a", "i3", "purchase", 130), ev("a", "i1", "view", 140),
    ev("a", "i4", "dismiss", 150), ev("a", "i5", "rating", 160, 4.0), ev("a", "zz", "view", 170),
]


def test_held_out_events_are_new_consumptions_after_the_cut_off():
    best, worst = Recorder(-np.arange(N)), Recorder(np.arange(N))
    out = run(LOO_EVENTS, scorers={"installed": best, "candidate": worst})
    # i2, i3, i5 are held out; i1 at 140 repeats, i4 is a dismissal, zz is unknown, i2's
    # impression is not consumption, i0 and i1 are before the cut-off.
    assert out.held_out == 3
    assert out.hr == (1.0, 0.0) and out.ndcg == (1.0, 0.0)
    assert [c[0] for c in best.calls] == [[1, 0], [2, 1, 0], [4, 1, 3, 2, 1, 0]]  # most recent first
    assert best.calls[2][1] == [6, 2, 5, 3, 3, 2]  # the model's signal codes
    assert worst.calls == best.calls


def test_the_most_recent_held_out_events_and_the_window_bounds():
    calls = Recorder(-np.arange(N))
    out = run(LOO_EVENTS, config=EvalConfig(max_held_out=2), scorers={"installed": calls, "candidate": calls})
    assert out.held_out == 2 and [c[0][0] for c in calls.calls[::2]] == [2, 4]  # i3, then i5
    assert run(LOO_EVENTS, cut=125.0).held_out == 2  # i3, i5
    assert run(LOO_EVENTS, until=135.0).held_out == 2  # i2, i3: later events do not exist
    assert run(LOO_EVENTS, cut=160.0).held_out == 0
    empty = run([], cut=0.0)
    assert (empty.held_out, empty.hr, empty.impressions) == (0, (0.0, 0.0), 0)


def test_histories_are_cut_but_everything_seen_is_excluded():
    cfg = EvalConfig(models=("installed",), max_history=2)
    rec = Recorder(np.arange(N))  # prefers high rows: i19 first
    out = run(LOO_EVENTS, config=cfg, scorers={"installed": rec})
    assert [c[0] for c in rec.calls] == [[1, 0], [2, 1], [4, 1]]
    # i5 ranks after i6..i19 (14 items): i0..i4 are excluded though only two are in the history
    scores = np.arange(N, dtype=float)
    assert rank_of_target(scores[None], np.array([5]), [np.array([0, 1, 2, 3, 4])])[0] == 14
    assert out.hr == (0.0,)


def test_users_have_their_own_histories_and_ties_keep_the_given_order():
    events = [ev("a", "i0", "view", 200), ev("b", "i1", "view", 200), ev("a", "i2", "view", 200)]
    rec = Recorder(-np.arange(N))
    run(events, config=EvalConfig(models=("installed",)), scorers={"installed": rec})
    assert [c[0] for c in rec.calls] == [[], [], [0]]


def test_nan_and_ties_count_against_the_held_out_item():
    events = [ev("a", "i0", "view", 200)]
    one = EvalConfig(models=("installed",), top_k=1)
    assert run(events, config=one, scorers={"installed": fixed(np.zeros(N))}).hr == (0.0,)
    nan_elsewhere = np.full(N, np.nan)
    nan_elsewhere[0] = 1.0
    assert run(events, config=one, scorers={"installed": fixed(nan_elsewhere)}).hr == (0.0,)
    nan_target = np.arange(N, dtype=float)
    nan_target[0] = np.nan
    assert run(events, config=EvalConfig(models=("installed",), top_k=N),
               scorers={"installed": fixed(nan_target)}).hr == (1.0,)  # rank N-1 < N
    inf_target = np.zeros(N)
    inf_target[0] = np.inf
    assert run(events, config=one, scorers={"installed": fixed(inf_target)}).ndcg == (1.0,)


LIVE_EVENTS = [
    ev("a", "i0", "impression", 1000), ev("a", "i0", "click", 1050), ev("a", "i0", "click", 1060),
    ev("a", "i1", "impression", 1100), ev("a", "i1", "click", 1300),
    ev("a", "i2", "impression", 1400), ev("a", "i2", "impression", 1410), ev("a", "i2", "click", 1420),
    ev("a", "i2", "purchase", 1430), ev("a", "i3", "click", 1500), ev("b", "i0", "impression", 1500),
    ev("a", "i0", "dismiss", 1510), ev("b", "i0", "dismiss", 1520), ev("a", "i4", "impression", 999),
    ev("a", "i4", "click", 1001), ev("a", "zz", "impression", 1600), ev("a", "i5", "impression", 2000),
    ev("a", "i6", "click", 1700), ev("a", "i6", "impression", 1700),
]


def test_live_feedback_is_attributed_to_the_latest_impression():
    out = run(LIVE_EVENTS, config=EvalConfig(attribution_s=100.0), since=1000.0, until=2000.0)
    assert (out.impressions, out.clicks, out.purchases, out.dismissals) == (6, 3, 1, 1)
    capped = run(LIVE_EVENTS, config=EvalConfig(attribution_s=100.0, max_impressions=3), since=1000.0,
                 until=2000.0)
    assert (capped.impressions, capped.clicks, capped.purchases, capped.dismissals) == (3, 2, 1, 1)
    later = run(LIVE_EVENTS, config=EvalConfig(attribution_s=1e6), since=1000.0, until=2000.0)
    assert (later.impressions, later.clicks, later.dismissals) == (6, 4, 2)
    assert run(LIVE_EVENTS, since=5000.0).impressions == 0


def test_records_may_be_exported_dicts_and_int_ids():
    records = [{"user": 7, "item": "i1", "event": "view", "value": 1.0, "ts": 200, "event_id": None},
               {"user": 7, "item": "i2", "event": "click", "ts": 300}]
    assert run(records).held_out == 2


@pytest.mark.parametrize("bad", [
    [None], ["view"], [{"user": "a", "item": "i1", "event": "view"}],
    [{"user": "a", "item": "i1", "event": "zoom", "ts": 1.0}],
    [{"user": "a", "item": "i1", "event": ["view"], "ts": 1.0}],
    [{"user": "a", "item": 1.5, "event": "view", "ts": 1.0}],
    [{"user": None, "item": "i1", "event": "view", "ts": 1.0}],
    [{"user": "a", "item": "i1", "event": "view", "ts": math.nan}],
    [{"user": "a", "item": "i1", "event": "view", "ts": -1.0}],
    [{"user": "a", "item": "i1", "event": "view", "ts": 10**400}],
    [{"user": "a", "item": "i1", "event": "view", "ts": "1"}],
    [{"user": "a", "item": "i1", "event": "rating", "value": math.inf, "ts": 1.0}],
    [{"user": "a", "item": "i1", "event": "rating", "value": True, "ts": 1.0}],
    {"user": "a"}, "events", 5,
])
def test_malformed_events_are_refused(bad):
    with pytest.raises(InvalidEventError):
        run(bad)


@pytest.mark.parametrize("scores", [np.zeros(N - 1), np.zeros((1, N)), np.array(["x"] * N), None,
                                    np.zeros(N, complex)])
def test_scores_of_the_wrong_shape_are_a_scoring_error(scores):
    with pytest.raises(ScoringError):
        run(LOO_EVENTS, scorers={"installed": fixed(np.zeros(N)), "candidate": lambda i, s: scores})


def test_a_failing_scorer_is_a_scoring_error():
    def broken(items, signals):
        raise RuntimeError("session gone")

    with pytest.raises(ScoringError, match="session gone") as info:
        run(LOO_EVENTS, scorers={"installed": broken, "candidate": broken})
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("kw", [
    {"config": None}, {"catalogue": Catalogue.plain([])}, {"scorers": {"installed": fixed(np.zeros(N))}},
    {"scorers": [fixed(np.zeros(N))]}, {"held_out_after": math.nan}, {"until": math.inf},
    {"live_since": "0"},
])
def test_bad_parameters_are_config_errors(kw):
    args = dict(config=CFG, catalogue=CAT, scorers={m: fixed(np.zeros(N)) for m in CFG.models},
                held_out_after=0.0, live_since=0.0, until=1.0)
    with pytest.raises(ConfigError):
        device_eval([], **{**args, **kw})


# -- against a brute-force reference, on hypothesis-generated hostile event lists --------------

def reference(events, cfg, scores, cut, since, until):
    """The module's rules, written the slow obvious way."""
    index = CAT.index
    evs = [e for e in events if e.ts < until]
    evs = [evs[i] for i in sorted(range(len(evs)), key=lambda i: (evs[i].ts, evs[i].event != "impression", i))]
    held = []
    for p, e in enumerate(evs):
        prior = [f for f in evs[:p] if f.user == e.user and f.event != "impression"]
        if e.event in CONSUMED_EVENTS and e.item in index and e.ts > cut and e.item not in {f.item for f in prior}:
            held.append((p, np.array([index[f.item] for f in prior if f.item in index], np.int64)))
    held = held[-cfg.max_held_out:]
    hr, ndcg = [], []
    for m in cfg.models:
        ranks = np.array([rank_of_target(scores[m][None], np.array([index[evs[p].item]]), [ex])[0]
                          for p, ex in held])
        hits = ranks < cfg.top_k
        hr.append(float(hits.mean()) if len(held) else 0.0)
        ndcg.append(float(np.where(hits, 1 / np.log2(ranks + 2.0), 0).mean()) if len(held) else 0.0)
    window = [e for e in evs if e.ts >= since and e.item in index]
    imps = [j for j, e in enumerate(window) if e.event == "impression"]
    flags = dict.fromkeys(imps, 0)
    for j, e in enumerate(window):
        bit = {"click": 1, "purchase": 2, "dismiss": 4}.get(e.event)
        before = [i for i in imps if i < j and (window[i].user, window[i].item) == (e.user, e.item)]
        if bit and before and e.ts - window[before[-1]].ts <= cfg.attribution_s:
            flags[before[-1]] |= bit
    kept = [flags[i] for i in imps[-cfg.max_impressions:]]
    live = (len(kept),) + tuple(sum(1 for f in kept if f & b) for b in (1, 2, 4))
    return len(held), hr, ndcg, live


_items = st.sampled_from([f"i{i}" for i in range(N)] + ["zz", 3])
_stamps = st.one_of(st.sampled_from([0.0, 50.0, 100.0, 100.0, 150.0, 1000.0, 1e9]),
                    st.floats(0, 2000, allow_nan=False))
_events = st.lists(st.builds(ev, st.sampled_from(["a", "b", 1]), _items,
                             st.sampled_from([e.value for e in EventType]), _stamps,
                             st.one_of(st.floats(-1e308, 1e308), st.sampled_from([-5.0, 0.0, 3.0]))),
                   max_size=60)
_score_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events, st.lists(_score_values, min_size=N, max_size=N), st.lists(_score_values, min_size=N, max_size=N),
       st.sampled_from([1, 2, 5]), st.sampled_from([1, 3, 100]), st.sampled_from([0.0, 30.0, 1e9]),
       st.sampled_from([-1.0, 100.0, 1e12]), st.sampled_from([0.0, 120.0]), st.sampled_from([1500.0, 1e10]))
def test_hostile_event_lists_give_the_reference_figures_and_a_bounded_vector(
        events, s0, s1, held_cap, imp_cap, attribution, cut, since, until):
    cfg = EvalConfig(max_held_out=held_cap, max_impressions=imp_cap, attribution_s=attribution, top_k=3)
    scores = {"installed": np.array(s0), "candidate": np.array(s1)}
    out = device_eval(events, config=cfg, catalogue=CAT, scorers={m: fixed(s) for m, s in scores.items()},
                      held_out_after=cut, live_since=since, until=until)
    held, hr, ndcg, live = reference(events, cfg, scores, cut, since, until)
    assert out.held_out == held
    assert out.hr == pytest.approx(tuple(hr), abs=1e-12) and out.ndcg == pytest.approx(tuple(ndcg), abs=1e-12)
    assert (out.impressions, out.clicks, out.purchases, out.dismissals) == live
    vec = out.vector()
    assert np.all((vec >= 0) & (vec <= 1)) and l2_norm(vec) <= cfg.layout.l2_bound


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3),
                          st.fixed_dictionaries({"user": st.one_of(st.text(max_size=2), st.integers()),
                                                 "item": _items,
                                                 "event": st.one_of(st.text(max_size=6), st.sampled_from(["view", "click"])),
                                                 "ts": st.one_of(st.floats(), st.integers(-5, 10**20)),
                                                 "value": st.one_of(st.floats(), st.booleans())})),
                max_size=10),
       st.lists(_score_values, min_size=0, max_size=N + 1))
def test_anything_gives_a_bounded_vector_or_an_edgerec_error(records, scores):
    try:
        vec = device_eval_vector(records, config=CFG, catalogue=CAT,
                                 scorers={m: fixed(scores) for m in CFG.models},
                                 held_out_after=0.0, live_since=0.0, until=1e30)
    except EdgeRecError:
        return
    assert np.all((vec >= 0) & (vec <= 1)) and l2_norm(vec) <= CFG.layout.l2_bound


def test_many_events_cost_linear_time_and_few_scoring_calls():
    rng = np.random.default_rng(0)
    n = 200_000
    kinds = [e.value for e in EventType]
    events = [ev(f"u{u}", f"i{i}" if i < N else "zz", kinds[k], float(t))
              for u, i, k, t in zip(rng.integers(0, 50, n), rng.integers(0, N + 2, n),
                                    rng.integers(0, len(kinds), n), rng.integers(0, 1000, n))]
    events += [ev("new", f"i{i}", "view", 5000.0) for i in range(N)]  # same timestamp, all new
    rec = Recorder(rng.normal(size=N))
    start = time.perf_counter()
    out = run(events, scorers={"installed": rec, "candidate": rec}, cut=4000.0, since=900.0, until=6000.0)
    assert time.perf_counter() - start < 30.0
    assert out.held_out == 5 and len(rec.calls) == 10
    assert out.impressions == 100 and l2_norm(out.vector()) <= CFG.layout.l2_bound
    assert [c[0] for c in rec.calls[::2]][0] == list(range(14, -1, -1))  # i15's history: i14..i0


# -- the two scoring paths edgerec has ---------------------------------------------------------

def test_onnx_and_numpy_scoring_functions_agree(trained_bundle):
    from edgerec.bundle import load_bundle
    from edgerec.scoring import Scorer

    bundle = load_bundle(trained_bundle)
    cat, cfg = bundle.catalogue, bundle.config
    int8 = scorer_score_fn(Scorer(bundle.model_path, len(cat), cfg.history))
    float_ = params_score_fn(bundle.params, cat.features, cfg.history)
    items, signals = np.array([3, 5, 7], np.int64), np.array([2, 3, 5], np.int64)
    a, b = int8(items, signals), float_(items, signals)
    assert a.shape == b.shape == (len(cat),)
    assert np.corrcoef(a, b)[0, 1] > 0.95
    adapter = scorer_score_fn(Scorer(bundle.model_path, len(cat), cfg.history), np.zeros(cfg.dim))
    assert np.allclose(adapter(items, signals), a)
    events = [ev("u", cat.item_ids[i], "click", 100.0 + t) for t, i in enumerate([3, 5, 7, 9, 11, 13])]
    out = device_eval(events, config=EvalConfig(max_held_out=3), catalogue=cat,
                      scorers={"installed": int8, "candidate": float_}, held_out_after=102.0,
                      live_since=0.0, until=1000.0)
    assert out.held_out == 3
