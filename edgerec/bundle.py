"""Model bundles: a folder with a manifest, the int8 graph, float weights and the catalogue.

::

    model-bundle/
      manifest.json        format + model versions, catalogue hash, hyper-parameters, file hashes
      manifest.sig         Ed25519 signature of manifest.json's bytes (when signed)
      model.int8.onnx      the graph devices score with
      weights.npz          float32 parameters devices fine-tune from
      catalogue.json       item ids, titles, feature names
      features.npy         item content features [n_items, n_features]
      shortlist.int8.onnx  large catalogues only: the top-k graph over a few item clusters

Loading checks everything before anything is used: format version, every file's SHA-256,
the catalogue hash, the shapes, and the signature when a public key is pinned. A bundle that
fails any check raises a ``BundleError`` and is not used.

**Bundle roots.** A new bundle written or installed where none is (``write_bundle``,
``edgerec.sync.install_bundle``) is a plain folder, staged next to it and renamed into place. A
bundle folder that receives another bundle becomes a *bundle root*: complete, immutable bundle
folders side by side and one pointer naming the live one::

    model-bundle/
      CURRENT              "v000003-m12-1f2e3d4c\\n": the live version (relative name)
      .versions/
        v000002-m11-9a8b7c6d/   the previous bundle (kept for a process still reading it)
        v000003-m12-1f2e3d4c/   the live bundle: manifest.json, model.int8.onnx, ...

An install writes the new bundle into ``.versions/.incoming-*``, fsyncs its files and folder,
renames it to its ``v*`` name, writes the pointer to a temporary file, fsyncs it and
``os.replace``-s it over ``CURRENT`` (the one switch), fsyncs the root, then removes what is
superseded. A crash at any instant leaves ``CURRENT`` naming a complete bundle (the old or the
new one); a plain folder becomes a root the same way, since the bundle it holds stays valid until
``CURRENT`` appears. ``load_bundle`` follows the pointer when there is one, so apps keep calling
``edgerec.open("app.db", bundle="model-bundle/")`` on either layout (``Bundle.path`` is then the
version folder, ``Bundle.root`` the root). Installs into one root are serialised by a lock the OS
drops when its holder dies (``flock`` on the root folder); ``clean_bundle_root`` removes what
crashed and superseded installs left. Windows (not tested): the same steps, with a lock file in
``.versions``, no folder fsync (NTFS journals renames), and a version still open by another
process is removed by a later cleanup.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._exceptions import (BundleError, BundleFormatError, BundleIntegrityError, BundleSignatureError,
                          ConfigError)
from .types import Catalogue
from .events import N_SIGNALS
from .model.config import ModelConfig
from .model.params import MIX_PREFIX, Params, param_names
from .model.shortlist import ShortlistConfig
from .signing import load_public_key, verify_bytes
from ._bundle_root import (  # the versioned layout and its one atomic switch (see there)
    CATALOGUE_FILE,
    FEATURES_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    POINTER_FILE,
    REQUIRED,
    SHORTLIST_FILE,
    SIGNATURE_FILE,
    VERSIONS_DIR,
    WEIGHTS_FILE,
    bundle_root,
    clean_bundle_root,
    install_atomically,
    resolve_bundle,
)

__all__ = ["Bundle", "Manifest", "FORMAT", "FORMAT_VERSION", "POINTER_FILE", "SHORTLIST_FROM_ITEMS",
           "VERSIONS_DIR",
           "bundle_root", "clean_bundle_root", "install_atomically", "load_bundle", "resolve_bundle",
           "write_bundle"]

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 1
_REQUIRED = REQUIRED
#: From this many items on, ``write_bundle`` adds the shortlist graph (``shortlist="auto"``):
#: the exact int8 top-k costs about 12.5 us per 1,000 items on 2 cores (BENCHMARKS.md,
#: "recommend() latency"), over 5 ms from about 400k items; the shortlist finds most, not all,
#: of the exact top k (BENCHMARKS.md, "Shortlist for large catalogues"), so smaller catalogues keep the exact graph.
SHORTLIST_FROM_ITEMS = 400_000

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
    created_at: str | None = None  # UTC, ISO 8601 ("2024-05-01T12:00:00Z"); None in old bundles
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
    """A verified bundle, loaded.

    ``path`` is the folder holding its files (in a bundle root: the immutable version folder,
    so ``model_path`` keeps naming this bundle's graph after a later install); ``root`` is where
    installs go (the bundle root, or ``path`` itself for a plain folder).
    """

    path: Path
    manifest: Manifest
    config: ModelConfig
    catalogue: Catalogue
    params: Params
    root: Path | None = None  # None: the same as ``path``

    def __post_init__(self) -> None:
        if self.root is None:
            object.__setattr__(self, "root", self.path)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def shortlist_path(self) -> Path | None:
        """The shortlist graph ``recommend()`` uses when the bundle has one."""
        return self.path / SHORTLIST_FILE if SHORTLIST_FILE in self.manifest.files else None

    @property
    def version(self) -> int:
        return self.manifest.model_version


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_shortlist(folder: Path, params: Params, catalogue: Catalogue, cfg: ModelConfig,
                     scfg: ShortlistConfig) -> None:
    from .model.export_shortlist import export_shortlist, quantize_shortlist
    from .model.mix import scoring_tables
    from .model.shortlist import build_index

    _, table_out, bias = scoring_tables(params, catalogue.features, cfg)
    index = build_index(table_out, bias, scfg)
    float_path = folder / "shortlist.float.onnx"
    export_shortlist(params, catalogue.features, cfg, index, scfg, float_path)
    quantize_shortlist(float_path, folder / SHORTLIST_FILE)
    float_path.unlink()


def _write_payload(folder: Path, params: Params, catalogue: Catalogue, cfg: ModelConfig,
                   shortlist: ShortlistConfig | None) -> None:
    from .model.export import export_onnx, quantize_int8

    float_path = folder / "model.float.onnx"
    export_onnx(params, catalogue.features, cfg, float_path)
    quantize_int8(float_path, folder / MODEL_FILE)
    float_path.unlink()
    if shortlist is not None:
        _write_shortlist(folder, params, catalogue, cfg, shortlist)
    # Any: savez's stub gives its **kwds the keyword allow_pickle: bool too, so a dict of
    # arrays unpacked into it cannot type-check (no weight is named allow_pickle).
    weights: dict[str, Any] = {n: params[n] for n in param_names(cfg)}
    np.savez(folder / WEIGHTS_FILE, **weights)
    np.save(folder / FEATURES_FILE, catalogue.features)
    meta = {"item_ids": list(catalogue.item_ids), "titles": list(catalogue.titles),
            "feature_names": list(catalogue.feature_names)}
    (folder / CATALOGUE_FILE).write_text(json.dumps(meta))


def write_bundle(target: str | Path, params: Params, catalogue: Catalogue, cfg: ModelConfig, *,
                 model_version: int = 1, parent_version: int | None = None,
                 hyperparameters: Mapping[str, object] | None = None, created_at: str | None = None,
                 sign: Callable[[bytes], bytes] | None = None,
                 shortlist: ShortlistConfig | None | str = "auto") -> Manifest:
    """Export, quantize and package a model; ``sign`` (e.g. the server's key) signs the manifest.

    ``shortlist``: a ``ShortlistConfig`` adds the shortlist graph ``recommend()`` then uses (an
    approximate top k over a few item clusters, ``edgerec.model.shortlist``), None leaves it
    out, "auto" adds it with the defaults from ``SHORTLIST_FROM_ITEMS`` items on.

    Needs the ``train`` extra (onnx). Written the way :func:`install_atomically` installs: a
    new ``target`` (or an empty folder) becomes a plain bundle folder that appears whole or not at
    all; onto an existing bundle (plain or a root) the new one becomes the live version of a
    bundle root, so that a crash leaves the old bundle or the new one, never neither.

    ``created_at`` (UTC, ISO 8601) defaults to now: the bundle is written right after training.
    """
    created_at = utc_now_iso() if created_at is None else created_at
    if shortlist == "auto":
        shortlist = ShortlistConfig() if len(catalogue) >= SHORTLIST_FROM_ITEMS else None
    if shortlist is not None and not isinstance(shortlist, ShortlistConfig):
        raise ConfigError(f"shortlist must be a ShortlistConfig, None or 'auto', got {shortlist!r}")
    files = _REQUIRED + ((SHORTLIST_FILE,) if shortlist is not None else ())

    def fill(folder: Path) -> Manifest:
        _write_payload(folder, params, catalogue, cfg, shortlist)
        manifest = Manifest(
            model_version=model_version, parent_version=parent_version,
            catalogue_hash=catalogue.content_hash, n_items=len(catalogue),
            model_config=cfg.to_dict(), hyperparameters=dict(hyperparameters or {}),
            files={name: _sha256(folder / name) for name in files}, created_at=created_at)
        raw = manifest.to_bytes()
        (folder / MANIFEST_FILE).write_bytes(raw)
        if sign is not None:
            (folder / SIGNATURE_FILE).write_bytes(sign(raw))
        return manifest

    return install_atomically(target, fill)[1]


def utc_now_iso() -> str:
    """The current UTC time to the second, ISO 8601 with a ``Z``: a manifest's ``created_at``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading --------------------------------------------------------------------------------------
def _read_manifest(folder: Path, public_key: Ed25519PublicKey | None) -> Manifest:
    manifest_path = folder / MANIFEST_FILE
    if not folder.exists():
        raise BundleFormatError(f"no bundle at {folder}")
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


@contextmanager
def _reading(name: str) -> Iterator[None]:
    """Any foreign exception while parsing ``name`` becomes a BundleFormatError naming it.

    A file can match its hash and still not parse (a bundle signed by a buggy server, or an
    unsigned one re-hashed by hand): np.load then raises BadZipFile, EOFError, ValueError...
    """
    try:
        yield
    except BundleError:
        raise
    except Exception as exc:
        raise BundleFormatError(f"{name} cannot be read: {type(exc).__name__}: {exc}") from exc


def _read_catalogue(folder: Path) -> Catalogue:
    with _reading(f"bundle file {CATALOGUE_FILE}"):
        meta = json.loads((folder / CATALOGUE_FILE).read_text())
        ids, titles, names = (tuple(meta[k]) for k in ("item_ids", "titles", "feature_names"))
    with _reading(f"bundle file {FEATURES_FILE}"):
        features = np.load(folder / FEATURES_FILE, allow_pickle=False)
    with _reading(f"bundle file {CATALOGUE_FILE}"):
        return Catalogue(ids, titles, features, names)


def _expected_shapes(cfg: ModelConfig, n_items: int, n_features: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter (the table in edgerec.model.params)."""
    if cfg.encoder == "mix":
        pooled, seq = (_expected_shapes(tower, n_items, n_features) for tower in cfg.towers())
        return {**pooled, **{MIX_PREFIX + name: shape for name, shape in seq.items()}}
    d = cfg.dim
    shapes = {"emb_in": (n_items, d), "feat_in": (n_features, d), "emb_out": (n_items, d),
              "feat_out": (n_features, d), "bias": (n_items,), "pos": (cfg.history,),
              "signal": (N_SIGNALS,), "user0": (d,)}
    if cfg.encoder == "attention":
        # Block weights are [d, d], their biases and layer norms [d] (edgerec.model.params).
        shapes.update(att_pos=(cfg.history, d), att_signal=(N_SIGNALS, d))
        for name in param_names(cfg):
            if name not in shapes:
                shapes[name] = (d, d) if name.rsplit(".", 1)[-1] in ("wq", "wk", "wv", "w1", "w2") else (d,)
    elif cfg.hidden:
        shapes.update(w1=(d, d), b1=(d,), w2=(d, d))
    return shapes


def _read_params(folder: Path, cfg: ModelConfig, n_items: int, n_features: int) -> Params:
    with _reading(f"bundle file {WEIGHTS_FILE}"), \
            np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        params = {name: np.asarray(npz[name], np.float32) for name in param_names(cfg)}
    expected = _expected_shapes(cfg, n_items, n_features)
    wrong = sorted(name for name, value in params.items() if value.shape != expected[name])
    if wrong:
        raise BundleFormatError(f"weights {wrong} do not match the manifest's model config and "
                                f"catalogue")
    return params


def _load_folder(folder: Path, root: Path, public_key: Ed25519PublicKey | None) -> Bundle:
    manifest = _read_manifest(folder, public_key)
    with _reading(f"the model_config of {MANIFEST_FILE}"):
        cfg = ModelConfig.from_dict(manifest.model_config)
    catalogue = _read_catalogue(folder)
    params = _read_params(folder, cfg, manifest.n_items, catalogue.features.shape[1])
    if catalogue.content_hash != manifest.catalogue_hash or len(catalogue) != manifest.n_items:
        raise BundleIntegrityError("the catalogue does not match the manifest's catalogue hash")
    return Bundle(folder, manifest, cfg, catalogue, params, root=root)


def load_bundle(path: str | Path, *,
                public_key: bytes | str | Ed25519PublicKey | None = None) -> Bundle:
    """Load and verify the bundle at ``path`` (a bundle folder, or a bundle root: its live one).

    With ``public_key`` (32 raw bytes or their hex) the manifest must be signed by it; a
    malformed key is a ``ConfigError``. Anything wrong with the bundle is a ``BundleError``.
    """
    key = load_public_key(public_key) if public_key is not None else None
    given = Path(path)
    root = bundle_root(given)
    for attempt in range(3):
        folder = resolve_bundle(given)
        try:
            with _reading(f"bundle {folder}"):  # OSErrors while hashing, and anything unforeseen
                return _load_folder(folder, root, key)
        except BundleError:
            # Another process may have switched the pointer and cleaned this version away while
            # it was read: then the new live bundle is the answer.
            if attempt == 2 or resolve_bundle(given) == folder:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


