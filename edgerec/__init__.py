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
    MissingDependencyError,
    SchemaVersionError,
    ScoringError,
    StoreError,
    UnknownItemWarning,
)
from .bundle import Bundle, Manifest, load_bundle, write_bundle
from .client import EdgeRec, Recommendation, open
from .data import Catalogue, Dataset
from .events import EventType, Interaction
from .finetune import FineTuneConfig, LocalUpdate
from .model.config import ModelConfig, TrainConfig
from .model.shortlist import ShortlistConfig
from .privacy.ledger import LedgerEntry, LedgerSnapshot, PrivacyLedger, read_ledger
from .store import ErasureResult, InteractionStore, Retention

__version__ = "0.1.0"

__all__ = [
    "Bundle",
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "BundleSignatureError",
    "Catalogue",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "EdgeRec",
    "EdgeRecError",
    "ErasureResult",
    "EventType",
    "FineTuneConfig",
    "Interaction",
    "InteractionStore",
    "InvalidEventError",
    "LedgerEntry",
    "LedgerSnapshot",
    "LocalUpdate",
    "Manifest",
    "MissingDependencyError",
    "ModelConfig",
    "PrivacyLedger",
    "Recommendation",
    "Retention",
    "SchemaVersionError",
    "ScoringError",
    "ShortlistConfig",
    "StoreError",
    "TrainConfig",
    "UnknownItemWarning",
    "__version__",
    "load_bundle",
    "open",
    "read_ledger",
    "write_bundle",
]
