"""Why an item was recommended, read off the model. Pure numpy.

The user vector is a weighted sum of the history's item vectors (before a small residual
layer), so each history event contributes ``w_l * (table_in[i_l] . table_out[j])`` to item j's
score along that path. The reason for j is the event with the largest positive contribution:
"because you rated Star Wars". With no history, or no event pulling towards j, the reason says
the item is popular or fits the recent activity as a whole.

With the attention encoder there is no fixed weight per event: ``w_l`` is then how much the user
(position 0) attends to event l in the last block, the event's share in what the user reads.
"""

from __future__ import annotations

import numpy as np

from .model.encoder import encode, is_attention
from .model.params import Params

__all__ = ["attribute", "reason_text"]

_VERBS = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to your cart",
    "purchase": "bought",
    "rating": "rated",
}


def attribute(params: Params, features: np.ndarray, hist_rows: np.ndarray, hist_signals: np.ndarray,
              rec_rows: np.ndarray) -> np.ndarray:
    """For each recommended row, the index into the history of its main cause, or -1 for none.

    A mix (``edgerec.model.mix``) is explained by its pooled tower, whose parameters it holds
    under their own names: the per-position and per-signal weights say plainly what counted."""
    if len(hist_rows) == 0 or len(rec_rows) == 0:
        return np.full(len(rec_rows), -1)
    n = len(hist_rows)
    v_in = params["emb_in"][hist_rows] + features[hist_rows] @ params["feat_in"]
    if is_attention(params):
        # The history's own rows as the input table: the encoder reads nothing else.
        _, cache = encode(params, v_in, np.arange(n)[None, :], np.asarray(hist_signals)[None, :])
        weights = cache.blocks[-1].p[0, 0]
    else:
        weights = params["pos"][:n] * params["signal"][hist_signals]
    v_out = params["emb_out"][rec_rows] + features[rec_rows] @ params["feat_out"]
    contrib = (v_out @ v_in.T) * weights[None, :]  # [k, n]
    best = contrib.argmax(axis=1)
    positive = contrib[np.arange(len(rec_rows)), best] > 0
    return np.where(positive, best, -1)


def reason_text(event: str | None, title: str | None) -> str:
    """A short human reason; ``event``/``title`` of the causing history entry, or None."""
    if title is None or event is None:
        return "popular right now"
    return f"because you {_VERBS.get(event, 'chose')} {title}"
