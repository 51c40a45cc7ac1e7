"""The evaluation vector's layout: slots, bounds, encoding, and the L2 bound under any input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec import ConfigError
from edgerec.fedeval import LAYOUT_VERSION, DeviceEval, EvalConfig, EvalLayout
from edgerec.privacy import clip_l2, l2_norm

LAYOUT = EvalConfig().layout


def test_the_version_1_layout_and_its_bound():
    assert LAYOUT.version == LAYOUT_VERSION == 1
    assert len(LAYOUT) == 23 and len(set(LAYOUT.names)) == 23
    assert LAYOUT.names[:3] == ("loo.devices", "installed.hr@10", "installed.hr@10.sq")
    assert "candidate-installed.ndcg@10.sq" in LAYOUT.index
    assert "live.impressions*dismissals" in LAYOUT.index
    assert LAYOUT.l2_bound == pytest.approx(math.sqrt(23))
    alone = EvalConfig(models=("installed",)).layout
    assert len(alone) == 17 and alone.l2_bound == pytest.approx(math.sqrt(17))
    assert not any("-" in name for name in alone.names)
    three = EvalConfig(models=("a", "b", "c"), top_k=20).layout
    assert len(three) == 1 + 12 + 4 + 12 and "c-a.hr@20.sq" in three.index


def test_the_key_names_every_parameter_that_changes_the_meaning():
    assert LAYOUT.key == ("edgerec.fedeval/1;models=installed,candidate;k=10;held_out=5;"
                          "impressions=100;attribution_s=86400;history=4096")
    keys = {EvalConfig(**kw).layout.key for kw in
            ({}, {"top_k": 20}, {"max_held_out": 3}, {"max_impressions": 50}, {"attribution_s": 60.0},
             {"max_history": 50}, {"models": ("installed",)})}
    assert len(keys) == 7
    assert EvalConfig().layout.key == LAYOUT.key  # a config's layout is a pure function of it


@pytest.mark.parametrize("kw", [
    {"models": ()}, {"models": ["installed"]}, {"models": ("a", "a")}, {"models": ("live",)},
    {"models": ("a b",)}, {"top_k": 0}, {"top_k": True}, {"max_held_out": 0},
    {"max_impressions": 0}, {"max_history": 0}, {"attribution_s": -1.0},
    {"attribution_s": math.nan}, {"attribution_s": math.inf},
])
def test_bad_configs_are_refused(kw):
    with pytest.raises(ConfigError):
        EvalConfig(**kw)


def test_encode_and_decode_are_inverse():
    values = {name: (i % 7) / 7 for i, name in enumerate(LAYOUT.names)}
    vec = LAYOUT.encode(values)
    assert vec.dtype == np.float64 and not vec.flags.writeable
    assert LAYOUT.decode(vec) == values
    assert LAYOUT.decode(vec + vec) == {k: 2 * v for k, v in values.items()}


def test_encode_refuses_missing_unknown_and_nan_slots():
    values = dict.fromkeys(LAYOUT.names, 0.5)
    with pytest.raises(ConfigError, match="missing"):
        LAYOUT.encode({k: v for k, v in values.items() if k != "live.clicks"})
    with pytest.raises(ConfigError, match="unknown"):
        LAYOUT.encode({**values, "extra": 1.0})
    for bad in (math.nan, "1", None, True):
        with pytest.raises(ConfigError):
            LAYOUT.encode({**values, "live.clicks": bad})
    with pytest.raises(ConfigError):
        LAYOUT.encode([0.0] * len(LAYOUT))


def test_decode_refuses_vectors_that_do_not_fit():
    for bad in (np.zeros(22), np.zeros((23, 1)), np.full(23, np.nan), np.array(["a"] * 23), "x"):
        with pytest.raises(ConfigError):
            LAYOUT.decode(bad)


_hostile = st.one_of(st.floats(allow_nan=False), st.integers(-(10**400), 10**400),
                     st.sampled_from([-math.inf, math.inf, -1e308, 1e308, -5, 0, 1, 2]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_hostile, min_size=23, max_size=23))
def test_encode_clips_every_slot_whatever_the_values(raw):
    vec = LAYOUT.encode(dict(zip(LAYOUT.names, raw)))
    assert np.all((vec >= 0.0) & (vec <= 1.0))
    assert l2_norm(vec) <= LAYOUT.l2_bound
    clipped, _ = clip_l2(vec, LAYOUT.l2_bound)  # the round's clip is a no-op on it
    assert np.array_equal(clipped, vec)


def test_the_bound_is_reached_by_the_all_ones_vector_only_as_a_ceiling():
    top = LAYOUT.encode(dict.fromkeys(LAYOUT.names, 1e9))
    assert l2_norm(top) == pytest.approx(LAYOUT.l2_bound)


def _device(**kw):
    base = dict(layout=LAYOUT, held_out=2, hr=(0.5, 1.0), ndcg=(0.25, 0.75), impressions=10,
                clicks=3, purchases=1, dismissals=2)
    return DeviceEval(**{**base, **kw})


def test_device_figures_encode_as_documented():
    v = _device().values()
    assert v["loo.devices"] == 1.0 and v["installed.hr@10"] == 0.5 and v["installed.hr@10.sq"] == 0.25
    assert v["candidate-installed.hr@10.sq"] == 0.25 and v["candidate-installed.ndcg@10.sq"] == 0.25
    assert v["live.devices"] == 1.0 and v["live.impressions"] == 0.1 and v["live.clicks"] == 0.03
    assert v["live.impressions*clicks"] == pytest.approx(0.003)
    assert v["live.impressions.sq"] == pytest.approx(0.01)
    assert set(v) == set(LAYOUT.names)
    assert l2_norm(_device().vector()) <= LAYOUT.l2_bound


@pytest.mark.parametrize("kw", [
    {"held_out": -1}, {"held_out": 6}, {"held_out": 1.0}, {"hr": (0.5,)}, {"hr": (1.5, 0.0)},
    {"hr": (-0.1, 0.0)}, {"hr": (math.nan, 0.0)}, {"ndcg": (1, 0)}, {"impressions": -1},
    {"impressions": 101}, {"clicks": 11}, {"clicks": -3}, {"dismissals": 10**9},
    {"held_out": 0},  # means must then be 0
])
def test_device_figures_out_of_range_are_refused(kw):
    with pytest.raises(ConfigError):
        _device(**kw)


def test_a_layout_is_built_from_a_config():
    assert isinstance(LAYOUT, EvalLayout) and LAYOUT.config == EvalConfig()
    assert EvalLayout.of(EvalConfig()).names == LAYOUT.names
