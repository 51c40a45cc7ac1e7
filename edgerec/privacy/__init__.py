"""Private deltas: clipping, distributed Gaussian noise, fixed-point encoding, accounting.

Everything here is pure: no I/O, no clock, no ``os.urandom``; randomness comes in as a
``numpy.random.Generator``.
"""

from __future__ import annotations

from .clipping import clip_l2, l2_norm
from .fixedpoint import FixedPoint, decode_sum, encode, rounding_bound, sum_encodings
from .noise import DistributedNoise, add_noise

__all__ = [
    "DistributedNoise",
    "FixedPoint",
    "add_noise",
    "clip_l2",
    "decode_sum",
    "encode",
    "l2_norm",
    "rounding_bound",
    "sum_encodings",
]
