"""Private deltas: clipping, distributed Gaussian noise, fixed-point encoding, accounting.

The math re-exported here is pure: no I/O, no clock, no ``os.urandom``; randomness comes in as a
``numpy.random.Generator``. The device's privacy ledger (``edgerec.privacy.ledger``) is the one
I/O module of the package: it writes to the store's SQLite file. The accountant imports dp-accounting only when a figure is asked
for, so devices that never report epsilon need not install it (``edgerec[privacy]``).
"""

from __future__ import annotations

from .accountant import ACCOUNTANTS, PrivacyReport, epsilon, noise_for_epsilon, privacy_report
from .clipping import clip_l2, l2_norm
from .fixedpoint import FixedPoint, decode_sum, encode, rounding_bound, sum_encodings
from .noise import DistributedNoise, add_noise
from .pipeline import PrivateDelta, aggregate_decode, privatize

__all__ = [
    "ACCOUNTANTS",
    "DistributedNoise",
    "FixedPoint",
    "PrivacyReport",
    "PrivateDelta",
    "add_noise",
    "aggregate_decode",
    "clip_l2",
    "decode_sum",
    "encode",
    "epsilon",
    "l2_norm",
    "noise_for_epsilon",
    "privacy_report",
    "rounding_bound",
    "sum_encodings",
]
