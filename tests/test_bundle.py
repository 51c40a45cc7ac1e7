"""Bundles: written whole, loaded only when every check passes, signatures enforced when pinned."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgerec import (
    BundleFormatError,
    BundleIntegrityError,
    BundleSignatureError,
    ModelConfig,
    load_bundle,
    write_bundle,
)
from edgerec.model.params import init_params
from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes


@pytest.fixture(scope="module")
def key():
    return generate_signing_key()


@pytest.fixture(scope="module")
def signed(tmp_path_factory, key, tiny_sequences):
    _, cat = tiny_sequences()
    cfg = ModelConfig(dim=4, history=3)
    params = init_params(cfg, len(cat), cat.features.shape[1], np.random.default_rng(0))
    path = tmp_path_factory.mktemp("b") / "bundle"
    manifest = write_bundle(path, params, cat, cfg, model_version=7, parent_version=6,
                            hyperparameters={"epochs": 3}, sign=lambda raw: sign_bytes(key, raw))
    return path, manifest, params, cat


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_round_trip(signed, key):
    path, manifest, params, cat = signed
    bundle = load_bundle(path, public_key=public_key_bytes(key))
    assert bundle.version == 7 and bundle.manifest.parent_version == 6
    assert bundle.manifest == manifest
    assert bundle.catalogue.item_ids == cat.item_ids and bundle.catalogue.titles == cat.titles
    np.testing.assert_array_equal(bundle.params["emb_in"], params["emb_in"])
    assert bundle.manifest.hyperparameters == {"epochs": 3}
    assert set(manifest.files) == {"model.int8.onnx", "weights.npz", "catalogue.json", "features.npy"}


def test_tampered_file_is_refused(signed, tmp_path):
    copy = _copy(signed[0], tmp_path)
    with open(copy / "weights.npz", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(BundleIntegrityError, match="weights.npz"):
        load_bundle(copy)


def test_wrong_key_or_unsigned_is_refused_when_pinned(signed, tmp_path):
    other = public_key_bytes(generate_signing_key())
    with pytest.raises(BundleSignatureError):
        load_bundle(signed[0], public_key=other)
    copy = _copy(signed[0], tmp_path)
    (copy / "manifest.sig").unlink()
    load_bundle(copy)  # without a pinned key an unsigned bundle is usable
    with pytest.raises(BundleSignatureError):
        load_bundle(copy, public_key=other)


def test_edited_manifest_breaks_the_signature(signed, key, tmp_path):
    copy = _copy(signed[0], tmp_path)
    data = json.loads((copy / "manifest.json").read_text())
    data["model_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleSignatureError):
        load_bundle(copy, public_key=public_key_bytes(key))


@pytest.mark.parametrize("edit, error", [
    (lambda m: m.update(format_version=99), "format version"),
    (lambda m: m.update(format="zip"), "not an edgerec bundle"),
    (lambda m: m["files"].pop("model.int8.onnx"), "no hash"),
    (lambda m: m.update(unexpected=1), "malformed"),
    # "newer" is decided on model_version (rollback protection): it must be a real int
    (lambda m: m.update(model_version="9"), "model_version '9' is not an int"),
    (lambda m: m.update(model_version=True), "model_version True is not an int"),
    (lambda m: m.update(model_version=8.5), "model_version 8.5 is not an int"),
    (lambda m: m.update(parent_version="6"), "parent_version '6' is not an int"),
    (lambda m: m.update(created_at=1700000000), "created_at 1700000000 is not a str"),
    (lambda m: m.update(files=["model.int8.onnx"]), "malformed"),
])
def test_malformed_manifest_is_a_format_error(signed, tmp_path, edit, error):
    copy = _copy(signed[0], tmp_path)
    data = json.loads((copy / "manifest.json").read_text())
    edit(data)
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleFormatError, match=error):
        load_bundle(copy)


def test_missing_file_or_folder(signed, tmp_path):
    copy = _copy(signed[0], tmp_path)
    (copy / "features.npy").unlink()
    with pytest.raises(BundleFormatError, match="missing"):
        load_bundle(copy)
    with pytest.raises(BundleFormatError, match="not a bundle"):
        load_bundle(tmp_path / "nowhere")


def test_rewriting_a_bundle_replaces_it_whole(signed, tmp_path):
    path, _, params, cat = signed
    copy = _copy(path, tmp_path)
    cfg = ModelConfig(dim=4, history=3)
    write_bundle(copy, params, cat, cfg, model_version=8, parent_version=7)
    assert load_bundle(copy).version == 8
    assert not (copy / "manifest.sig").exists()  # nothing of the old bundle is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no staging folders left
