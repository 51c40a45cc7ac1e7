"""Bundle transport: pack, verify, install atomically; anything odd is refused and the installed
bundle stays: a member the signed manifest does not list, a signed bundle that is not newer
than ``newer_than`` (rollback)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from edgerec._exceptions import BundleFormatError, BundleIntegrityError, BundleSignatureError
from edgerec.bundle import load_bundle, write_bundle
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
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(error):
        install_bundle(_rezip(archives[2], change), target, key)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
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
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(BundleRollbackError, match="rollback refused") as caught:
        install_bundle(archives[offered], target, key, newer_than=floor)
    assert caught.value.manifest.model_version == offered and caught.value.installed == floor
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
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
