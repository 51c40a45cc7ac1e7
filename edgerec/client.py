"""The facade an app embeds: ``edgerec.open(db, bundle=...)``, then ``log()`` and ``recommend()``.

It wires the store (SQLite), the bundle (verified files) and the scorer (onnxruntime) together;
each of those adapts exactly one outside library.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, cast

import numpy as np

from ._exceptions import ConfigError, UnknownItemWarning
from ._installed import Installed, candidate_offset, item_ids, known_history
from ._training_data import device_sequences, mark_trained, trained_until
from .bundle import Bundle, clean_bundle_root, load_bundle
from .events import EventRecord, EventType, Interaction, check_id, check_lookup_id
from .finetune import FineTuneConfig, LocalUpdate, fine_tune
from .privacy.ledger import PrivacyLedger
from .reasons import attribute, reason_text
from .scoring import Scorer, TopKScorer
from .store import DeviceState, ErasureResult, InteractionStore, Retention

if TYPE_CHECKING:
    from .privacy import RandomSource
    from .sync import (RoundPolicy, SyncConditions, SyncResult, SyncRuntime, SyncTimeouts,
                       Transport)

__all__ = ["EdgeRec", "Recommendation", "open"]

_ADAPTER_KEY = "personal_adapter"
_WARN_LIMIT = 1024  # distinct unknown items warned about per installed bundle; then quiet


@dataclass(frozen=True)
class Recommendation:
    """One recommended item, best first in the list ``recommend()`` returns."""

    item: str
    score: float
    title: str
    reason: str
    because: str | None = None  # the history item behind the reason, if any


class EdgeRec:
    """An on-device recommender: a local interaction store plus an installed model bundle.

    Thread-safe: the store keeps one SQLite connection per thread, onnxruntime sessions may be
    shared, and a new bundle or adapter replaces the model state in one assignment. Use
    ``edgerec.open()`` to make one.
    """

    def __init__(self, store: InteractionStore, bundle: Bundle, *, threads: int = 1,
                 scorer: TopKScorer | None = None, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(store, InteractionStore):
            raise ConfigError(f"store must be an InteractionStore, got {type(store).__name__}")
        if not isinstance(bundle, Bundle):
            raise ConfigError(f"bundle must be a loaded Bundle, got {type(bundle).__name__}")
        self._threads = _threads(threads)
        if not callable(clock):
            raise ConfigError("clock must be a callable returning seconds since the epoch")
        self.store = store
        self._clock = clock
        self._state = DeviceState(store)
        self._lock = threading.Lock()  # adapter writes vs erasure; the filter cache
        self._erasures = 0  # bumped by forget(): an adapter fitted before it is stale
        #: Every payload that left this device, written before it was sent (append-only).
        self.ledger = PrivacyLedger(store, clock=clock)
        self.install(bundle, scorer=scorer)

    def install(self, bundle: Bundle, *, scorer: TopKScorer | None = None) -> None:
        """Serve ``bundle`` from the next request on; a request already running finishes on the
        model it started with (the switch is one assignment). The one way to change the model
        in use, for apps and for ``sync()`` alike. ``scorer`` defaults to a new onnxruntime
        session of the bundle's int8 graph."""
        if not isinstance(bundle, Bundle):
            raise ConfigError(f"bundle must be a loaded Bundle (edgerec.load_bundle), got "
                              f"{type(bundle).__name__}")
        scorer = scorer or Scorer(bundle.model_path, len(bundle.catalogue), bundle.config.history,
                                  threads=self._threads, shortlist=bundle.shortlist_path)
        self._m = Installed(bundle, scorer, self._load_adapter(bundle))

    @property
    def device_state(self) -> DeviceState:
        """Small device-level values the SDK keeps in the database (adapter, sync records)."""
        return self._state

    @property
    def clock(self) -> Callable[[], float]:
        """The clock this device stamps events and records with."""
        return self._clock

    @property
    def bundle(self) -> Bundle:
        """The installed bundle."""
        return self._m.bundle

    @property
    def _scorer(self) -> TopKScorer:
        return self._m.scorer

    def in_use(self) -> tuple[Bundle, TopKScorer, np.ndarray | None]:
        """The model ``recommend()`` scores with now, read at once: its bundle, its scorer and
        the personal adapter (None without one). Federated evaluation measures exactly this."""
        m = self._m
        return m.bundle, m.scorer, m.adapter

    @property
    def trained_until(self) -> float | None:
        """The newest event timestamp any ``fine_tune()`` on this device has read (None: none
        ran yet). Events after it were never trained on here."""
        return trained_until(self._state)

    # -- logging --------------------------------------------------------------------------------
    def log(self, user: str | int, item: str | int, event: EventType | str = "click",
            value: float = 1.0, *, ts: float | None = None,
            event_id: str | int | None = None) -> bool:
        """Record one event durably. False when ``event_id`` was logged before (a retry).

        An item the installed bundle does not know is stored all the same (a later bundle may
        know it) and ignored by ``recommend()``; the first time, an ``UnknownItemWarning`` says so.
        """
        written = self.store.log(user, item, event, value, ts=ts, event_id=event_id)
        self._warn_unknown((item,))
        return written

    def log_many(self, events: Iterable[Mapping[str, object] | Interaction]) -> int:
        """Record a batch in one transaction; all or nothing. Returns the rows written.

        Unknown items are stored and warned about as in ``log()``.
        """
        batch = list(events) if isinstance(events, Iterator) else events  # read twice below
        written = self.store.log_many(batch)
        self._warn_unknown({e.item if isinstance(e, Interaction) else e["item"] for e in batch})
        return written

    def _warn_unknown(self, items: Iterable[object]) -> None:
        """``UnknownItemWarning`` for each logged item the installed bundle does not know, once
        per item and bundle (at most ``_WARN_LIMIT`` of them: by then the app has noticed)."""
        m = self._m
        unknown = [str(i) for i in items if str(i) not in m.index]
        if not unknown:
            return
        with self._lock:
            new = [i for i in unknown if i not in m.warned][:max(0, _WARN_LIMIT - len(m.warned))]
            m.warned.update(new)
        for item in new:
            warnings.warn(f"item {item!r} is not in the installed model's catalogue (model version "
                          f"{m.bundle.version}, {len(m.index)} items): the event is stored, and "
                          f"recommend() ignores it until a bundle that knows the item is installed",
                          UnknownItemWarning, stacklevel=3)

    # -- recommending ---------------------------------------------------------------------------
    def recommend(self, user: str | int, k: int = 10, *, exclude_seen: bool = True,
                  candidates: Iterable[str | int] | None = None,
                  exclude: Iterable[str | int] = ()) -> list[Recommendation]:
        """The ``k`` best items for ``user`` now, best first, each with a reason.

        Dismissed items are never returned; consumed ones (viewed, clicked, bought, rated) are
        not returned unless ``exclude_seen=False``. ``candidates`` restricts the answer to those
        item ids (ids unknown to the model are ignored); ``exclude`` removes more ids.
        """
        # The write rules, not the lenient lookup: a user the app cannot log for (an empty id is
        # almost always an unset variable) is a mistake to report, not a cold start to serve.
        user_id = check_id("user", user)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive int, got {k!r}")
        if not isinstance(exclude_seen, bool):
            raise ConfigError(f"exclude_seen must be True or False, got {exclude_seen!r}")
        allowed = None if candidates is None else item_ids("candidates", candidates)
        excluded = item_ids("exclude", exclude)
        m = self._m  # read once: an install during this call does not mix two models
        rows, signals, events = known_history(self.store, m, user_id)
        if exclude_seen:
            drop = rows
        else:
            drop = rows[np.array([e == "dismiss" for e in events], bool)] if events else rows
        extra = [m.index[i] for i in excluded if i in m.index]
        if extra:
            drop = np.concatenate([drop, np.array(extra, np.int64)])
        length = m.bundle.config.history
        top, scores = m.scorer.top_k(rows[:length], signals[:length], np.unique(drop), k,
                                     candidate_offset(m, allowed, self._lock), m.adapter)
        return self._explain(m.bundle, top, scores, rows[:length], signals[:length], events)

    @staticmethod
    def _explain(bundle: Bundle, top: np.ndarray, scores: np.ndarray, rows: np.ndarray,
                 signals: np.ndarray, events: list[str]) -> list[Recommendation]:
        cat = bundle.catalogue
        causes = attribute(bundle.params, cat.features, rows, signals, top)
        out = []
        for row, score, cause in zip(top.tolist(), scores.tolist(), causes.tolist()):
            if cause >= 0:
                reason, because = reason_text(events[cause], cat.title(rows[cause])), cat.item_ids[rows[cause]]
            else:
                reason = "fits your recent activity" if len(rows) else reason_text(None, None)
                because = None
            out.append(Recommendation(cat.item_ids[row], score, cat.title(row), reason, because))
        return out

    # -- on-device learning ---------------------------------------------------------------------
    def _load_adapter(self, bundle: Bundle) -> np.ndarray | None:
        saved = self._state.get(_ADAPTER_KEY)
        if saved is None or saved.model_version != bundle.version:
            return None  # an adapter only fits the model it was trained against
        adapter = np.frombuffer(saved.value, np.float32)
        return adapter if adapter.shape == (bundle.config.user_dim,) else None

    def fine_tune(self, budget: FineTuneConfig | None = None) -> LocalUpdate:
        """Fine-tune on this device's own events, from the installed bundle's float weights.

        The personal adapter is saved and used by ``recommend()`` at once; it never leaves the
        device. The returned update's ``delta`` is what a federated round may send, after
        clipping, noise and secure aggregation. Nothing is sent here. If ``forget()`` runs
        meanwhile, the new adapter is not kept (it saw the erased events).
        """
        with self._lock:
            m, erasures = self._m, self._erasures
        sequences, newest = device_sequences(self.store, m.index)
        # Marked before training: whatever happens next, these events may be in a delta or an
        # adapter, so evaluation must never hold them out (over-marking only shrinks its window).
        mark_trained(self._state, newest, self._clock())
        update = fine_tune(m.bundle.params, m.bundle.catalogue.features, sequences,
                           m.bundle.config, budget or FineTuneConfig(), adapter=m.adapter)
        adapter = update.adapter.astype(np.float32)
        with self._lock:
            if erasures == self._erasures and self._m.bundle is m.bundle:
                self._state.put(_ADAPTER_KEY, adapter.tobytes(), model_version=m.bundle.version,
                                now=self._clock())
                self._m = replace(self._m, adapter=adapter)
        return update

    def sync(self, server_url: str, *, enrolment_token: str | None = None,
             server_key: bytes | str | None = None, authority_key: bytes | str | None = None,
             policy: RoundPolicy | None = None, allow: SyncConditions | None = None,
             budget: FineTuneConfig | None = None, transport: Transport | None = None,
             bundle_dir: str | os.PathLike[str] | None = None,
             timeouts: SyncTimeouts | None = None, runtime: SyncRuntime | None = None,
             noise_source: RandomSource | None = None, dp_delta: float | None = None,
             insecure_http_hosts: tuple[str, ...] = ()) -> SyncResult:
        """Enrol, take part in a federated round when ``allow`` permits, install new bundles.

        Every option is ``edgerec.sync.SyncSession``'s (None: its default), as are the
        statuses. Never raises for network or server problems (they come back as
        ``SyncResult.status``); bad arguments raise ``ConfigError``.
        """
        # Imported here: an app that never syncs does not load the protocol or httpx.
        from .sync.client import SyncSession

        return SyncSession(
            self, server_url, enrolment_token=enrolment_token, server_key=server_key,
            authority_key=authority_key, policy=policy, allow=allow, budget=budget,
            transport=transport, bundle_dir=bundle_dir, timeouts=timeouts, runtime=runtime,
            noise_source=noise_source, dp_delta=dp_delta,
            insecure_http_hosts=insecure_http_hosts).run()

    # -- data-subject requests and housekeeping -------------------------------------------------
    def forget(self, user: str | int) -> ErasureResult:
        """Erase everything stored about ``user``; an ``ErasureResult`` (an int: events deleted).

        The personal adapter was fitted on everyone's events on this device, the erased user's
        included, so it is dropped too (the next ``fine_tune()`` fits a new one). The events
        are gone from every query at once; ``result.pending`` says their bytes may still be on
        disk because a reader held an old snapshot (``InteractionStore.forget``): the store
        finishes that after a later write, ``prune()`` or ``store.finish_erasure()``.
        """
        # Outside self._lock: erasure may wait (briefly) for readers, and recommend() must not
        # wait for it. The adapter goes after the events, so a fine_tune() that overlaps sees a
        # changed erasure count and does not keep what it fitted.
        result = self.store.forget(check_lookup_id("user", user))
        with self._lock:
            self._erasures += 1
            self._state.delete(_ADAPTER_KEY)
            self._m = replace(self._m, adapter=None)
        return result

    def export(self, user: str | int) -> list[EventRecord]:
        """Everything stored about ``user``, as JSON-ready dicts (``log_many`` re-imports them)."""
        return self.store.export(check_lookup_id("user", user))

    def prune(self) -> int:
        """Apply the retention policy in full now; the number of events deleted.

        Retention also runs on its own while the app logs (a bounded amount per write), so
        this is for an app that wants the bound met at once, e.g. on start or from a timer.
        It also retries a pending physical erasure.
        """
        return self.store.prune()

    @property
    def model_version(self) -> int:
        return self.bundle.version

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "EdgeRec":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str | os.PathLike[str], bundle: str | os.PathLike[str] | Bundle, *,
         synchronous: str = "NORMAL", retention: Retention | None = None,
         public_key: bytes | str | None = None, threads: int = 1,
         clock: Callable[[], float] = time.time) -> EdgeRec:  # noqa: A001 - mirrors builtins.open on purpose
    """Open (or create) the SQLite database at ``path`` and install the bundle at ``bundle``.

    ``synchronous="NORMAL"`` (default) keeps every event that ``log()`` returned through an app
    crash; ``"FULL"`` also through power loss, at some cost in write speed. ``public_key``, when
    given, must have signed the bundle's manifest. Every bad argument is a ``ConfigError``
    naming it.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    if not isinstance(bundle, (str, os.PathLike, Bundle)):
        raise ConfigError(f"bundle must be a folder path or a loaded Bundle, got {type(bundle).__name__}")
    if public_key is not None and not isinstance(public_key, (bytes, str)):
        raise ConfigError(f"public_key must be 32 raw bytes or their hex, got {type(public_key).__name__}")
    if retention is not None and not isinstance(retention, Retention):
        raise ConfigError(f"retention must be a Retention, got {type(retention).__name__}")
    _threads(threads)
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(Path(bundle), public_key=public_key)
    # What a crash during an earlier install left (staging copies, superseded versions): best
    # effort, never the live bundle, never an error.
    clean_bundle_root(cast(Path, loaded.root))  # cast: Bundle.__post_init__ sets root (None: path)
    store = InteractionStore(path, synchronous=synchronous, retention=retention, clock=clock)
    return EdgeRec(store, loaded, threads=threads, clock=clock)


def _threads(threads: object) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ConfigError(f"threads must be an int from 1 to 256, got {threads!r}")
    return threads
