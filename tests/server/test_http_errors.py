"""Auth and bad input against a real server: 401/403/404/405/409/413/4xx with clear messages,
never a 500; tampered bundles rejected by verify."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import numpy as np
import pytest

from edgerec._exceptions import BundleError, BundleFormatError, BundleSignatureError
from edgerec.secagg import AdvertiseKeys, crypto, encode, sign_message
from edgerec.signing import generate_signing_key, public_key_bytes
from edgerec.sync import (
    HttpxTransport,
    RoundParticipant,
    ServerApi,
    ServerRejectedError,
    new_identity_key,
    verify_archive,
)

from srv_helpers import authority_key, cli, enrol_devices


def _error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["type"] == "error" and body["message"], body
    return response.status_code, body["code"]


def test_enrolment_and_credentials(server, data_dir):
    url = server.url
    api = ServerApi(HttpxTransport(url))
    with pytest.raises(ServerRejectedError) as bad:
        api.enrol("et_" + "x" * 32, new_identity_key())
    assert bad.value.status == 401 and "unknown" in bad.value.message
    expired = cli(data_dir, "token", "create", "--ttl", "0.001")
    with pytest.raises(ServerRejectedError) as late:
        api.enrol(expired, new_identity_key())
    assert late.value.status == 401 and "expired" in late.value.message
    revoked = cli(data_dir, "token", "create")
    cli(data_dir, "token", "revoke", revoked)
    with pytest.raises(ServerRejectedError) as gone:
        api.enrol(revoked, new_identity_key())
    assert gone.value.status == 403
    once = cli(data_dir, "token", "create")
    device = enrol_devices(url, once, 1)[0]
    with pytest.raises(ServerRejectedError) as used:
        api.enrol(once, new_identity_key())
    assert used.value.status == 403 and "used up" in used.value.message

    # The proof must be made with the registered key.
    token = cli(data_dir, "token", "create")
    weak = {"type": "enrol_request", "token": token, "identity_key": bytes(32).hex(),
            "proof": bytes(64).hex()}  # a small-order key, under which forgeries can verify
    answer = httpx.post(url + "/v1/enrol", json=weak)
    assert _error(answer)[0] == 400 and "small order" in answer.json()["message"]
    real = crypto.ed25519_public(new_identity_key())
    forged = {**weak, "identity_key": real.hex(), "proof": crypto.sign(new_identity_key(), b"x").hex()}
    answer = httpx.post(url + "/v1/enrol", json=forged)
    assert _error(answer)[0] == 400 and "proof does not verify" in answer.json()["message"]

    rounds = url + "/v1/rounds/current"
    assert _error(httpx.get(rounds)) == (401, "unauthorized")
    assert _error(httpx.get(rounds, headers={"Authorization": "Bearer nonsense"}))[0] == 401
    cred = device.identity.credential
    wrong = cred[:-4] + ("AAAA" if not cred.endswith("AAAA") else "BBBB")
    assert _error(httpx.get(rounds, headers={"Authorization": f"Bearer {wrong}"}))[0] == 401
    assert _error(httpx.get(rounds, headers={"Authorization": "Bearer d999.abcdefghijklmnopqrstuvwxyz"}))[0] == 401
    assert httpx.get(rounds, headers={"Authorization": f"Bearer {cred}"}).status_code == 204
    cli(data_dir, "device", "revoke", str(device.identity.device_id))
    assert _error(httpx.get(rounds, headers={"Authorization": f"Bearer {cred}"}))[0] == 403
    _no_500(url)


def test_bad_bodies_and_sizes(server, data_dir):
    url = server.url
    token = cli(data_dir, "token", "create", "--uses", "4")
    devices = enrol_devices(url, token, 4)
    round_id = json.loads(cli(data_dir, "round", "open", "--min", "4", "--max", "4"))["round_id"]
    auth = {"Authorization": f"Bearer {devices[0].identity.credential}"}
    post = f"{url}/v1/rounds/{round_id}/messages"

    # Malformed JSON and wrong shapes: 400 with a message saying what is wrong.
    assert _error(httpx.post(url + "/v1/enrol", content=b"{not json"))[0] == 400
    assert "missing field" in httpx.post(url + "/v1/enrol", json={"type": "enrol_request"}).json()["message"]
    status, code = _error(httpx.post(url + "/v1/enrol", json={"type": "enrol_request", "token": 5,
                                                              "identity_key": "zz", "proof": ""}))
    assert status == 400
    # Oversized: declared, and streamed without a length.
    assert _error(httpx.post(url + "/v1/enrol", content=b"x" * 70_000)) == (413, "payload_too_large")

    def chunks():
        for _ in range(100):
            yield b"y" * 1024

    assert _error(httpx.post(url + "/v1/enrol", content=chunks()))[0] == 413
    # Garbage secure-aggregation bytes, wrong sender, wrong signature, server-only messages.
    status, code = _error(httpx.post(post, content=b"garbage", headers=auth))
    assert status == 400 and code in ("WrongLengthError", "MalformedMessageError")
    other = devices[1].identity
    advert = AdvertiseKeys(round_id, other.device_id, bytes(32), bytes(32))
    assert _error(httpx.post(post, content=encode(sign_message(advert, other.identity_key)),
                             headers=auth))[0] == 403
    mine = devices[0].identity
    keys = [crypto.x25519_keypair(np.random.default_rng(0).bytes)[1] for _ in range(2)]
    unsigned = AdvertiseKeys(round_id, mine.device_id, keys[0], keys[1], certificate=mine.certificate,
                             signature=bytes(64))
    assert _error(httpx.post(post, content=encode(unsigned), headers=auth)) == (403, "BadSignatureError")
    # Signed, but without a certificate, or with another device's: refused, the round goes on.
    for cert in (b"", other.certificate, mine.certificate[:-1] + bytes([mine.certificate[-1] ^ 1])):
        uncertified = sign_message(AdvertiseKeys(round_id, mine.device_id, keys[0], keys[1],
                                                 certificate=cert), mine.identity_key)
        assert _error(httpx.post(post, content=encode(uncertified), headers=auth)) == (400, "BadCertificateError")
    # Wrong places: unknown message name, unknown round, wrong method.
    assert _error(httpx.get(f"{post}/nonsense", headers=auth))[0] == 404
    assert _error(httpx.get(f"{url}/v1/rounds/999/messages/key_list", headers=auth))[0] == 404
    assert _error(httpx.delete(post, headers=auth))[0] == 405
    assert _error(httpx.get(url + "/v1/nowhere"))[0] == 404
    # A valid advert, then a different one for the same stage: 409; the same again: accepted.
    part = RoundParticipant(devices[0].api, mine, devices[0].api.current_round(),
                            np.zeros(devices[0].api.current_round().vector_length),
                            authority_key=authority_key(data_dir))
    part.advertise()
    body = devices[0].uploads[-1][1]
    again = httpx.post(post, content=body, headers=auth)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    other_advert = sign_message(AdvertiseKeys(round_id, mine.device_id, keys[1], keys[0],
                                              certificate=mine.certificate), mine.identity_key)
    assert _error(httpx.post(post, content=encode(other_advert), headers=auth))[0] == 409
    _no_500(url)


def test_tampered_bundles_are_rejected_by_verify(server, data_dir):
    token = cli(data_dir, "token", "create")
    device = enrol_devices(server.url, token, 1)[0]
    archive = device.api.latest_bundle().archive
    key = bytes.fromhex(cli(data_dir, "public-key"))
    assert verify_archive(archive, key).model_version == 1
    with pytest.raises(BundleSignatureError):
        verify_archive(archive, public_key_bytes(generate_signing_key()))

    def rewrite(change) -> bytes:
        members = {}
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            for name in zf.namelist():
                members[name] = zf.read(name)
        change(members)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return out.getvalue()

    def bump_version(m):
        manifest = json.loads(m["manifest.json"])
        manifest["model_version"] = 99
        m["manifest.json"] = json.dumps(manifest, sort_keys=True, indent=1).encode()

    def flip_weights(m):
        data = bytearray(m["weights.npz"])
        data[len(data) // 2] ^= 0xFF
        m["weights.npz"] = bytes(data)

    with pytest.raises(BundleSignatureError):
        verify_archive(rewrite(bump_version), key)
    with pytest.raises(BundleError):
        verify_archive(rewrite(flip_weights), key)
    with pytest.raises(BundleFormatError):
        verify_archive(rewrite(lambda m: m.update({"../evil": b"x"})), key)
    with pytest.raises(BundleFormatError):
        verify_archive(archive[: len(archive) // 2], key)
    _no_500(server.url)


def _no_500(url: str) -> None:
    metrics = httpx.get(url + "/metrics").text
    lines = [line for line in metrics.splitlines()
             if line.startswith("edgerec_http_requests_total") and 'status="5' in line]
    assert not lines, lines
