"""Bundles: written whole, loaded only when every check passes, signatures enforced when pinned."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from edgerec import (
    BundleFormatError,
    BundleIntegrityError,
    BundleSignatureError,
    ConfigError,
    EdgeRecError,
    ModelConfig,
    load_bundle,
    write_bundle,
)
from edgerec.bundle import (POINTER_FILE, VERSIONS_DIR, _expected_shapes, bundle_root,
                            clean_bundle_root, resolve_bundle)
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


def test_created_at_is_the_utc_time_of_writing_and_is_signed(signed, key):
    from datetime import datetime, timedelta, timezone

    path, manifest, _, _ = signed
    created = datetime.strptime(manifest.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(0) <= datetime.now(timezone.utc) - created < timedelta(hours=1)
    assert json.loads((path / "manifest.json").read_text())["created_at"] == manifest.created_at
    assert load_bundle(path, public_key=public_key_bytes(key)).manifest.created_at == manifest.created_at


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
    with pytest.raises(BundleFormatError, match="^no bundle at .*nowhere$"):
        load_bundle(tmp_path / "nowhere")  # a wrong path says so, not "has no manifest.json"
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleFormatError, match="has no manifest.json: not a bundle"):
        load_bundle(tmp_path / "empty")


def test_rewriting_a_bundle_replaces_it_whole(signed, tmp_path):
    path, _, params, cat = signed
    copy = _copy(path, tmp_path)
    cfg = ModelConfig(dim=4, history=3)
    write_bundle(copy, params, cat, cfg, model_version=8, parent_version=7)
    assert load_bundle(copy).version == 8
    assert not (copy / "manifest.sig").exists()  # nothing of the old bundle is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no staging folders left


# -- strict input: whatever is wrong with a bundle is a BundleError saying what -------------------
def _rehash(folder, name):
    """Make the manifest vouch for ``name``'s current bytes (an unsigned bundle edited by hand)."""
    data = json.loads((folder / "manifest.json").read_text())
    data["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(data))
    (folder / "manifest.sig").unlink(missing_ok=True)


@pytest.mark.parametrize("name, content, error", [
    ("weights.npz", b"PK\x03\x04 not really a zip", "weights.npz cannot be read: BadZipFile"),
    ("weights.npz", b"", "weights.npz cannot be read"),
    ("features.npy", b"\x93NUMPY garbage", "features.npy cannot be read"),
    ("catalogue.json", b"[1, 2, 3]", "catalogue.json cannot be read: TypeError"),
    ("catalogue.json", b"{not json", "catalogue.json cannot be read: JSONDecodeError"),
])
def test_a_rehashed_corrupt_file_is_a_format_error(signed, tmp_path, name, content, error):
    copy = _copy(signed[0], tmp_path)
    (copy / name).write_bytes(content)
    _rehash(copy, name)
    with pytest.raises(BundleFormatError, match=error):
        load_bundle(copy)


def test_weights_of_the_wrong_shape_are_a_format_error(signed, tmp_path):
    copy = _copy(signed[0], tmp_path)
    with np.load(copy / "weights.npz") as npz:
        params = dict(npz)
    params["feat_in"] = params["feat_in"][:, :2]
    np.savez(copy / "weights.npz", **params)
    _rehash(copy, "weights.npz")
    with pytest.raises(BundleFormatError, match=r"weights \['feat_in'\] do not match"):
        load_bundle(copy)


@pytest.mark.parametrize("hidden", [True, False])
def test_the_shape_table_is_the_one_init_params_makes(hidden):
    cfg = ModelConfig(dim=6, history=4, hidden=hidden)
    params = init_params(cfg, 11, 3, np.random.default_rng(0))
    assert {n: v.shape for n, v in params.items()} == _expected_shapes(cfg, 11, 3)


@pytest.mark.parametrize("pinned, what", [
    (b"\x01" * 31, "31 bytes, not 32"),
    ("zz" * 32, "not hex"),
    (12345, "a int, not bytes or hex"),
])
def test_a_malformed_pinned_key_is_a_config_error_not_a_bad_signature(signed, pinned, what):
    with pytest.raises(ConfigError, match=f"not a valid Ed25519 public key: {what}"):
        load_bundle(signed[0], public_key=pinned)


def test_a_well_formed_wrong_key_still_does_not_verify(signed):
    other = public_key_bytes(generate_signing_key())
    with pytest.raises(BundleSignatureError, match="does not verify"):
        load_bundle(signed[0], public_key=other.hex())


def test_an_unreadable_file_is_a_bundle_error(signed, tmp_path):
    copy = _copy(signed[0], tmp_path)
    (copy / "features.npy").unlink()
    (copy / "features.npy").mkdir()  # listed, "present", but not a file
    with pytest.raises(BundleFormatError):
        load_bundle(copy)
    with pytest.raises(EdgeRecError):
        load_bundle(copy / "manifest.json")  # a file, not a folder


# -- bundle roots ------------------------------------------------------------------------------
def _write(path, signed, version):
    _, _, params, cat = signed
    return write_bundle(path, params, cat, ModelConfig(dim=4, history=3), model_version=version)


def test_writing_onto_a_bundle_makes_a_root_keeping_the_previous_version(signed, tmp_path):
    target = _copy(signed[0], tmp_path)
    assert resolve_bundle(target) == target and load_bundle(target).root == target
    for version in (8, 9, 10):
        _write(target, signed, version)
    bundle = load_bundle(target)
    assert bundle.version == 10 and bundle.root == target
    assert bundle.path == resolve_bundle(target) and bundle.path.parent == target / VERSIONS_DIR
    assert bundle.model_path.is_file()
    assert sorted(p.name for p in target.iterdir()) == [VERSIONS_DIR, POINTER_FILE]
    versions = sorted(p.name for p in (target / VERSIONS_DIR).iterdir())
    assert [v.split("-")[1] for v in versions] == ["m9", "m10"]  # live and previous only
    assert (target / POINTER_FILE).read_text() == f"{bundle.path.name}\n"


def test_a_version_folder_loads_alone_and_installs_go_to_its_root(signed, tmp_path):
    target = _copy(signed[0], tmp_path)
    _write(target, signed, 8)
    live = load_bundle(target).path
    assert bundle_root(live) == target and load_bundle(live).root == target
    assert load_bundle(live).version == 8
    _write(live, signed, 9)  # version folders are immutable: this goes to the root
    assert load_bundle(target).version == 9 and load_bundle(live).version == 8


def test_a_copied_root_is_a_root(signed, tmp_path):
    target = _copy(signed[0], tmp_path)
    _write(target, signed, 8)
    copy = tmp_path / "elsewhere"
    shutil.copytree(target, copy)  # the pointer is relative: devices copy shipped roots
    assert load_bundle(copy).version == 8 and load_bundle(copy).root == copy


@pytest.mark.parametrize("pointer, error", [
    (b"v000009-m9-00000000\n", "which is missing"),
    (b"../../etc\n", "does not name a bundle version"),
    (b"", "does not name a bundle version"),
])
def test_a_damaged_pointer_is_a_format_error_and_cleanup_keeps_everything(signed, tmp_path,
                                                                          pointer, error):
    target = _copy(signed[0], tmp_path)
    _write(target, signed, 8)
    _write(target, signed, 9)
    (target / POINTER_FILE).write_bytes(pointer)
    with pytest.raises(BundleFormatError, match=error):
        load_bundle(target)
    assert clean_bundle_root(target) == 0
    assert len(list((target / VERSIONS_DIR).iterdir())) == 2


def test_cleanup_removes_leftovers_never_the_live_bundle(signed, tmp_path):
    target = _copy(signed[0], tmp_path)
    for version in (8, 9, 10):
        _write(target, signed, version)
    versions = target / VERSIONS_DIR
    (versions / ".incoming-crashed").mkdir()
    (versions / ".incoming-crashed" / "weights.npz").write_bytes(b"half")
    (versions / "v999999-m11-0123abcd").mkdir()  # staged, renamed, never switched to
    (target / ".CURRENT.tmp-0123abcd").write_text("v000001-m1-00000000")
    (tmp_path / ".copy.old-1234").mkdir()  # what the old rename-away installer left behind
    (tmp_path / ".copy.incoming-abcd").mkdir()
    (tmp_path / ".other.old-1").mkdir()  # another folder's business
    assert clean_bundle_root(target) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.old-1", "copy"]
    assert [p.name.split("-")[1] for p in sorted(versions.iterdir())] == ["m9", "m10"]
    assert clean_bundle_root(target, keep_previous=False) == 1
    assert [p.name for p in versions.iterdir()] == [load_bundle(target).path.name]
    assert load_bundle(target).version == 10
    assert clean_bundle_root(target) == 0


def test_an_old_copy_is_kept_while_the_target_holds_no_bundle(tmp_path):
    # The old installer's crash between its two renames left only .X.old-*: the one copy left.
    (tmp_path / ".model.old-99").mkdir()
    (tmp_path / "model").mkdir()
    assert clean_bundle_root(tmp_path / "model") == 0
    assert (tmp_path / ".model.old-99").is_dir()
    assert clean_bundle_root(tmp_path / "absent") == 0
