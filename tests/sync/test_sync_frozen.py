"""Rounds with frozen weights, device side: the announcement's ``frozen`` list on the wire (left
out when empty, so older devices still read such rounds), and the device's own check of it
against its model and the announced vector length."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgerec.model.config import ModelConfig
from edgerec.model.params import ITEM_TABLES, init_params, param_names
from edgerec.sync import (
    ProtocolError,
    RoundAnnouncement,
    RoundRefusedError,
    decode,
    encode,
)
from edgerec.sync.policy import federated_entries

CFG = ModelConfig(dim=8, history=5)
PARAMS = init_params(CFG, 30, 4, np.random.default_rng(0))
NAMES = param_names(CFG)
TOTAL = sum(PARAMS[n].size for n in NAMES)
TABLES = sum(PARAMS[n].size for n in ITEM_TABLES)
ANN = RoundAnnouncement(7, TOTAL - TABLES, 4, 10, 6, "complete", None, 1.0, 0.5, 6, 3,
                        "advertise_keys", 1e9, frozen=ITEM_TABLES)


def test_frozen_travels_as_a_list_and_is_left_out_when_empty():
    raw = json.loads(encode(ANN))
    assert raw["frozen"] == list(ITEM_TABLES)
    assert decode(encode(ANN), RoundAnnouncement) == ANN
    everything = replace(ANN, frozen=())
    assert "frozen" not in json.loads(encode(everything))  # what a device before the field reads
    del raw["frozen"]
    assert decode(json.dumps(raw).encode(), RoundAnnouncement).frozen == ()


@pytest.mark.parametrize("bad", ["emb_in", [1], {"a": 1}, None, ["emb_in", None]])
def test_a_frozen_field_that_is_not_a_list_of_names_is_a_protocol_error(bad):
    raw = {**json.loads(encode(ANN)), "frozen": bad}
    with pytest.raises(ProtocolError, match="frozen"):
        decode(json.dumps(raw).encode(), RoundAnnouncement)


def test_the_device_takes_the_entries_the_announcement_leaves():
    mask = federated_entries(ANN, PARAMS, NAMES)
    assert mask.shape == (TOTAL,) and mask.sum() == ANN.vector_length
    assert not mask[:PARAMS["emb_in"].size].any()  # emb_in comes first in the flattened order
    everything = replace(ANN, frozen=(), vector_length=TOTAL)
    assert federated_entries(everything, PARAMS, NAMES).all()


@pytest.mark.parametrize("change, words", [
    ({"frozen": ITEM_TABLES[1:]}, f"announces {TOTAL - TABLES} federated weights"),
    ({"frozen": ()}, "announces"),  # the field stripped: counts no longer agree
    ({"frozen": ITEM_TABLES + ("emb_all",)}, "does not have"),
    ({"frozen": NAMES, "vector_length": 1}, "freezes every weight"),
    ({"vector_length": TOTAL}, "announces"),
])
def test_the_device_refuses_a_frozen_list_its_model_does_not_fit(change, words):
    with pytest.raises(RoundRefusedError, match=f"round 7 refused: .*{words}"):
        federated_entries(replace(ANN, **change), PARAMS, NAMES)
