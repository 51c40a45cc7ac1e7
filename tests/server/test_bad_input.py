"""Issue 12.4, bad input is a 4xx: whatever a client sends, the answer is a clear 4xx with an
``ErrorBody`` (never a 500, a traceback or SQL text), and the server and every device's state
go on as before. In-process (``World``: the app behind Starlette's TestClient, a fake clock)."""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec.secagg import crypto
from edgerec.sync import EnrolRequest, HttpxTransport, ServerApi, enrol_proof_bytes, new_identity_key
from edgerec.sync import codec
from edgerec_server import RoundParams, SqliteBackend, auth, opening
from edgerec_server._exceptions import BadRequestError, ConflictError, PayloadTooLargeError
from edgerec_server.app import Api, _routes
from edgerec_server.validation import MAX_ID, MAX_JSON_DEPTH, check_content_length, parse_id

from srv_helpers import World

_LEAKS = ("Traceback", "sqlite", "UNIQUE", "constraint", "SELECT", "INSERT", "OverflowError")


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    yield w
    w.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, bundle_dir):
    """One server for the property tests (hypothesis calls a test many times per fixture)."""
    w = World(tmp_path_factory.mktemp("shared") / "state", bundle_dir)
    yield w
    w.close()


def _refused(response, status: int) -> str:
    """Assert a clean ``status`` ErrorBody; its message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["type"] == "error" and body["code"] and body["message"], body
    assert not any(leak in response.text for leak in _LEAKS), response.text
    return body["message"]


def _bearer(api: ServerApi, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {api.identity.credential}"}  # type: ignore[attr-defined]


def _enrol_body(token: str, key: bytes) -> bytes:
    public = crypto.ed25519_public(key)
    return codec.encode(EnrolRequest(token, public, crypto.sign(key, enrol_proof_bytes(token, public))))


def _round(world: World, monkeypatch, apis: list[ServerApi], members: int) -> int:
    """A round whose cohort is the first ``members`` of ``apis`` (the draw fixed for the test)."""
    monkeypatch.setattr(opening, "draw_cohort", lambda devices, rate: list(devices)[:members])
    return world.co.open_round(RoundParams(min_participants=members, sampling_rate=0.5,
                                           deadlines=(10, 10, 10, 10))).id


def _still_works(world: World, api: ServerApi) -> None:
    """After the bad requests: the device's credential, the model and enrolment all still work."""
    assert world.client.get("/v1/rounds/current", headers=_bearer(api)).status_code in (200, 204)
    assert world.client.get("/v1/models/1", headers=_bearer(api)).status_code == 200
    assert world.devices(1)  # and a new device still enrols


def _round_completes(world: World, members: list[ServerApi]) -> None:
    """The open round's members run it to the end: it publishes model version 2."""
    parts = [world.participant(a) for a in members]
    for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
        for p in parts:
            getattr(p, step)()
    assert parts[0].result().status.model_version_out == 2


# -- JSON nesting -------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_400_before_it_is_parsed(world):
    api = world.devices(1)[0]
    token, _ = auth.create_token(world.state, world.clock(), 3600)
    for body in ("[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000, "[" * 50_000,
                 '{"type":"enrol_request","token":' + "[" * 5000 + "]" * 5000 + "}"):
        message = _refused(world.client.post("/v1/enrol", content=body.encode()), 400)
        assert f"deeper than {MAX_JSON_DEPTH} levels" in message
    # At the limit the codec reads it and says what is wrong; brackets inside strings do not nest.
    inner = MAX_JSON_DEPTH - 1  # inside the outer object
    at_limit = '{"type":"enrol_request","token":' + "[" * inner + "]" * inner + "}"
    assert "expected str" in _refused(world.client.post("/v1/enrol", content=at_limit.encode()), 400)
    in_string = json.dumps({"type": "enrol_request", "token": "[" * 5000, "identity_key": "",
                            "proof": ""}).encode()
    assert "not an enrolment token" in _refused(world.client.post("/v1/enrol", content=in_string), 401)
    # Too big is still 413, however it nests.
    _refused(world.client.post("/v1/enrol", content=b"[" * 70_000), 413)
    fine = world.client.post("/v1/enrol", content=_enrol_body(token, new_identity_key()))
    assert fine.status_code == 201
    _still_works(world, api)


def _deep_json(depth: int, rng: random.Random, close: bool) -> str:
    opens = [rng.choice(["[", '{"k":', "[1,", '{"a":[],"b":']) for _ in range(depth)]
    closes = ["]" if o.startswith("[") else "}" for o in reversed(opens)]
    return "".join(opens) + "0" + ("".join(closes) if close else "")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=200)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(0, 6000), seed=st.integers(0, 2**32), close=st.booleans(),
       wrap=st.booleans())
def test_deep_json_bodies_never_give_a_5xx(shared, depth, seed, close, wrap):
    body = _deep_json(depth, random.Random(seed), close)
    if wrap:
        body = '{"type":"enrol_request","token":"et_x","identity_key":' + body + ',"proof":""}'
    answer = shared.client.post("/v1/enrol", content=body.encode())
    assert answer.status_code in (400, 401, 413), answer.text
    _refused(answer, answer.status_code)


@settings(max_examples=80, deadline=None)
@given(value=_json_values | st.fixed_dictionaries({"type": st.just("enrol_request")}, optional={
    "token": _json_values, "identity_key": _json_values, "proof": _json_values,
    "version": _json_values}))
def test_wide_json_bodies_never_give_a_5xx(shared, value):
    answer = shared.client.post("/v1/enrol", content=json.dumps(value).encode(),
                                headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    _refused(answer, answer.status_code)


# -- ids in paths -------------------------------------------------------------------------------
_OUT_OF_RANGE = [str(MAX_ID + 1), str(2**64), "9" * 400, "9" * 5000, "-1", "-" + str(2**70)]
_NOT_INTEGERS = ["abc", "1.5", "0x10", "1e3", "+1", " 1", "١"]


def _id_routes(round_id: str, version: str) -> list[tuple[str, str]]:
    return [("GET", f"/v1/rounds/{round_id}"), ("POST", f"/v1/rounds/{round_id}/messages"),
            *[("GET", f"/v1/rounds/{round_id}/messages/{n}") for n in ("key_list", "unmask_request")],
            ("GET", f"/v1/models/{version}")]


def test_path_ids_out_of_range_are_404_and_non_integers_400(world, monkeypatch):
    apis = world.devices(4)
    round_id = _round(world, monkeypatch, apis, 4)
    headers = {**_bearer(apis[0]), "Content-Type": "application/octet-stream"}
    for text in _OUT_OF_RANGE + [str(MAX_ID)]:  # MAX_ID is in range, and absent
        for method, path in _id_routes(text, text):
            _refused(world.client.request(method, path, headers=headers, content=b"x"), 404)
    for text in _NOT_INTEGERS:
        for method, path in _id_routes(text, text):
            assert "must be an integer" in _refused(
                world.client.request(method, path, headers=headers, content=b"x"), 400)
    # Unauthenticated: 401 first, whatever the id.
    for method, path in _id_routes(str(2**64), "abc"):
        _refused(world.client.request(method, path), 401)
    # Nothing was lost: the round and the model are as they were, for the device that asked.
    assert world.client.get(f"/v1/rounds/{round_id}", headers=headers).json()["state"] == "open"
    assert world.client.get(f"/v1/rounds/0{round_id}", headers=headers).status_code == 200
    _still_works(world, apis[0])
    _round_completes(world, apis)


def test_headers_and_ids_that_int_would_choke_on_are_4xx():
    # int() refuses 4,300 digits or more, and str.isdigit() takes "²": both were 500s.
    for declared, error in (("²", BadRequestError), ("-1", BadRequestError), ("1e3", BadRequestError),
                            ("9" * 5000, PayloadTooLargeError), ("65537", PayloadTooLargeError)):
        with pytest.raises(error):
            check_content_length(declared, 65536)
    check_content_length("0" * 5000 + "65536", 65536)  # leading zeros do not make it large
    assert [parse_id(t, "id") for t in ("0", "-0", "007", str(MAX_ID), "9" * 5000)] == [
        0, 0, 7, MAX_ID, None]


# -- enrolment retries and SQL text ---------------------------------------------------------------
def test_a_retried_enrolment_reissues_the_credential(world):
    token, record = auth.create_token(world.state, world.clock(), 3600, max_uses=1)
    key = new_identity_key()
    api = ServerApi(HttpxTransport(client=world.client))
    first = api.enrol(token, key)
    again = api.enrol(token, key)  # the answer to the first was lost; the token is used up
    assert again.device_id == first.device_id and again.credential != first.credential
    assert again.certificate == first.certificate
    assert world.state.find_token(record.token_hash).uses == 1  # a retry uses none
    old, new = ({"Authorization": f"Bearer {i.credential}"} for i in (first, again))
    assert "unknown credential" in _refused(world.client.get("/v1/rounds/current", headers=old), 401)
    assert world.client.get("/v1/rounds/current", headers=new).status_code == 204
    assert [e.kind for e in world.state.events()][-1] == "device_credential_reissued"


def test_a_retry_that_cannot_be_honoured_is_a_clear_4xx_without_sql(world):
    key = new_identity_key()
    token, _ = auth.create_token(world.state, world.clock(), 3600, max_uses=2)
    first = ServerApi(HttpxTransport(client=world.client)).enrol(token, key)
    other, _ = auth.create_token(world.state, world.clock(), 3600)
    message = _refused(world.client.post("/v1/enrol", content=_enrol_body(other, key)), 409)
    assert f"device {first.device_id}" in message and "retry with that token" in message
    ok = {"Authorization": f"bearer {first.credential}"}
    assert world.client.get("/v1/rounds/current", headers=ok).status_code == 204  # unchanged
    world.state.revoke_device(first.device_id, world.clock())
    message = _refused(world.client.post("/v1/enrol", content=_enrol_body(token, key)), 403)
    assert f"device {first.device_id}, which was revoked" in message
    second = new_identity_key()
    assert world.client.post("/v1/enrol", content=_enrol_body(token, second)).status_code == 201
    world.clock.now += 3601  # the token has expired: no more retries with it
    message = _refused(world.client.post("/v1/enrol", content=_enrol_body(token, second)), 401)
    assert "expired" in message


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_state_conflicts_say_nothing_of_sql_to_clients_and_log_it(world):
    token, record = auth.create_token(world.state, world.clock(), 3600, max_uses=2)
    key = crypto.ed25519_public(new_identity_key())
    world.state.enrol(record.id, key, b"h" * 32, world.clock(), None)
    seen, logger = _Records(), logging.getLogger("edgerec_server")
    logger.addHandler(seen)  # the operator's log has the details
    try:
        with pytest.raises(ConflictError) as conflict:
            world.state.enrol(record.id, key, b"h" * 32, world.clock(), None)
    finally:
        logger.removeHandler(seen)
    assert not any(leak in str(conflict.value) for leak in _LEAKS), str(conflict.value)
    assert any("UNIQUE" in str(getattr(r, "fields", "")) for r in seen.records)
    assert world.state.find_token(record.token_hash).uses == 1  # rolled back whole


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_state_file_and_its_wal_are_created_owner_only(tmp_path):
    old = os.umask(0o022)  # a usual umask, which alone would make them 0644
    try:
        state = SqliteBackend(tmp_path / "fresh" / "state.sqlite3")
        auth.create_token(state, 0.0, 3600)  # writes: the -wal and -shm files exist now
        files = sorted((tmp_path / "fresh").iterdir())
        assert {f.name for f in files} >= {"state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"}
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        state.close()
    finally:
        os.umask(old)


# -- methods, credentials, membership ------------------------------------------------------------
def test_405_names_the_allowed_methods(world):
    for method, path, allowed in (("DELETE", "/v1/rounds/1/messages", {"POST"}),
                                  ("PUT", "/v1/enrol", {"POST"}),
                                  ("POST", "/healthz", {"GET", "HEAD"}),
                                  ("POST", "/v1/rounds/current", {"GET", "HEAD"}),
                                  ("DELETE", "/v1/models/latest", {"GET", "HEAD"})):
        answer = world.client.request(method, path)
        _refused(answer, 405)
        assert set(answer.headers["allow"].replace(" ", "").split(",")) == allowed, path


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(world, scheme):
    api = world.devices(1)[0]
    assert world.client.get("/v1/certificate", headers=_bearer(api, scheme)).status_code == 200
    assert world.client.get("/v1/rounds/current", headers=_bearer(api, scheme + "  ")).status_code == 204
    for wrong in ("Basic", "Bearerx", "Token"):
        _refused(world.client.get("/v1/rounds/current", headers=_bearer(api, wrong)), 401)


def test_a_device_learns_nothing_about_rounds_it_is_not_in(world, monkeypatch):
    apis = world.devices(6)
    round_id = _round(world, monkeypatch, apis, 4)
    outsider = _bearer(apis[5])
    member = {**_bearer(apis[0]), "Content-Type": "application/octet-stream"}

    def answers(headers: dict, rid: int) -> list[tuple[int, str]]:
        paths = [("GET", f"/v1/rounds/{rid}"), ("POST", f"/v1/rounds/{rid}/messages"),
                 ("GET", f"/v1/rounds/{rid}/messages/key_list")]
        out = []
        for method, path in paths:
            answer = world.client.request(method, path, headers=headers, content=b"\x00" * 64)
            out.append((answer.status_code, answer.json().get("message", "")))
        return out

    def same_as_no_round(rid: int) -> None:
        mine = answers(outsider, rid)
        assert {status for status, _ in mine} == {404}
        nowhere = answers(outsider, rid + 1000)  # no such round at all: the very same answers
        assert mine == [(s, m.replace(str(rid + 1000), str(rid))) for s, m in nowhere]

    assert world.client.get("/v1/rounds/current", headers=outsider).status_code == 204
    same_as_no_round(round_id)
    assert world.client.get(f"/v1/rounds/{round_id}", headers=member).json()["state"] == "open"
    world.tick(11)  # nobody advertised: the round aborts; still nothing to see for the outsider
    same_as_no_round(round_id)
    assert world.client.get(f"/v1/rounds/{round_id}", headers=member).json()["state"] == "aborted"
    _refused(world.client.get(f"/v1/rounds/{round_id}/messages/key_list", headers=member), 410)


# -- the OpenAPI document is what the code enforces ---------------------------------------------
def _documented(world: World) -> dict:
    return world.client.get("/openapi.json").json()["paths"]


def test_every_route_is_documented_with_its_methods_and_parameters(world):
    paths = _documented(world)
    for route in _routes(Api(world.co)):
        assert route.path in paths, route.path
        assert set(paths[route.path]) == {m.lower() for m in route.methods} - {"head"}, route.path
        for op in paths[route.path].values():
            params = {p["name"]: p["schema"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert set(params) == set(route.param_convertors), route.path
            for name, schema in params.items():
                if schema["type"] == "integer":  # the bounds validation.parse_id checks
                    assert (schema["minimum"], schema["maximum"]) == (0, MAX_ID)
                    assert {"400", "404"} <= set(op["responses"]), route.path
    assert len(paths) == len(_routes(Api(world.co)))


def test_the_enrol_body_schema_is_what_is_enforced(world):
    schema = world.client.get("/openapi.json").json()["components"]["schemas"]["EnrolRequest"]
    token, _ = auth.create_token(world.state, world.clock(), 3600, max_uses=10)
    valid = json.loads(_enrol_body(token, new_identity_key()))
    assert set(valid) - {"version"} == set(schema["required"])
    assert schema["properties"]["token"]["pattern"] == auth._TOKEN.pattern
    for field in schema["required"]:  # each one required in fact
        body = {k: v for k, v in valid.items() if k != field}
        _refused(world.client.post("/v1/enrol", content=json.dumps(body).encode()), 400)
    _refused(world.client.post("/v1/enrol", content=json.dumps({**valid, "x": 1}).encode()), 400)
    for media_type, status in (("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                               ("Application/JSON; charset=utf-8", 201)):
        answer = world.client.post("/v1/enrol", content=json.dumps(valid).encode(),
                                   headers={"Content-Type": media_type})
        assert answer.status_code == status, answer.text
    op = _documented(world)["/v1/enrol"]["post"]
    assert list(op["requestBody"]["content"]) == ["application/json"] and "415" in op["responses"]


def test_every_answer_to_bad_input_is_a_documented_status(world, monkeypatch):
    apis = world.devices(5)
    round_id = _round(world, monkeypatch, apis, 4)
    paths = _documented(world)
    auths = [{}, {"Authorization": "Basic x"}, _bearer(apis[0], "bearer"), _bearer(apis[4])]
    bodies = [(b"", {}), (b"[" * 5000, {}), (b"garbage", {"Content-Type": "text/plain"}),
              (b"x" * 70_000, {"Content-Type": "application/json"})]
    for template, ops in paths.items():
        for id_text in (str(round_id), "999", str(2**64), "abc") if "{" in template else ("",):
            path = template.replace("{round_id}", id_text).replace("{version}", id_text)
            path = path.replace("{name}", "key_list")
            for method, op in ops.items():
                for headers in auths:
                    for body, extra in bodies:
                        answer = world.client.request(method.upper(), path, content=body,
                                                      headers={**headers, **extra})
                        assert str(answer.status_code) in op["responses"], (
                            method, path, headers, extra, answer.status_code, answer.text)
                        assert answer.status_code < 500
    _still_works(world, apis[0])
    _round_completes(world, apis[:4])
