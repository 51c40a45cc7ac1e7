"""edgerec: on-device recommendations with private federated learning."""

from ._exceptions import (
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleSignatureError,
    ConfigError,
    DatasetError,
    EdgeRecError,
    InvalidEventError,
    SchemaVersionError,
    ScoringError,
    StoreError,
)
from .events import EventType, Interaction

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "BundleSignatureError",
    "ConfigError",
    "DatasetError",
    "EdgeRecError",
    "EventType",
    "Interaction",
    "InvalidEventError",
    "SchemaVersionError",
    "ScoringError",
    "StoreError",
    "__version__",
]
