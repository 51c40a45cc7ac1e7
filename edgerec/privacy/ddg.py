"""When a sum of discrete Gaussian shares may be accounted as a Gaussian (pure).

A sum of ``n`` independent ``N_Z(0, sigma^2)`` shares is not exactly a discrete Gaussian, but
very nearly: Kairouz, Liu and Steinke (2021, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", Theorem 1) show that for any integer shift
``Delta`` in ``Z^d`` the sum satisfies Renyi DP of every order ``alpha``::

    D_alpha(Z + Delta || Z) <= alpha / 2 * (||Delta||_2^2 / (n sigma^2) + tau * d / 2),
    tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)).

The first term is exactly the Gaussian mechanism's (noise multiplier
``sqrt(n) sigma / ||Delta||_2``); ``tau * d / 2`` is the price of discreteness. It vanishes
super-exponentially in ``sigma^2``: at ``sigma = 4`` grid steps, ``tau < 1e-60 * n``.

``FixedPoint`` refuses a noisy code whose per-device ``sigma`` is below 4 grid steps, and calls
``check_ddg`` with its dimension and its most clients; so for every code that can be built,
``tau * d / 2 <= 1e-12`` (in fact below 1e-50). At that size the correction changes no
epsilon the accountants print (they work to far coarser precision), which is what makes it
honest for ``releases_epsilon`` and friends to account the plain Gaussian mechanism.
"""

from __future__ import annotations

import math

import numpy as np

from .._exceptions import ConfigError
from ._checks import int_at_least, nonnegative_float

__all__ = ["DDG_TAU_LIMIT", "check_ddg", "ddg_tau"]

#: Largest ``tau * d / 2`` for which the Gaussian accounting is used unchanged.
DDG_TAU_LIMIT = 1e-12


def ddg_tau(sigma: float, n: int) -> float:
    """``tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1))`` of KLS21 Theorem 1.

    ``sigma`` is the std parameter of each share in grid steps, ``n`` the number of shares
    summed. 0 for ``n == 1`` (a single share is a discrete Gaussian). ``inf`` for
    ``sigma == 0`` and ``n > 1`` (no noise: no bound).

    Raises:
        ConfigError: ``sigma`` is negative or not finite, or ``n`` is not an int >= 1.
    """
    std = nonnegative_float(sigma, "sigma")
    shares = int_at_least(n, 1, "n")
    if shares == 1:
        return 0.0
    if std == 0.0:
        return math.inf
    k = np.arange(1, shares, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * std * std * k / (k + 1.0))))


def check_ddg(sigma: float, n: int, dimension: int) -> float:
    """``tau * d / 2`` for these shares; ConfigError if it exceeds ``DDG_TAU_LIMIT``.

    ``tau`` grows with ``n``, so pass the most shares a sum can ever hold (``max_clients``):
    every smaller sum is then covered too.
    """
    d = int_at_least(dimension, 1, "dimension")
    excess = ddg_tau(sigma, n) * d / 2.0
    if excess > DDG_TAU_LIMIT:
        raise ConfigError(
            f"discrete Gaussian shares of sigma {sigma:g} grid steps are too coarse: "
            f"tau * d / 2 = {excess:.3g} > {DDG_TAU_LIMIT:g} (Kairouz-Liu-Steinke 2021), so the "
            "Gaussian accounting would not hold; use more bits or fewer clients"
        )
    return excess
