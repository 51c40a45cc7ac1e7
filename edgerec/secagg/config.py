"""Round parameters shared by the server and every client of one round."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

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
    clients enforce, is :func:`min_threshold`: ``2 t > k + 1 + 2 c`` for ``colluders`` c
    (clients that may share everything with a lying server), and ``t > min_fraction (k + 1)``
    (2/3 by default, the active-adversary setting of Bonawitz et al.). With the signed
    survivor sets and mask sets (``statements.py``) this makes every sum a lying server can
    unmask hold the inputs of at least ``t - c`` honest clients (SECURITY.md has the argument).
    The largest usable t is k.
    """

    round_id: int
    vector_length: int
    min_clients: int = 3
    graph: str = COMPLETE
    degree: int | None = None
    threshold: int | None = None
    colluders: int = 0
    min_fraction: Fraction = Fraction(2, 3)

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
        if not isinstance(self.colluders, int) or self.colluders < 0:
            raise ConfigError("colluders must be an int >= 0")
        if not 0 <= Fraction(self.min_fraction) < 1:
            raise ConfigError("min_fraction must be in [0, 1)")

    def degree_for(self, n: int) -> int:
        """The number of neighbours each of ``n`` participants has."""
        if self.graph == COMPLETE:
            return n - 1
        wanted = self.degree if self.degree is not None else 2 * math.ceil(math.log2(max(n, 2)))
        return min(wanted, n - 1)

    def floor_for(self, degree: int) -> int:
        """The smallest threshold this configuration accepts for neighbourhoods of ``degree``."""
        return min_threshold(degree, self.colluders, self.min_fraction)

    def threshold_for(self, degree: int) -> int:
        """The Shamir threshold for neighbourhoods of ``degree`` (the explicit one if set)."""
        return self.threshold if self.threshold is not None else self.floor_for(degree)

    def parameters_for(self, n: int) -> tuple[int, int]:
        """(degree, threshold) for ``n`` participants; aborts if the turnout cannot be safe."""
        if n < self.min_clients:
            raise RoundAbortedError(f"{n} participants, at least {self.min_clients} required")
        degree = self.degree_for(n)
        threshold = self.threshold_for(degree)
        floor = self.floor_for(degree)
        if threshold < floor or threshold > degree:
            raise RoundAbortedError(
                f"threshold {threshold} unusable with degree {degree} and {self.colluders} "
                f"colluders: needs {floor} <= t <= {degree}"
            )
        return degree, threshold


def min_threshold(degree: int, colluders: int = 0, min_fraction: Fraction = Fraction(2, 3)) -> int:
    """The smallest safe t for neighbourhoods of ``degree`` (see :class:`SecAggConfig`):
    ``2 t > degree + 1 + 2 colluders`` and ``t > min_fraction * (degree + 1)``."""
    split_view = (degree + 1 + 2 * colluders) // 2 + 1
    share = Fraction(min_fraction) * (degree + 1)
    return max(split_view, math.floor(share) + 1)
