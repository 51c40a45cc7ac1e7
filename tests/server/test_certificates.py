"""Enrolment certificates on the server (in-process, fake clock).

The embedded authority (default: the bundle-signing key) certifies a device at enrolment and
serves the certificate at ``GET /v1/certificate``; an offline authority (``authority_public_key``
set, the private key elsewhere) leaves enrolled devices uncertified, hence never drawn into a
round, until ``edgerec-server certify --authority-key PEM`` signs them; the public audit lists
every certificate issued.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edgerec.secagg import BadCertificateError, check_certificate
from edgerec.secagg.certificate import authority_id
from edgerec.signing import generate_signing_key, public_key_bytes
from edgerec.sync import ServerApi
from edgerec_server import RoundParams, load_config
from edgerec_server._exceptions import ConflictError, ServerConfigError
from edgerec_server.authority import eligible_devices, load_authority
from edgerec_server.cli import main
from edgerec_server.keys import load_or_create_key

from srv_helpers import World, authority_key, cli


def _valid(cert: bytes, key: bytes, api: ServerApi, now: float):
    """The certificate, checked for exactly this device and identity key under ``key``."""
    identity = api.identity  # type: ignore[attr-defined]
    return check_certificate(cert, key, device_id=identity.device_id,
                             identity_key=identity.public_key, now=now)


def _get(world: World, path: str, credential: str | None = None):
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return world.client.get(path, headers=headers)


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    yield w
    w.close()


def test_the_embedded_authority_certifies_at_enrolment_and_serves_the_certificate(world):
    key = world.publisher.public_key
    assert world.authority_key == key and world.co.authority.mode == "embedded"
    assert authority_key(world.tmp) == key  # what the operator reads to pin it in the app
    assert json.loads(cli(world.tmp, "authority-key", "--json")) == {"public_key": key.hex(),
                                                                      "mode": "embedded"}
    (api,) = world.devices(1)
    identity = api.identity  # type: ignore[attr-defined]
    cert = _valid(identity.certificate, key, api, world.clock())  # from the enrolment answer
    assert cert.issued_at == int(world.clock())
    assert cert.expires_at == int(world.clock() + world.config.certificate_ttl_s)
    assert world.state.device(identity.device_id).certificate == identity.certificate  # stored
    assert api.certificate() == identity.certificate  # GET /v1/certificate: the stored one
    assert api.certificate() == identity.certificate  # (not a fresh one per request)
    with pytest.raises(BadCertificateError, match="another authority"):
        check_certificate(identity.certificate, public_key_bytes(generate_signing_key()),
                          device_id=identity.device_id, identity_key=identity.public_key, now=None)
    assert [d.id for d in world.state.active_devices(world.clock())] == [identity.device_id]


def test_get_certificate_needs_an_enrolled_device(world):
    (api,) = world.devices(1)
    credential = api.identity.credential  # type: ignore[attr-defined]
    assert _get(world, "/v1/certificate", credential).status_code == 200
    for bad in (None, "nonsense", "d999.abcdefghijklmnopqrstuvwxyz", credential[:-4] + "AAAA"):
        answer = _get(world, "/v1/certificate", bad)
        assert answer.status_code == 401 and answer.json()["code"] == "unauthorized", bad
    assert "certificate" not in answer.text
    cli(world.tmp, "device", "revoke", str(api.identity.device_id))  # type: ignore[attr-defined]
    assert _get(world, "/v1/certificate", credential).status_code == 403


def test_a_device_enrolled_without_its_certificate_gets_it_from_get_certificate(world):
    """A crash between the enrolment's two writes leaves a device uncertified: it is not drawn,
    and its next GET /v1/certificate has the embedded authority issue (and store) one."""
    apis = world.devices(4)
    lost = apis[0].identity.device_id  # type: ignore[attr-defined]
    conn = sqlite3.connect(world.config.database_path)
    conn.execute("UPDATE devices SET certificate = NULL WHERE id = ?", (lost,))
    conn.commit()
    conn.close()
    assert lost not in [d.id for d in world.state.active_devices(world.clock())]
    with pytest.raises(ConflictError, match="drew 3 of 3 active devices, too few"):
        world.co.open_round(RoundParams(min_participants=3))
    world.tick(60)
    fresh = apis[0].certificate()
    assert _valid(fresh, world.authority_key, apis[0], world.clock()).issued_at == int(world.clock())
    assert world.state.device(lost).certificate == fresh
    assert "device_certified" in [e.kind for e in world.state.events()]
    record = world.co.open_round(RoundParams(min_participants=4))
    assert lost in world.state.members(record.id)


def test_certificates_expire_with_the_device_credential(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir, credential_ttl_s=3600)
    try:
        (api,) = w.devices(1)
        cert = _valid(api.identity.certificate, w.authority_key, api, w.clock())  # type: ignore[attr-defined]
        assert cert.expires_at == int(w.clock() + 3600)
    finally:
        w.close()


def test_the_audit_lists_every_certificate_issued(world):
    apis = world.devices(3)
    key = world.authority_key
    cli(world.tmp, "device", "revoke", str(apis[2].identity.device_id))  # type: ignore[attr-defined]
    body = world.client.get("/v1/audit").json()  # public: no credential
    assert body["authority"] == {"public_key": key.hex(), "mode": "embedded"}
    rows = body["certificates"]
    # Every certificate issued, the revoked device's too: what an auditor counts against the
    # devices the operator really enrolled.
    assert [r["device_id"] for r in rows] == [a.identity.device_id for a in apis]  # type: ignore[attr-defined]
    for row, api in zip(rows, apis):
        identity = api.identity  # type: ignore[attr-defined]
        assert bytes.fromhex(row["certificate"]) == identity.certificate
        cert = _valid(bytes.fromhex(row["certificate"]), key, api, world.clock())
        assert row["identity_key"] == identity.public_key.hex()
        assert row["authority_id"] == authority_id(key).hex()
        assert (row["issued_at"], row["expires_at"]) == (cert.issued_at, cert.expires_at)
    json.dumps(body, allow_nan=False)


def _pem(key) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def test_an_offline_authority_certifies_with_the_cli_and_only_then_are_devices_drawn(tmp_path, bundle_dir,
                                                                                     capsys):
    pem = tmp_path / "authority.pem"  # kept away from the server's data dir
    offline = public_key_bytes(load_or_create_key(pem))
    settings = tmp_path / "server.json"
    settings.write_text(json.dumps({"authority_public_key": offline.hex()}))
    w = World(tmp_path / "state", bundle_dir, authority_public_key=offline.hex())

    def ocli(*args: str) -> str:
        return cli(w.tmp, *args, "--config", str(settings))

    def certify(path) -> int:
        return main(["certify", "--authority-key", str(path), "--config", str(settings),
                     "--data-dir", str(w.tmp)])

    try:
        assert w.co.authority.mode == "offline" and w.co.authority.private_key is None
        assert w.authority_key == offline != w.publisher.public_key
        assert json.loads(ocli("authority-key", "--json")) == {"public_key": offline.hex(),
                                                               "mode": "offline"}
        apis = w.devices(4)
        ids = [a.identity.device_id for a in apis]  # type: ignore[attr-defined]
        # Enrolled, but the server cannot certify them: empty certificates, never drawn.
        assert {a.identity.certificate for a in apis} == {b""}  # type: ignore[attr-defined]
        assert {a.certificate() for a in apis} == {b""}
        assert w.state.active_devices(w.clock()) == []
        with pytest.raises(ConflictError, match="drew 0 of 0 active devices"):
            w.co.open_round(RoundParams(min_participants=4))
        assert apis[0].current_round() is None
        assert w.client.get("/v1/audit").json()["certificates"] == []

        # Not the authority's key, not a key at all, not an Ed25519 key: refused, nothing signed.
        other = tmp_path / "other.pem"
        load_or_create_key(other)
        garbage = tmp_path / "garbage.pem"
        garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        wrong_kind = tmp_path / "ec.pem"
        wrong_kind.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
        capsys.readouterr()
        for bad, why in ((other, "not the configured enrolment authority's"),
                         (garbage, "cannot read the authority key"),
                         (wrong_kind, "is not an Ed25519 key"),
                         (tmp_path / "missing.pem", "cannot read the authority key")):
            assert certify(bad) == 2, bad
            assert why in capsys.readouterr().err, bad
        assert [d.id for d in w.state.uncertified_devices()] == ids
        assert w.client.get("/v1/audit").json()["certificates"] == []

        assert json.loads(ocli("certify", "--authority-key", str(pem))) == {"certified": ids}
        assert json.loads(ocli("certify", "--authority-key", str(pem))) == {"certified": []}
        for api in apis:
            cert = api.certificate()
            _valid(cert, offline, api, w.clock())
            with pytest.raises(BadCertificateError):  # not the server's signing key's
                _valid(cert, w.publisher.public_key, api, w.clock())
            api.identity = replace(api.identity, certificate=cert)  # type: ignore[attr-defined]
        audit = w.client.get("/v1/audit").json()
        assert audit["authority"] == {"public_key": offline.hex(), "mode": "offline"}
        assert [r["device_id"] for r in audit["certificates"]] == ids

        late = w.devices(1)[0]  # enrolled after the signing: waits for the next one
        record = w.co.open_round(RoundParams(min_participants=4))
        assert sorted(w.state.members(record.id)) == ids and w.state.round(record.id).population == 4
        assert late.current_round() is None
        parts = [w.participant(a) for a in apis]  # pinning the offline authority's key
        for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
            for p in parts:
                getattr(p, step)()
        assert {p.result().status.state for p in parts} == {"done"}
    finally:
        w.close()


def test_authority_settings_are_checked(tmp_path):
    with pytest.raises(ServerConfigError, match="not both"):
        load_config(data_dir=tmp_path, env={}, authority_key_file="authority.pem",
                    authority_public_key="00" * 32)
    with pytest.raises(ServerConfigError, match="64 hex digits"):
        load_authority(load_config(data_dir=tmp_path, env={}, authority_public_key="abcd"))
    with pytest.raises(ServerConfigError, match="certificate_ttl_s"):
        load_config(data_dir=tmp_path, env={}, certificate_ttl_s=0)
    # A separate authority key in the data dir, made on first start like the signing key.
    config = load_config(data_dir=tmp_path, env={}, authority_key_file="authority.pem")
    authority = load_authority(config)
    assert authority.mode == "embedded" and (tmp_path / "authority.pem").is_file()
    assert authority.public_key != public_key_bytes(load_or_create_key(config.signing_key_path))
    assert load_authority(config).public_key == authority.public_key  # the same key next start



def test_a_lapsing_certificate_is_renewed_and_an_expired_one_is_never_drawn(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir, certificate_ttl_s=1000)
    try:
        apis = w.devices(4)
        first = [a.identity.certificate for a in apis]  # type: ignore[attr-defined]
        w.clock.now += 500  # half its life left: kept as it is
        assert apis[0].certificate() == first[0]
        w.clock.now += 460  # 40 s of 1000 left: renewed on request, for another full term
        renewed = apis[0].certificate()
        assert renewed != first[0] and _valid(renewed, w.authority_key, apis[0], w.clock()).expires_at \
            == int(w.clock() + 1000)
        assert w.state.device(apis[0].identity.device_id).certificate == renewed  # type: ignore[attr-defined]
        w.clock.now += 41  # the others lapsed: their peers would refuse them, so no round draws them
        assert [d.id for d in eligible_devices(w.state, w.clock())] == [apis[0].identity.device_id]  # type: ignore[attr-defined]
        with pytest.raises(ConflictError, match="drew 1 of 1"):
            w.co.open_round(RoundParams(min_participants=4))
        assert all(a.certificate() != old for a, old in zip(apis[1:], first[1:]))  # renewed when asked
        assert len(eligible_devices(w.state, w.clock())) == 4
    finally:
        w.close()


def test_an_expired_certificate_is_not_renewed_without_the_authority(tmp_path, bundle_dir):
    authority = generate_signing_key()
    w = World(tmp_path / "state", bundle_dir, certificate_ttl_s=1000,
              authority_public_key=public_key_bytes(authority).hex())
    try:
        (api,) = w.devices(1)
        assert api.certificate() == b""  # offline: waiting for `certify`
        pem, settings = tmp_path / "ea.pem", tmp_path / "server.json"
        pem.write_bytes(_pem(authority))
        settings.write_text(json.dumps({"authority_public_key": public_key_bytes(authority).hex(),
                                        "certificate_ttl_s": 1000}))
        cli(w.tmp, "certify", "--authority-key", str(pem), "--config", str(settings))
        cert = api.certificate()
        assert cert and eligible_devices(w.state, w.clock())
        w.clock.now += 2000
        assert api.certificate() == cert  # the server cannot make a new one
        assert eligible_devices(w.state, w.clock()) == []
    finally:
        w.close()


def test_the_cli_audit_json_lists_the_authority_and_certificates(world):
    apis = world.devices(2)
    body = json.loads(cli(world.tmp, "audit", "--json"))
    assert body["authority"] == {"public_key": world.authority_key.hex(), "mode": "embedded"}
    assert [r["device_id"] for r in body["certificates"]] == [a.identity.device_id for a in apis]  # type: ignore[attr-defined]
