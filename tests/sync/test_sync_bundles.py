"""Bundle transport: pack, verify, install atomically; anything odd is refused and the installed
bundle stays: a member the signed manifest does not list, a signed bundle that is not newer
than ``newer_than`` (rollback)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest

from edgerec._exceptions import (BundleFormatError, BundleIntegrityError, BundleSignatureError,
                                 ConfigError)
from edgerec.bundle import VERSIONS_DIR, load_bundle, resolve_bundle, write_bundle
from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes
from edgerec.sync import install_bundle, pack_bundle, verify_archive
from edgerec.sync.bundles import BundleRollbackError


@pytest.fixture(scope="module")
def signed(tmp_path_factory, trained_bundle):
    key = generate_signing_key()
    src = load_bundle(trained_bundle)
    out = {}
    for version in (1, 2):
        folder = tmp_path_factory.mktemp(f"v{version}") / "bundle"
        write_bundle(folder, src.params, src.catalogue, src.config, model_version=version,
                     sign=lambda raw: sign_bytes(key, raw))
        out[version] = pack_bundle(folder)
    return public_key_bytes(key), out


def _snapshot(target) -> dict[str, bytes]:
    """Every file under a bundle root (pointer, versions), by relative path: nothing may change."""
    files = sorted(p for p in target.rglob("*") if p.is_file())
    return {str(p.relative_to(target)): p.read_bytes() for p in files}


def _rezip(archive: bytes, change) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_pack_is_deterministic_and_install_swaps_atomically(signed, tmp_path, trained_bundle):
    key, archives = signed
    assert pack_bundle(trained_bundle) == pack_bundle(trained_bundle)
    target = tmp_path / "model"
    assert install_bundle(archives[1], target, key).version == 1
    assert install_bundle(archives[2], target, key).version == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging left behind
    assert verify_archive(archives[2], key.hex()).model_version == 2


@pytest.mark.parametrize("change, error", [
    (lambda m: m.update({"../escape": b"x"}), BundleFormatError),
    (lambda m: m.update({"sub/dir.txt": b"x"}), BundleFormatError),
    (lambda m: m.update({".hidden": b"x"}), BundleFormatError),
    (lambda m: m.update({"extra.bin": b"x"}), BundleFormatError),  # not in the signed manifest
    (lambda m: m.pop("manifest.sig"), BundleSignatureError),
    (lambda m: m.update({"catalogue.json": m["catalogue.json"] + b" "}), BundleIntegrityError),
    (lambda m: m.update({"manifest.json": json.dumps(
        {**json.loads(m["manifest.json"]), "model_version": 9}, sort_keys=True, indent=1).encode()}),
     BundleSignatureError),
])
def test_a_bad_archive_is_refused_and_the_old_bundle_stays(signed, tmp_path, change, error):
    key, archives = signed
    target = tmp_path / "model"
    install_bundle(archives[1], target, key)
    before = _snapshot(target)
    with pytest.raises(error):
        install_bundle(_rezip(archives[2], change), target, key)
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_wrong_key_truncated_and_symlink_archives(signed, tmp_path):
    key, archives = signed
    with pytest.raises(BundleSignatureError):
        verify_archive(archives[1], public_key_bytes(generate_signing_key()))
    with pytest.raises(BundleFormatError):
        verify_archive(archives[1][:100], key)
    with pytest.raises(BundleFormatError):
        verify_archive(b"not a zip", key)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("manifest.json")
        info.external_attr = 0o120777 << 16  # a symlink
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(BundleFormatError, match="regular file"):
        verify_archive(out.getvalue(), key)


def test_a_member_the_signed_manifest_does_not_list_is_refused(signed, tmp_path):
    key, archives = signed
    # Every listed file is intact and the signature verifies: only the stowaway is wrong.
    extra = _rezip(archives[2], lambda m: m.update({"model.float.onnx": b"unverified"}))
    with pytest.raises(BundleFormatError, match=r"\['model.float.onnx'\] are not in the signed manifest"):
        verify_archive(extra, key)
    target = tmp_path / "model"
    install_bundle(archives[1], target, key)
    with pytest.raises(BundleFormatError, match="not in the signed manifest"):
        install_bundle(extra, target, key)
    assert load_bundle(target, public_key=key).version == 1
    assert not (target / "model.float.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("offered, floor", [(1, 2), (2, 2)])
def test_a_signed_bundle_not_newer_than_the_floor_is_a_rollback(signed, tmp_path, offered, floor):
    key, archives = signed
    target = tmp_path / "model"
    install_bundle(archives[2], target, key)
    before = _snapshot(target)
    with pytest.raises(BundleRollbackError, match="rollback refused") as caught:
        install_bundle(archives[offered], target, key, newer_than=floor)
    assert caught.value.manifest.model_version == offered and caught.value.installed == floor
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # staging removed


def test_a_newer_signed_bundle_passes_the_floor(signed, tmp_path):
    key, archives = signed
    assert install_bundle(archives[2], tmp_path / "model", key, newer_than=1).version == 2


def test_the_floor_is_checked_after_the_signature(signed, tmp_path):
    # A forged manifest claiming a high version is a signature error, never "newer".
    key, archives = signed
    forged = _rezip(archives[1], lambda m: m.update({"manifest.json": json.dumps(
        {**json.loads(m["manifest.json"]), "model_version": 99}, sort_keys=True, indent=1).encode()}))
    with pytest.raises(BundleSignatureError):
        install_bundle(forged, tmp_path / "model", key, newer_than=2)


def test_a_first_install_is_a_plain_folder_the_next_a_version_of_a_bundle_root(signed, tmp_path):
    key, archives = signed
    target = tmp_path / "model"
    first = install_bundle(archives[1], target, key)
    assert first.path == first.root == target and (target / "manifest.json").is_file()
    second = install_bundle(archives[2], target, key, newer_than=1)
    assert second.root == target and second.path == resolve_bundle(target)
    assert second.path.parent == target / VERSIONS_DIR and second.model_path.is_file()
    assert not (target / "manifest.json").exists()  # the plain bundle it replaced is gone
    # Installing "into" the running bundle's folder (what sync does with Bundle.path) goes to
    # its root: version folders never change.
    third = install_bundle(archives[1], second.path, key)
    assert third.root == target and load_bundle(target, public_key=key).version == 1
    assert load_bundle(second.path, public_key=key).version == 2  # kept as the previous one
    assert pack_bundle(target) == archives[1]  # a root packs as its live bundle


def test_a_plain_folder_refusing_a_rollback_is_left_exactly_as_it_was(signed, tmp_path):
    key, archives = signed
    target = tmp_path / "model"
    install_bundle(archives[2], tmp_path / "root", key)
    shutil.copytree(resolve_bundle(tmp_path / "root"), target)  # a plain v2 folder
    before = _snapshot(target)
    with pytest.raises(BundleRollbackError):
        install_bundle(archives[1], target, key, newer_than=2)
    assert _snapshot(target) == before and not (target / VERSIONS_DIR).exists()
    assert load_bundle(target, public_key=key).version == 2
    assert install_bundle(archives[2], target, key, newer_than=1).version == 2  # then migrates
    assert (target / "CURRENT").is_file() and not (target / "manifest.json").exists()


def test_a_malformed_key_is_a_config_error_and_touches_nothing(signed, tmp_path):
    _, archives = signed
    with pytest.raises(ConfigError, match="not a valid Ed25519 public key"):
        install_bundle(archives[1], tmp_path / "model", b"\x00" * 16)
    with pytest.raises(ConfigError, match="not a valid Ed25519 public key"):
        verify_archive(archives[1], "not hex")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_first_install_leaves_no_folder(signed, tmp_path):
    key, archives = signed
    with pytest.raises(BundleRollbackError):
        install_bundle(archives[1], tmp_path / "model", key, newer_than=5)
    assert list(tmp_path.iterdir()) == []
