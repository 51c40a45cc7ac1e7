"""Model parameters: creation, flattening to one vector (for deltas) and back. Pure numpy.

Parameters (N items, F content features, d dims, L history positions, S signal codes):

=========  ========  ==========================================================================
name       shape     role
=========  ========  ==========================================================================
emb_in     [N, d]    item as history ("you watched i") — collaborative part
feat_in    [F, d]    content features as history — lets new or rare items speak
emb_out    [N, d]    item as candidate ("we propose i")
feat_out   [F, d]    content features as candidate
bias       [N]       item prior (popularity); with ``user0`` it is the cold-start list
pos        [L]       weight of the k-th most recent event
signal     [S]       weight of each signal code (click, purchase, stars, dismiss < 0, ...)
user0      [d]       the user with no history
w1, b1,    [d, d],   residual ReLU layer on the pooled history (``ModelConfig.hidden``)
w2         [d],      [d, d]
=========  ========  ==========================================================================

With ``ModelConfig(encoder="attention")`` the user comes from self-attention blocks instead
(``edgerec.model.encoder``): ``pos``, ``signal`` and the hidden layer give way to

==============  ========  =====================================================================
att_pos         [L, d]    embedding of the k-th most recent position
att_signal      [S, d]    embedding of each signal code (row PAD_SIGNAL unused, kept at 0)
att{k}.*        [d, d],   block k (``edgerec.model.attention.BLOCK``: ln1_g, ln1_b, wq, wk, wv,
                [d]       ln2_g, ln2_b, w1, b1, w2, b2)
att_ln_g, _b    [d]       the final layer norm
==============  ========  =====================================================================

With ``ModelConfig(encoder="mix")`` both are there: the pooled model's parameters under their
own names, the attention model's under ``seq.`` (``seq.emb_in``, ``seq.att0.wq``, ...).
"""

from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from .._exceptions import ConfigError
from ..events import N_SIGNALS, PAD_SIGNAL, signal_code
from .attention import block_names, init_block
from .config import ModelConfig

__all__ = ["ATT_LN_B", "ATT_LN_G", "ATT_POS", "ATT_SIGNAL", "FROZEN_SHORTHANDS", "ITEM_TABLES",
           "MIX_PREFIX", "Params", "attention_prefix", "init_params", "expand_frozen", "federated_mask", "flatten",
           "unflatten", "param_names", "item_tables", "training_tables"]

Params = Dict[str, np.ndarray]

# Prior signal weights: what an event says about interest before any training. Signals a dataset
# never shows (MovieLens has only ratings) keep these; dismissals push away from similar items.
_PRIOR = {"impression": 0.0, "view": 0.5, "click": 1.0, "add_to_cart": 1.5, "purchase": 2.0,
          "dismiss": -1.0}


def _signal_prior() -> np.ndarray:
    out = np.ones(N_SIGNALS, np.float32)
    out[PAD_SIGNAL] = 0.0
    for event, weight in _PRIOR.items():
        out[signal_code(event, 0.0)] = weight
    return out


#: The per-item and per-feature tables: nearly all of the weights (what a round may freeze when a
#: pilot trained them, so that only the small rest is federated; ``--frozen tables``).
ITEM_TABLES = ("emb_in", "emb_out", "feat_in", "feat_out")
#: The prefix of a mix's attention tower's parameter names.
MIX_PREFIX = "seq."
#: Names a list of frozen weights may use for several at once (for a mix, each stands for its
#: names in both towers: ``expand_frozen``).
FROZEN_SHORTHANDS: dict[str, tuple[str, ...]] = {"tables": ITEM_TABLES}


#: The attention encoder's own parameter names (besides its blocks').
ATT_POS, ATT_SIGNAL, ATT_LN_G, ATT_LN_B = "att_pos", "att_signal", "att_ln_g", "att_ln_b"


def attention_prefix(k: int) -> str:
    """The name prefix of the attention encoder's block ``k``."""
    return f"att{k}."


def param_names(cfg: ModelConfig) -> tuple[str, ...]:
    """Parameter names in their canonical (flattening) order."""
    if cfg.encoder == "mix":
        pooled, attention = cfg.towers()
        return param_names(pooled) + tuple(MIX_PREFIX + name for name in param_names(attention))
    if cfg.encoder == "attention":
        blocks = [name for k in range(cfg.blocks) for name in block_names(attention_prefix(k)).values()]
        return ("emb_in", "feat_in", "emb_out", "feat_out", "bias", "user0", ATT_POS, ATT_SIGNAL,
                *blocks, ATT_LN_G, ATT_LN_B)
    base = ("emb_in", "feat_in", "emb_out", "feat_out", "bias", "pos", "signal", "user0")
    return base + (("w1", "b1", "w2") if cfg.hidden else ())


def _init_attention(cfg: ModelConfig, rng: np.random.Generator) -> Params:
    """Position and signal embeddings at the item embeddings' scale (N(0, 0.1)), Glorot blocks,
    the final layer norm at 1 and 0."""
    params: Params = {
        ATT_POS: (rng.standard_normal((cfg.history, cfg.dim)) * 0.1).astype(np.float32),
        ATT_SIGNAL: (rng.standard_normal((N_SIGNALS, cfg.dim)) * 0.1).astype(np.float32),
    }
    params[ATT_SIGNAL][PAD_SIGNAL] = 0.0
    for k in range(cfg.blocks):
        init_block(params, attention_prefix(k), cfg.dim, rng)
    params[ATT_LN_G], params[ATT_LN_B] = np.ones(cfg.dim, np.float32), np.zeros(cfg.dim, np.float32)
    return params


def init_params(cfg: ModelConfig, n_items: int, n_features: int, rng: np.random.Generator) -> Params:
    """Fresh parameters; small random embeddings, recency-decaying position weights."""
    if cfg.encoder == "mix":
        pooled, attention = cfg.towers()
        mixed = init_params(pooled, n_items, n_features, rng)
        seq = init_params(attention, n_items, n_features, rng)
        mixed.update({MIX_PREFIX + name: value for name, value in seq.items()})
        return mixed
    d, scale = cfg.dim, 1.0 / np.sqrt(cfg.dim)

    def normal(*shape: int, std: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    params: Params = {
        "emb_in": normal(n_items, d),
        "feat_in": normal(n_features, d),
        "emb_out": normal(n_items, d),
        "feat_out": normal(n_features, d),
        "bias": np.zeros(n_items, np.float32),
        # The most recent events matter most; training refines the decay.
        "pos": (1.0 / np.sqrt(1.0 + np.arange(cfg.history))).astype(np.float32) * 0.3,
        "signal": _signal_prior(),
        "user0": np.zeros(d, np.float32),
    }
    if cfg.encoder == "attention":
        del params["pos"], params["signal"]
        params.update(_init_attention(cfg, rng))
        return params
    if cfg.hidden:
        params["w1"] = normal(d, d, std=scale)
        params["b1"] = np.zeros(d, np.float32)
        params["w2"] = np.zeros((d, d), np.float32)  # the residual starts as identity
    return params


def item_tables(params: Params, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-item input and output tables with content folded in: what the ONNX graph stores."""
    table_in = params["emb_in"] + features @ params["feat_in"]
    table_out = params["emb_out"] + features @ params["feat_out"]
    return table_in, table_out


def training_tables(params: Params, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`item_tables` for a training step's forward pass, which only reads them: without
    item features (a plain interactions CSV) the tables are the embeddings themselves, returned
    as they are instead of copied (``emb + features @ feat`` adds zeros: on 10k items that
    copy was 13% of a sampled-softmax step)."""
    if features.shape[1] == 0:
        return params["emb_in"], params["emb_out"]
    return item_tables(params, features)


def flatten(params: Params, names: tuple[str, ...]) -> np.ndarray:
    """Concatenate the named parameters into one float32 vector (the shape of a delta)."""
    return np.concatenate([params[n].ravel() for n in names]).astype(np.float32)


def unflatten(vec: np.ndarray, like: Params, names: tuple[str, ...]) -> Params:
    """Split a vector made by ``flatten`` back into arrays shaped like ``like``."""
    out: Params = {}
    offset = 0
    for n in names:
        size = like[n].size
        out[n] = vec[offset : offset + size].reshape(like[n].shape).astype(np.float32)
        offset += size
    if offset != vec.size:
        raise ValueError(f"vector has {vec.size} entries, parameters need {offset}")
    return out


def expand_frozen(names: Iterable[str], model: Iterable[str] = ()) -> tuple[str, ...]:
    """``names`` with the shorthands (``FROZEN_SHORTHANDS``) spelled out, each name once, in the
    order given (not checked against a model: ``federated_mask`` does that). When ``model``, the
    model's parameter names, is a mix's, a shorthand stands for its names in both towers."""
    names, model = tuple(names), tuple(model)
    mix = MIX_PREFIX + "emb_in" in model
    out: dict[str, None] = {}
    for name in names:
        spelled = FROZEN_SHORTHANDS.get(name, (name,))
        if mix and name in FROZEN_SHORTHANDS:
            spelled = spelled + tuple(MIX_PREFIX + n for n in spelled)
        out.update(dict.fromkeys(spelled))
    return tuple(out)


def federated_mask(init: Params, names: tuple[str, ...], frozen: Iterable[str]) -> np.ndarray:
    """Which entries of the flattened weights (``flatten(init, names)``) a round federates: all
    but those of the ``frozen`` parameters (a boolean vector of the flattened length).

    Raises:
        ConfigError: ``frozen`` names something that is not one of ``names``.
    """
    frozen = set(frozen)
    unknown = sorted(frozen - set(names))
    if unknown:
        raise ConfigError(f"frozen names no shared weight of this model: {unknown} "
                          f"(its weights: {', '.join(names)})")
    return np.concatenate([np.full(init[n].size, n not in frozen) for n in names])
