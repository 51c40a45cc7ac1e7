"""Private deltas: clipping, distributed discrete Gaussian noise, fixed point, accounting.

The device side, ``privatize``: clip to L2 norm C, quantize to an integer grid (stochastic
rounding), add this device's discrete Gaussian share drawn from a cryptographically secure
``RandomSource``, encode modulo 2^32 for secure aggregation. The server side,
``aggregate_decode``. Accounting with dp-accounting: ``releases_epsilon`` for the rounds as they
run (fixed-size cohorts, zero-out neighbours), ``noise_for_releases`` for the noise multiplier
that meets a target epsilon under that accounting (users choose epsilon, not z),
``device_epsilon`` for a device's own bound, and ``epsilon``/``privacy_report``/
``noise_for_epsilon`` for the Poisson-sampling idealisation.

The math re-exported here is pure: no I/O, no clock, no ``os.urandom``; randomness comes in as
a ``RandomSource``. Two modules do I/O: ``random`` (``SecureRandom.from_os()`` reads the OS
for a key) and ``ledger`` (the device's privacy ledger, in the store's SQLite file).
dp-accounting is imported only when a figure is asked for, so devices that never report
epsilon need not install it (``edgerec[privacy]``).
"""

from __future__ import annotations

from .accountant import ACCOUNTANTS, PrivacyReport, epsilon, noise_for_epsilon, privacy_report
from .calibration import noise_for_releases
from .clipping import clip_l2, l2_norm
from .ddg import check_ddg, ddg_tau
from .discrete import discrete_gaussian
from .fixedpoint import FixedPoint, decode_sum, quantize, rounding_bound, sum_encodings, to_residues
from .noise import DistributedNoise
from .pipeline import PrivateDelta, aggregate_decode, privatize
from .random import RandomSource, SecureRandom
from .releases import Release, device_epsilon, releases_delta, releases_epsilon

__all__ = [
    "ACCOUNTANTS",
    "DistributedNoise",
    "FixedPoint",
    "PrivacyReport",
    "PrivateDelta",
    "RandomSource",
    "Release",
    "SecureRandom",
    "aggregate_decode",
    "check_ddg",
    "clip_l2",
    "ddg_tau",
    "decode_sum",
    "device_epsilon",
    "discrete_gaussian",
    "epsilon",
    "l2_norm",
    "noise_for_epsilon",
    "noise_for_releases",
    "privacy_report",
    "privatize",
    "quantize",
    "releases_delta",
    "releases_epsilon",
    "rounding_bound",
    "sum_encodings",
    "to_residues",
]
