"""Packaging (edgerec_server, never a bare ``server``), configuration, OpenAPI, health, metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from edgerec_server import create_app, load_config
from edgerec_server._exceptions import ServerConfigError
from edgerec_server.app import Api, _routes

from srv_helpers import ROOT, cli


def test_import_name_is_edgerec_server_and_bare_server_does_not_resolve(tmp_path):
    code = ("import importlib.util, edgerec_server, edgerec; "
            "print(importlib.util.find_spec('server') is None, edgerec_server.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "edgerec_server"]
    sdk = subprocess.run([sys.executable, "-c", "import sys, edgerec.sync; print('edgerec_server' in sys.modules)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert sdk.stdout.strip() == "False"  # the SDK never imports the server


def test_every_package_folder_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "edgerec").rglob("*.py")
             if "__pycache__" not in p.parts}
    found |= {"edgerec_server" + "".join("." + x for x in p.relative_to(ROOT / "server").parent.parts)
              for p in (ROOT / "server").rglob("*.py") if "__pycache__" not in p.parts}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_config_precedence_file_env_flags(tmp_path):
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"port": 9001, "dp_delta": 1e-6, "log_json": False}))
    env = {"EDGEREC_SERVER_PORT": "9002", "EDGEREC_SERVER_PUBLIC_MODELS": "yes"}
    config = load_config(path, env=env, port=None, host="0.0.0.0")
    assert (config.port, config.dp_delta, config.public_models, config.host) == (9002, 1e-6, True, "0.0.0.0")
    assert load_config(path, env=env, port=9003).port == 9003
    pytest.importorskip("tomllib")
    toml = tmp_path / "server.toml"
    toml.write_text("[server]\nmax_body_bytes = 2048\n")
    assert load_config(toml, env={}).max_body_bytes == 2048
    for bad in ({"nope": 1}, {"port": "x"}, {"dp_delta": 2}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ServerConfigError):  # a start-up error, not an HTTP 400
            load_config(path, env={})


def test_openapi_documents_every_route_and_health_and_metrics_answer(data_dir):
    from edgerec_server import Coordinator, Publisher, SqliteBackend
    from edgerec_server.keys import load_or_create_key

    config = load_config(data_dir=data_dir, env={}, tick_interval_s=0)
    state = SqliteBackend(config.database_path)
    try:
        co = Coordinator(state, Publisher(state, load_or_create_key(config.signing_key_path)), config)
        client = TestClient(create_app(co))
        schema = client.get("/openapi.json").json()
        documented = set(schema["paths"])
        served = {r.path.replace(":int", "").replace(":str", "") for r in _routes(Api(co))}
        assert served == documented
        assert client.get("/healthz").json() == {"status": "ok", "model_version": 1}
        assert client.get("/v1/public-key").json()["public_key"] == co.publisher.public_key.hex()
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "edgerec_http_requests_total" in metrics.text
        assert 'route="/healthz"' in metrics.text
        # /metrics and /healthz read the model version from the same place (model 1 came from init,
        # before any round closed on this server).
        assert "\nedgerec_model_version 1.0\n" in metrics.text
        client.close()
    finally:
        state.close()


def test_cli_audit_table_and_json(data_dir, capsys):
    empty = json.loads(cli(data_dir, "audit", "--json"))
    assert (empty["delta"], empty["rounds"], empty["certificates"]) == (1e-5, [], [])
    assert empty["authority"]["mode"] == "embedded"
    assert "epsilon" in cli(data_dir, "audit")
    out = cli(data_dir, "export-bundle", "--out", str(data_dir.parent / "exported"))
    assert json.loads(out)["model_version"] == 1
    assert (data_dir.parent / "exported" / "manifest.sig").is_file()
    from edgerec_server.cli import main

    assert main(["init", "--synthetic", "--data-dir", str(data_dir)]) == 2  # already has a model
    # Parameters no draw could ever fit are refused as such, before any draw: a threshold of 2 is
    # below the floor of every cohort (t > 2/3 n), 3 is below it for 10 or more devices.
    for minimum, threshold in ((3, 2), (10, 3)):
        assert main(["round", "open", "--min", str(minimum), "--threshold", str(threshold),
                     "--data-dir", str(data_dir)]) == 2
        err = capsys.readouterr().err
        assert "does not fit any cohort" in err and "drew" not in err
    assert json.loads(cli(data_dir, "audit", "--json"))["rounds"] == []


def test_cli_version_and_help_are_plain_and_show_the_serve_defaults(capsys):
    from edgerec._version import installed_version
    from edgerec_server.cli import main

    def output(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
        assert exit_.value.code == 0
        return capsys.readouterr().out

    assert output("--version") == f"edgerec-server {installed_version()}\n"
    top = output("--help")
    assert "``" not in top and "\n::\n" not in top and "examples:" in top  # no raw reST
    serve = " ".join(output("serve", "--help").split())
    for default in ("(default: 127.0.0.1", "(default: 8000)", "(default: info)", "(default: edgerec-state)"):
        assert default in serve
