"""Model bundles: a folder with a manifest, the int8 graph, float weights and the catalogue.

::

    model-bundle/
      manifest.json        format + model versions, catalogue hash, hyper-parameters, file hashes
      manifest.sig         Ed25519 signature of manifest.json's bytes (when signed)
      model.int8.onnx      the graph devices score with
      weights.npz          float32 parameters devices fine-tune from
      catalogue.json       item ids, titles, feature names
      features.npy         item content features [n_items, n_features]

Loading checks everything before anything is used: format version, every file's SHA-256,
the catalogue hash, the shapes, and the signature when a public key is pinned. A bundle that
fails any check raises a ``BundleError`` and is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._exceptions import (
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleSignatureError,
    DatasetError,
)
from .data._types import Catalogue
from .model.config import ModelConfig
from .model.params import Params, param_names
from .signing import verify_bytes

__all__ = ["Bundle", "Manifest", "FORMAT", "FORMAT_VERSION", "load_bundle", "write_bundle"]

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 1
MODEL_FILE, WEIGHTS_FILE = "model.int8.onnx", "weights.npz"
CATALOGUE_FILE, FEATURES_FILE = "catalogue.json", "features.npy"
MANIFEST_FILE, SIGNATURE_FILE = "manifest.json", "manifest.sig"
_REQUIRED = (MODEL_FILE, WEIGHTS_FILE, CATALOGUE_FILE, FEATURES_FILE)


@dataclass(frozen=True)
class Manifest:
    """What a bundle is: versions, catalogue, hyper-parameters and the hash of every file."""

    model_version: int
    parent_version: int | None
    catalogue_hash: str
    n_items: int
    model_config: dict[str, Any]
    hyperparameters: dict[str, Any]
    files: dict[str, str]  # file name -> SHA-256 hex
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    created_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys): the exact bytes that are signed."""
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Manifest":
        """Parse manifest bytes; a ``BundleFormatError`` for anything but a well-typed manifest."""
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BundleFormatError(f"not an edgerec bundle (format {data.get('format')!r})")
            if data.get("format_version") != FORMAT_VERSION:
                raise BundleFormatError(
                    f"bundle format version {data.get('format_version')!r} is not supported "
                    f"(this edgerec reads version {FORMAT_VERSION})")
            manifest = cls(**data)
        except BundleFormatError:
            raise
        except (ValueError, TypeError, AttributeError) as exc:
            raise BundleFormatError(f"malformed manifest: {exc}") from exc
        manifest._check_types()
        return manifest

    def _check_types(self) -> None:
        # Devices decide "newer" by comparing model_version (rollback protection): a signed
        # "9" or 9.5 or true must be a format error, not a TypeError or a wrong comparison.
        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not is_int(self.model_version):
            raise BundleFormatError(f"malformed manifest: model_version {self.model_version!r} is not an int")
        if self.parent_version is not None and not is_int(self.parent_version):
            raise BundleFormatError(f"malformed manifest: parent_version {self.parent_version!r} is not an int")
        if self.created_at is not None and not isinstance(self.created_at, str):
            raise BundleFormatError(f"malformed manifest: created_at {self.created_at!r} is not a str")
        if not isinstance(self.files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.files.items()):
            raise BundleFormatError("malformed manifest: files must map names to SHA-256 hex")


@dataclass(frozen=True, eq=False)
class Bundle:
    """A verified bundle, loaded."""

    path: Path
    manifest: Manifest
    config: ModelConfig
    catalogue: Catalogue
    params: Params

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def version(self) -> int:
        return self.manifest.model_version


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_payload(folder: Path, params: Params, catalogue: Catalogue, cfg: ModelConfig) -> None:
    from .model.export import export_onnx, quantize_int8

    float_path = folder / "model.float.onnx"
    export_onnx(params, catalogue.features, cfg, float_path)
    quantize_int8(float_path, folder / MODEL_FILE)
    float_path.unlink()
    np.savez(folder / WEIGHTS_FILE, **{n: params[n] for n in param_names(cfg)})
    np.save(folder / FEATURES_FILE, catalogue.features)
    meta = {"item_ids": list(catalogue.item_ids), "titles": list(catalogue.titles),
            "feature_names": list(catalogue.feature_names)}
    (folder / CATALOGUE_FILE).write_text(json.dumps(meta))


def replace_dir(staged: Path, target: Path) -> None:
    """Put ``staged`` at ``target`` so that ``target`` is always either the old or the new folder."""
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
    os.replace(staged, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def write_bundle(target: str | Path, params: Params, catalogue: Catalogue, cfg: ModelConfig, *,
                 model_version: int = 1, parent_version: int | None = None,
                 hyperparameters: dict[str, Any] | None = None, created_at: str | None = None,
                 sign: Callable[[bytes], bytes] | None = None) -> Manifest:
    """Export, quantize and package a model; ``sign`` (e.g. the server's key) signs the manifest.

    Needs the ``train`` extra (onnx). The folder appears whole or not at all.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        _write_payload(staged, params, catalogue, cfg)
        manifest = Manifest(
            model_version=model_version, parent_version=parent_version,
            catalogue_hash=catalogue.content_hash, n_items=len(catalogue),
            model_config=cfg.to_dict(), hyperparameters=dict(hyperparameters or {}),
            files={name: _sha256(staged / name) for name in _REQUIRED}, created_at=created_at)
        raw = manifest.to_bytes()
        (staged / MANIFEST_FILE).write_bytes(raw)
        if sign is not None:
            (staged / SIGNATURE_FILE).write_bytes(sign(raw))
        replace_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return manifest


def _read_manifest(folder: Path, public_key: bytes | str | None) -> Manifest:
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleFormatError(f"{folder} has no {MANIFEST_FILE}: not a bundle")
    raw = manifest_path.read_bytes()
    if public_key is not None:
        sig_path = folder / SIGNATURE_FILE
        if not sig_path.is_file():
            raise BundleSignatureError(f"{folder} is not signed but a public key is pinned")
        verify_bytes(public_key, raw, sig_path.read_bytes())
    manifest = Manifest.from_bytes(raw)
    missing = [name for name in _REQUIRED if name not in manifest.files]
    if missing:
        raise BundleFormatError(f"manifest lists no hash for {missing}")
    for name, digest in manifest.files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise BundleFormatError(f"bundle file {name!r} is missing")
        if _sha256(path) != digest:
            raise BundleIntegrityError(f"{name} does not match its SHA-256 in the manifest")
    return manifest


def _read_catalogue(folder: Path) -> Catalogue:
    meta = json.loads((folder / CATALOGUE_FILE).read_text())
    features = np.load(folder / FEATURES_FILE, allow_pickle=False)
    return Catalogue(tuple(meta["item_ids"]), tuple(meta["titles"]), features,
                     tuple(meta["feature_names"]))


def _read_params(folder: Path, cfg: ModelConfig, n_items: int) -> Params:
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        params = {name: np.asarray(npz[name], np.float32) for name in param_names(cfg)}
    if params["emb_in"].shape != (n_items, cfg.dim) or params["pos"].shape != (cfg.history,):
        raise BundleFormatError("weights do not match the manifest's model config and catalogue")
    return params


def load_bundle(path: str | Path, *, public_key: bytes | str | None = None) -> Bundle:
    """Load and verify a bundle folder. With ``public_key`` the manifest must be signed by it."""
    folder = Path(path)
    manifest = _read_manifest(folder, public_key)
    try:
        cfg = ModelConfig.from_dict(manifest.model_config)
        catalogue = _read_catalogue(folder)
        params = _read_params(folder, cfg, manifest.n_items)
    except BundleError:
        raise
    except (KeyError, ValueError, TypeError, OSError, DatasetError) as exc:
        raise BundleFormatError(f"bundle {folder} is malformed: {exc}") from exc
    if catalogue.content_hash != manifest.catalogue_hash or len(catalogue) != manifest.n_items:
        raise BundleIntegrityError("the catalogue does not match the manifest's catalogue hash")
    return Bundle(folder, manifest, cfg, catalogue, params)
