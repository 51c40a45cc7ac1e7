"""A device's part in an evaluation round: check what it is asked to measure, then measure it.

An evaluation round (``RoundAnnouncement.kind == "evaluation"``) runs the same secure
aggregation and distributed noise as a training round, but what the device puts in is its
``edgerec.fedeval`` vector instead of a model delta: LOO HR@K / NDCG@K of the model it runs (and
of any candidate the round names) on its newest events no fine-tune has read, and the live
feedback on what the running model showed. The vector is bounded by the layout
(``||v|| <= layout.l2_bound``), which is the round's clip, so clipping never changes it and the
noise multiplier means what it means for a delta.

Before anything is computed or sent, :func:`evaluation_config` holds the announcement to what
this device knows (:class:`RoundRefusedError` otherwise, so the sync records a refusal and
sends nothing): the layout key must be the one this device's ``edgerec.fedeval`` builds from the
announced parameters (another layout version, or a key that does not match them, is a layout it
does not know), the vector length and clip must be that layout's, nothing may be frozen, and
the installed slot must be the round's base model. A candidate is downloaded, verified against
the pinned server key (its *signed* version must be the one announced, over the same item
catalogue) and scored from a temporary folder: never installed, never served.

The windows (:func:`windows`): events after ``held_out_after`` = the newest event any
fine-tune on this device read (``EdgeRec.trained_until``; no fine-tune yet: all events) are held
out; live feedback counts from ``live_since`` = when the running model was installed (the
``sync_installed_version`` record; a bundle never installed by a sync: all events); both up to
``until`` = now.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .._exceptions import BundleError, ConfigError, RoundRefusedError
from ..bundle import Bundle
from ..fedeval import EvalConfig, ScoreFn, device_eval_vector, scorer_score_fn
from .api import BundleDownload
from .bundles import install_bundle
from .device import SyncRecords
from .messages import EVALUATION, ROUND_KINDS, RoundAnnouncement

if TYPE_CHECKING:
    from ..client import EdgeRec

__all__ = ["EvalWindows", "check_kind", "evaluation_config", "evaluation_contribution",
           "evaluation_vector", "ledger_note", "windows"]

#: "No fine-tune yet": every event may be held out (device_eval needs a finite cut-off).
_NO_CUT = -sys.float_info.max


def check_kind(ann: RoundAnnouncement) -> None:
    """Refuse a round of a kind this device does not know."""
    if ann.kind not in ROUND_KINDS:
        raise RoundRefusedError(f"round {ann.round_id} refused: round kind {ann.kind!r} is not one "
                                f"this device knows ({', '.join(ROUND_KINDS)})")


def evaluation_config(ann: RoundAnnouncement) -> EvalConfig:
    """The ``EvalConfig`` an evaluation round asks for, if this device knows its layout.

    Pure. Raises :class:`RoundRefusedError` (saying why) for a layout key this device does not
    build from the announced parameters, parameters it cannot build a layout from, a vector
    length or clip other than the layout's, frozen weights, or model versions that do not
    match the slots (the first must be the round's base model, each version once).
    """
    def refuse(why: str) -> RoundRefusedError:
        return RoundRefusedError(f"evaluation round {ann.round_id} refused: {why}")

    spec = ann.evaluation
    if ann.kind != EVALUATION or spec is None:
        raise refuse("it announces no evaluation layout")
    try:
        config = spec.config()
    except ConfigError as exc:
        raise refuse(f"layout {spec.layout_key!r} is not one this device knows ({exc})") from None
    layout = config.layout
    if layout.key != spec.layout_key:
        raise refuse(f"layout {spec.layout_key!r} is not one this device knows (its parameters "
                     f"make {layout.key!r} here)")
    if ann.vector_length != len(layout):
        raise refuse(f"it announces {ann.vector_length} entries; layout {layout.key!r} has {len(layout)}")
    # The clip is the sensitivity the noise is calibrated to: it must be the layout's bound, so
    # that clipping is a no-op and z means for this vector what the ledger says it means.
    if not math.isclose(ann.clip, layout.l2_bound, rel_tol=1e-9):
        raise refuse(f"clip {ann.clip} is not the layout's L2 bound {layout.l2_bound}")
    if ann.frozen:
        raise refuse("an evaluation vector has no weights to freeze")
    versions = spec.model_versions
    if len(versions) != len(config.models) or len(set(versions)) != len(versions):
        raise refuse(f"model versions {list(versions)} do not match the slots {list(config.models)}")
    if versions[0] != ann.base_model_version:
        raise refuse(f"the installed slot is model {versions[0]}, the round's base is "
                     f"{ann.base_model_version}")
    return config


@dataclass(frozen=True)
class EvalWindows:
    """The time cut-offs of ``edgerec.fedeval.device_eval`` for this device now."""

    held_out_after: float
    live_since: float
    until: float


def windows(rec: EdgeRec, records: SyncRecords) -> EvalWindows:
    """``held_out_after``, ``live_since`` and ``until`` (module docstring)."""
    trained = rec.trained_until
    installed_at = records.installed_at(rec.model_version)
    return EvalWindows(_NO_CUT if trained is None else trained,
                       0.0 if installed_at is None else installed_at, float(rec.clock()))


def evaluation_vector(rec: EdgeRec, config: EvalConfig, candidates: Sequence[Bundle],
                      when: EvalWindows) -> np.ndarray:
    """This device's vector: its events (every user's), the running model (with its personal
    adapter, as ``recommend()`` scores) in the installed slot, ``candidates`` (no adapter: one
    fits only the model it was fitted to) in the others."""
    from ..scoring import Scorer  # onnxruntime: loaded by devices that evaluate, not servers

    bundle, scorer, adapter = rec.in_use()
    if not (hasattr(scorer, "pad") and hasattr(scorer, "score_batch")):
        raise RoundRefusedError("this device's scorer cannot score whole catalogues, so it "
                                "cannot take part in evaluation rounds")
    scorers: dict[str, ScoreFn] = {config.models[0]: scorer_score_fn(scorer, adapter)}  # type: ignore[arg-type]
    for slot, candidate in zip(config.models[1:], candidates):
        scorers[slot] = scorer_score_fn(Scorer(candidate.model_path, len(candidate.catalogue),
                                               candidate.config.history))
    events = [e for user in rec.store.users() for e in rec.store.history(user)]
    return device_eval_vector(events, config=config, catalogue=bundle.catalogue, scorers=scorers,
                              held_out_after=when.held_out_after, live_since=when.live_since,
                              until=when.until)


def _candidate(archive: bytes, version: int, server_key: bytes | str, folder: Path,
               installed: Bundle) -> Bundle:
    try:
        bundle = install_bundle(archive, folder, server_key)  # a scratch folder: not the live one
    except BundleError as exc:
        raise RoundRefusedError(f"candidate model {version} does not verify: {exc}") from None
    if bundle.version != version:
        raise RoundRefusedError(f"the bundle sent as candidate {version} is signed as version "
                                f"{bundle.version}")
    if bundle.catalogue.item_ids != installed.catalogue.item_ids:
        raise RoundRefusedError(f"candidate model {version} ranks another item catalogue than "
                                f"model {installed.version}: their metrics would not compare")
    return bundle


def evaluation_contribution(rec: EdgeRec, records: SyncRecords, ann: RoundAnnouncement,
                            config: EvalConfig, download: Callable[[int], BundleDownload],
                            server_key: bytes | str | None) -> np.ndarray:
    """Download and verify the round's candidates (``download(version)``), then compute this
    device's vector. Nothing is installed; the candidates' folder is deleted afterwards."""
    assert ann.evaluation is not None  # evaluation_config() checked it
    versions = ann.evaluation.model_versions[1:]
    if versions and server_key is None:
        raise RoundRefusedError(f"evaluation round {ann.round_id} refused: no server key is pinned "
                                "to verify its candidate model with")
    with tempfile.TemporaryDirectory(prefix="edgerec-candidate-") as tmp:
        installed = rec.bundle
        candidates = [_candidate(download(v).archive, v, server_key, Path(tmp) / f"v{v}", installed)
                      for v in versions if server_key is not None]
        return evaluation_vector(rec, config, candidates, windows(rec, records))


def ledger_note(ann: RoundAnnouncement) -> str:
    """The note of an evaluation round's ledger rows: which models, under which layout."""
    spec = ann.evaluation
    if spec is None:
        return "evaluation round"
    models = ", ".join(f"{slot} {version}" for slot, version in zip(spec.models, spec.model_versions))
    return f"evaluation of models ({models}); layout {spec.layout_key}"
