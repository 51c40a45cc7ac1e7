"""Private deltas: clipping, distributed Gaussian noise, fixed-point encoding, accounting.

Everything here is pure: no I/O, no clock, no ``os.urandom``; randomness comes in as a
``numpy.random.Generator``.
"""

from __future__ import annotations

from .clipping import clip_l2, l2_norm
from .noise import DistributedNoise, add_noise

__all__ = ["DistributedNoise", "add_noise", "clip_l2", "l2_norm"]
