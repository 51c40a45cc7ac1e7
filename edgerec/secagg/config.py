"""Round parameters shared by the server and every client of one round."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._exceptions import ConfigError, RoundAbortedError

COMPLETE = "complete"
HARARY = "harary"
MAX_CLIENT_ID = 2**32 - 2  # ids travel as uint32 and the share x-coordinate is id + 1


@dataclass(frozen=True)
class SecAggConfig:
    """What a round is: which vectors, how many clients, which graph, which threshold.

    ``graph="complete"`` is SecAgg (Bonawitz et al. 2017): every client masks with and shares
    to every other. ``graph="harary"`` is SecAgg+ (Bell et al. 2020): a random ``degree``-regular
    Harary graph (default degree ``2 * ceil(log2 n)``), so costs grow with log n, not n.

    ``threshold`` is the Shamir threshold t. A client's self-mask seed is shared among its k
    neighbours and itself, its mask key among its k neighbours. The default, and the floor the
    clients enforce, is the smallest t with ``2 t > k + 1``: then no split view of the round can
    collect t shares of both secrets of one client, so its input stays hidden even if the
    server lies about who dropped. The largest usable t is k.
    """

    round_id: int
    vector_length: int
    min_clients: int = 3
    graph: str = COMPLETE
    degree: int | None = None
    threshold: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.round_id < 2**64:
            raise ConfigError("round_id must fit in 64 bits")
        if not 1 <= self.vector_length < 2**32:
            raise ConfigError("vector_length must be in [1, 2^32)")
        if self.min_clients < 3:
            raise ConfigError("min_clients must be at least 3 (with 2, the sum reveals each input)")
        if self.graph not in (COMPLETE, HARARY):
            raise ConfigError(f"graph must be {COMPLETE!r} or {HARARY!r}")
        if self.degree is not None and (self.graph != HARARY or self.degree < 2 or self.degree % 2):
            raise ConfigError("degree is for the harary graph and must be even and at least 2")
        if self.threshold is not None and self.threshold < 2:
            raise ConfigError("threshold must be at least 2")

    def degree_for(self, n: int) -> int:
        """The number of neighbours each of ``n`` participants has."""
        if self.graph == COMPLETE:
            return n - 1
        wanted = self.degree if self.degree is not None else 2 * math.ceil(math.log2(max(n, 2)))
        return min(wanted, n - 1)

    def threshold_for(self, degree: int) -> int:
        """The Shamir threshold for neighbourhoods of ``degree`` (the explicit one if set)."""
        return self.threshold if self.threshold is not None else min_threshold(degree)

    def parameters_for(self, n: int) -> tuple[int, int]:
        """(degree, threshold) for ``n`` participants; aborts if the turnout cannot be safe."""
        if n < self.min_clients:
            raise RoundAbortedError(f"{n} participants, at least {self.min_clients} required")
        degree = self.degree_for(n)
        threshold = self.threshold_for(degree)
        if threshold < min_threshold(degree) or threshold > degree:
            raise RoundAbortedError(
                f"threshold {threshold} unusable with degree {degree}: "
                f"needs {min_threshold(degree)} <= t <= {degree}"
            )
        return degree, threshold


def min_threshold(degree: int) -> int:
    """The smallest t with 2t > degree + 1 (see :class:`SecAggConfig`)."""
    return (degree + 1) // 2 + 1
