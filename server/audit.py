"""The privacy audit: what each round released, under which protection, at what cost.

What is accounted is what the coordinator did, nothing idealised. Each round opens with a
cohort drawn from the ``population`` N of devices active at opening, every device independently
with the probability q the round announces (``open_round``); only the drawn members can take
part. Given its size k (published: it is the round's ``max_participants``) the cohort is a
uniformly random k of N, so a completed round is one ``edgerec.privacy.Release(N, k, z)``:
sampling without replacement of k of N under the zero-out neighbouring relation (one device's
update replaced by zero), or, when k = N (q = 1), a plain Gaussian release with no
amplification. The epsilon comes from ``edgerec.privacy.releases_epsilon`` (dp-accounting; see
``edgerec/privacy/releases.py`` for the events), never from this module.

Evaluation rounds are accounted exactly so: their devices send ``edgerec.fedeval`` vectors
clipped to the layout's L2 bound with noise of multiplier z for it, which is the same Gaussian
release of one device's contribution, in the same budget.

Aborted rounds release nothing and cost nothing. ``z == 0`` means no differential privacy: the
cumulative epsilon is infinite from then on (``null`` in JSON with ``differentially_private:
false``, ``inf`` in the CLI's table). Not protected, and shown as such: the exact cohort size,
participant and survivor counts of every round.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from edgerec._exceptions import ConfigError
from edgerec.privacy import Release, noise_for_releases, releases_epsilon

from ._exceptions import BadRequestError
from .state import RoundRecord, StateBackend

__all__ = ["NEIGHBOURING_RELATION", "audit_rows", "certificate_rows", "cohort_of", "cumulative_epsilon",
           "noise_for_target", "release_of"]

#: One device's clipped update replaced by zero (it still takes part and adds its noise share).
NEIGHBOURING_RELATION = "zero-out"


def cohort_of(record: RoundRecord) -> int:
    """How many devices were drawn into the round (its members)."""
    if "sampling_rate" not in record.params:
        # Opened before rounds were sampled: every active device was a member (and the cap only
        # said who came first), so the cohort is the whole population: no amplification.
        return record.population
    return int(record.params["max_participants"])  # set to the drawn cohort's size at opening


def release_of(record: RoundRecord) -> Release:
    """What a completed round released, as the accountant takes it."""
    return Release(population=record.population, cohort=cohort_of(record),
                   noise_multiplier=float(record.params["noise_multiplier"]))


def cumulative_epsilon(releases: Iterable[Release], delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` after ``releases`` (``inf`` once one has no noise, ``0`` for none)."""
    releases = list(releases)
    if accountant == "pld" and any(r.sampled for r in releases):
        # dp-accounting's PLD accountant has no event for a cohort sampled without replacement;
        # a server configured for PLD must still close its sampled rounds (rather than fail
        # closing them until they abort), so those are accounted with RDP.
        accountant = "rdp"
    # Composition is order-free, and equal neighbouring releases are evaluated once: sorted,
    # every round of the same (N, k, z) is, so the cost grows with the distinct cohort sizes
    # drawn (~0.4 s each for a sampled one), not with the rounds run.
    releases.sort(key=lambda r: (r.population, r.cohort, r.noise_multiplier))
    return float(releases_epsilon(releases, delta, accountant=accountant))


def noise_for_target(target_epsilon: float, population: int, cohort: int, rounds: int,
                     delta: float, accountant: str = "rdp") -> float:
    """The least noise multiplier z whose ``rounds`` rounds, each drawing ``cohort`` of
    ``population`` devices, this audit accounts at ``target_epsilon`` or less at ``delta``.

    The same ``Release(population, cohort, z)`` as ``release_of`` and the same accountant as
    ``cumulative_epsilon`` (RDP for sampled rounds), so ``cumulative_epsilon`` of those rounds
    is at most the target (``edgerec.privacy.noise_for_releases``, relative tolerance 1e-3).

    Raises:
        BadRequestError: a bad argument, or no z up to 1e6 meets the target.
    """
    kind = "rdp" if accountant == "pld" and cohort < population else accountant
    try:
        return noise_for_releases(target_epsilon, population=population, cohort=cohort,
                                  rounds=rounds, delta=delta, accountant=kind)
    except ConfigError as exc:
        raise BadRequestError(str(exc)) from None


def amplification(release: Release) -> str:
    """How the round's sampling enters the accounting, in words."""
    if not release.sampled:
        return "none"
    return f"sampling without replacement, {release.cohort} of {release.population}"


def audit_rows(state: StateBackend, delta: float, accountant: str = "rdp") -> list[dict[str, Any]]:
    """One row per closed round, oldest first (what ``GET /v1/audit`` returns).

    A completed round's ``cumulative_epsilon`` is the one computed when it completed, from
    ``release_of`` every round completed so far (the same releases the rows show); rounds opened
    before sampling existed stored a figure that assumed sampling, so theirs is recomputed.
    """
    rows: list[dict[str, Any]] = []
    released: list[Release] = []
    eps = 0.0  # after the completed rounds so far
    for r in state.rounds():
        if r.state == "open":
            continue
        release = release_of(r)
        if r.state == "done":
            released.append(release)
            eps = _stored_epsilon(r, released, delta, accountant)
        rows.append(_row(state, r, release, eps if r.state == "done" else None, eps, delta))
    return rows


def _stored_epsilon(record: RoundRecord, released: list[Release], delta: float,
                    accountant: str) -> float:
    """The cumulative epsilon after ``record`` (the last of ``released``)."""
    if "sampling_rate" in record.params and record.epsilon is not None:
        return record.epsilon
    # Rounds from before sampling come first, and all of them are plain Gaussians: quick.
    return cumulative_epsilon(released, delta, accountant)


def _row(state: StateBackend, r: RoundRecord, release: Release, eps: float | None,
         eps_so_far: float, delta: float) -> dict[str, Any]:
    p = r.params
    received = state.messages(r.id)  # digests and sizes stay after the bodies are erased
    return {
        "round_id": r.id, "state": r.state, "reason": r.reason or None,
        # What the devices sent: model deltas ("training") or evaluation vectors ("evaluation",
        # measuring model_version_in and candidate_version; out: no model). One budget for both.
        "kind": p.get("kind", "training"), "candidate_version": p.get("candidate"),
        "opened_at": r.opened_at, "closed_at": r.closed_at,
        # The sampling actually used: q as announced, and who was drawn from how many.
        "sampling_rate": float(p.get("sampling_rate", 1.0)), "population": release.population,
        "cohort": release.cohort, "participants": r.participants, "survivors": r.survivors,
        # What devices uploaded to this round, for matching against their privacy ledgers.
        "messages_received": len(received), "bytes_received": sum(m.size for m in received),
        # What was federated: the length of the vector each device sent, and the weights the
        # round left out (unchanged by it).
        "federated_weights": r.vector_length, "frozen": list(p.get("frozen", [])),
        "clip": p["clip"], "noise_multiplier": release.noise_multiplier, "threshold": p["threshold"],
        "min_survivors": p["threshold"] - p.get("colluders", 0), "strategy": p["strategy"],
        "amplification": amplification(release), "neighbouring_relation": NEIGHBOURING_RELATION,
        "model_version_in": r.base_version, "model_version_out": r.out_version,
        "cumulative_epsilon": None if eps is None or math.isinf(eps) else eps,
        # Whether everything released up to this round is still differentially private.
        "differentially_private": not math.isinf(eps_so_far),
        "delta": delta,
    }


def certificate_rows(state: StateBackend) -> list[dict[str, Any]]:
    """Every enrolment certificate the server stored, decoded (public: what an auditor counts
    against the devices the operator really enrolled; SECURITY.md)."""
    from edgerec.secagg import decode_certificate

    rows = []
    for device_id, data in state.certificates():
        cert = decode_certificate(data)
        rows.append({"device_id": device_id, "identity_key": cert.identity_key.hex(),
                     "issued_at": cert.issued_at, "expires_at": cert.expires_at,
                     "authority_id": cert.authority_id.hex(), "certificate": data.hex()})
    return rows
