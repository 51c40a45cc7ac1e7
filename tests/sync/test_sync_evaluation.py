"""The device's side of evaluation rounds, without a server: the announcement's bytes, the checks
a device holds an evaluation announcement to before it computes or sends anything, and the
windows its vector is computed over (events no fine-tune read; feedback since the install)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

import edgerec
from edgerec.fedeval import EvalConfig
from edgerec.sync import (EvalAnnouncement, ProtocolError, RoundAnnouncement, RoundRefusedError,
                          decode, encode)
from edgerec.sync.device import SyncRecords
from edgerec.sync.evaluation import check_kind, evaluation_config, windows

CONFIG = EvalConfig(models=("installed", "candidate"), top_k=10)
LAYOUT = CONFIG.layout
EVAL = RoundAnnouncement(7, len(LAYOUT), 4, 10, 6, "complete", None, LAYOUT.l2_bound, 0.5, 6, 3,
                         "advertise_keys", 1e9, kind="evaluation",
                         evaluation=EvalAnnouncement.of(CONFIG, (3, 2)))


def test_an_evaluation_announcement_round_trips_and_a_training_one_reads_as_before():
    raw = json.loads(encode(EVAL))
    assert raw["kind"] == "evaluation" and raw["evaluation"]["layout_key"] == LAYOUT.key
    assert raw["evaluation"]["models"] == ["installed", "candidate"] and raw["evaluation"]["model_versions"] == [3, 2]
    assert decode(encode(EVAL), RoundAnnouncement) == EVAL
    training = replace(EVAL, kind="training", evaluation=None)
    assert not {"kind", "evaluation"} & set(json.loads(encode(training)))  # older devices read it


@pytest.mark.parametrize("change", [
    lambda e: e.update(extra=1),                       # an unknown field inside
    lambda e: e.pop("top_k"),                          # a missing one
    lambda e: e.update(model_versions="3,2"),          # of the wrong type
])
def test_a_malformed_evaluation_part_is_a_protocol_error(change):
    raw = json.loads(encode(EVAL))
    change(raw["evaluation"])
    with pytest.raises(ProtocolError, match="round_announcement.evaluation"):
        decode(json.dumps(raw).encode(), RoundAnnouncement)
    raw["evaluation"] = [1, 2]
    with pytest.raises(ProtocolError, match="expected an object"):
        decode(json.dumps(raw).encode(), RoundAnnouncement)


def test_a_known_layout_gives_its_config():
    assert evaluation_config(EVAL) == CONFIG


@pytest.mark.parametrize("change, words", [
    (dict(evaluation=replace(EVAL.evaluation, layout_key=LAYOUT.key.replace("/1;", "/2;"))),
     "not one this device knows"),
    (dict(evaluation=replace(EVAL.evaluation, max_held_out=6)), "not one this device knows"),
    (dict(evaluation=replace(EVAL.evaluation, top_k=0)), "not one this device knows"),
    (dict(evaluation=replace(EVAL.evaluation, models=("installed", "loo"))), "not one this device knows"),
    (dict(evaluation=None), "no evaluation layout"),
    (dict(vector_length=len(LAYOUT) + 1), "entries"),
    (dict(clip=LAYOUT.l2_bound / 2), "L2 bound"),
    (dict(frozen=("emb_in",)), "freeze"),
    (dict(evaluation=replace(EVAL.evaluation, model_versions=(3,))), "do not match the slots"),
    (dict(evaluation=replace(EVAL.evaluation, model_versions=(3, 3))), "do not match the slots"),
    (dict(evaluation=replace(EVAL.evaluation, model_versions=(2, 3))), "the round's base is 3"),
])
def test_an_evaluation_the_device_cannot_stand_behind_is_refused(change, words):
    with pytest.raises(RoundRefusedError, match=words):
        evaluation_config(replace(EVAL, **change))


def test_an_unknown_round_kind_is_refused():
    check_kind(EVAL)
    check_kind(replace(EVAL, kind="training"))
    with pytest.raises(RoundRefusedError, match="'survey' is not one this device knows"):
        check_kind(replace(EVAL, kind="survey"))


def test_fine_tuning_marks_what_it_read_and_the_windows_follow_it(tmp_path, trained_bundle):
    clock = [2e9]
    rec = edgerec.open(tmp_path / "app.db", bundle=trained_bundle, clock=lambda: clock[0])
    records = SyncRecords(rec.device_state, rec.clock)
    items = rec.bundle.catalogue.item_ids
    rec.log_many([{"user": "u", "item": items[i], "event": "click", "ts": 1e9 + i} for i in range(6)])
    before = windows(rec, records)
    assert before.held_out_after < -1e300 and before.live_since == 0.0 and before.until == 2e9
    rec.fine_tune()
    assert rec.trained_until == 1e9 + 5  # the newest event it read
    rec.log("u", items[10], "click", ts=1e9 + 2)  # logged late with an old time: not read yet
    rec.fine_tune()
    assert rec.trained_until == 1e9 + 5  # never lowered
    records.raise_installed_version(rec.model_version)  # as the first sync records it
    clock[0] = 2e9 + 60
    after = windows(rec, records)
    assert (after.held_out_after, after.live_since, after.until) == (1e9 + 5, 2e9, 2e9 + 60)
    assert records.installed_at(rec.model_version + 1) is None  # another version: no install time
    assert math.isfinite(after.held_out_after)
    rec.close()


def test_a_lean_announcement_round_trips_and_a_full_one_leaves_the_lean_fields_out():
    lean = EvalConfig(models=("installed",), metrics=("ndcg",), squares=False, live=False)
    ann = replace(EVAL, vector_length=len(lean.layout), clip=lean.layout.l2_bound,
                  evaluation=EvalAnnouncement.of(lean, (3,)))
    raw = json.loads(encode(ann))["evaluation"]
    assert (raw["metrics"], raw["squares"], raw["live"]) == (["ndcg"], False, False)
    assert decode(encode(ann), RoundAnnouncement) == ann and evaluation_config(ann) == lean
    # a full layout's announcement reads as before the lean options existed
    assert not {"metrics", "squares", "live"} & set(json.loads(encode(EVAL))["evaluation"])
    # a lean key with full parameters (or the reverse) is not a layout the device builds
    for wrong in (replace(ann.evaluation, live=True), replace(EVAL.evaluation, layout_key=lean.layout.key)):
        with pytest.raises(RoundRefusedError, match="not one this device knows"):
            evaluation_config(replace(ann, evaluation=wrong))
