"""Publishing models: float weights -> ONNX -> int8 -> signed bundle -> archive in the state.

Loading goes the other way and verifies as a device would (signature and every hash), so the
server never aggregates onto a model it did not sign.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgerec.bundle import Bundle, load_bundle, write_bundle
from edgerec.data import Catalogue
from edgerec.model.config import ModelConfig
from edgerec.model.params import Params, flatten, param_names
from edgerec.signing import public_key_bytes, sign_bytes
from edgerec.sync import pack_bundle

from ._exceptions import NotFoundError
from .state import ModelRecord, StateBackend

__all__ = ["Publisher", "flat_weights"]


def flat_weights(bundle: Bundle) -> np.ndarray:
    """The shared weights of ``bundle`` as one vector (the shape of every device's delta)."""
    return flatten(bundle.params, param_names(bundle.config))


class Publisher:
    """Builds, signs, stores and loads model versions."""

    def __init__(self, state: StateBackend, key: Ed25519PrivateKey) -> None:
        self.state, self._key = state, key
        self._cache: dict[int, Bundle] = {}
        self._lock = threading.Lock()

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that verifies every published bundle."""
        return public_key_bytes(self._key)

    def sign(self, data: bytes) -> bytes:
        """This key's Ed25519 signature of ``data`` (rollout statements: domain-separated bytes
        that no manifest can be)."""
        return sign_bytes(self._key, data)

    def build(self, params: Params, catalogue: Catalogue, cfg: ModelConfig, version: int,
              parent: int | None, hyperparameters: dict[str, Any]) -> tuple[bytes, str]:
        """The signed archive of a new version and its SHA-256 (stored by the caller)."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with tempfile.TemporaryDirectory(prefix="edgerec-publish-") as tmp:
            folder = Path(tmp) / "bundle"
            write_bundle(folder, params, catalogue, cfg, model_version=version,
                         parent_version=parent, hyperparameters=hyperparameters, created_at=stamp,
                         sign=lambda raw: sign_bytes(self._key, raw))
            archive = pack_bundle(folder)
        return archive, hashlib.sha256(archive).hexdigest()

    def import_bundle(self, folder: str | Path, now: float, version: int | None = None) -> ModelRecord:
        """Re-sign an existing bundle folder as this server's version ``version`` (default 1)."""
        source = load_bundle(folder)
        latest = self.state.latest_model()
        version = version or (latest.version + 1 if latest else 1)
        hyper = dict(source.manifest.hyperparameters, imported_from=source.manifest.model_version)
        archive, sha = self.build(source.params, source.catalogue, source.config, version,
                                  latest.version if latest else None, hyper)
        record = self.state.add_model(version, latest.version if latest else None, now, archive,
                                      sha, None)
        self.state.log_event("model_published", {"version": version, "sha256": sha}, now)
        return record

    def load(self, version: int) -> Bundle:
        """The verified bundle of ``version`` (kept in memory after the first load)."""
        with self._lock:
            if version in self._cache:
                return self._cache[version]
            archive = self.state.model_archive(version)
            if archive is None:
                raise NotFoundError(f"no model version {version}")
            from edgerec.sync import install_bundle

            with tempfile.TemporaryDirectory(prefix="edgerec-load-") as tmp:
                bundle = install_bundle(archive, Path(tmp) / "bundle", self.public_key)
            # Everything is in memory now; keep only the newest two versions.
            self._cache = {v: b for v, b in self._cache.items() if v >= version - 1}
            self._cache[version] = bundle
            return bundle

    def latest(self) -> ModelRecord:
        """The newest published version's record."""
        record = self.state.latest_model()
        if record is None:
            raise NotFoundError("no model yet: run 'edgerec-server init' first")
        return record
