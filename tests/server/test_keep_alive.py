"""A device's connection stays open between its requests of a round. uvicorn closes an idle
connection after 5 s by default; a device busy with a stage's cryptography for longer then
sent its next request on a connection the server was closing ("Server disconnected without
sending a response": 3 such failures in a row failed a device of a 5,000-device round)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import pytest

from edgerec_server.config import ServerConfigError, load_config


def _get(sock: socket.socket, host: str) -> bytes:
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            return data  # the server closed the connection
        data += chunk
    return data


def test_an_idle_connection_is_kept_past_uvicorns_five_seconds(server):
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        assert _get(sock, url.netloc).startswith(b"HTTP/1.1 200")
        time.sleep(6.5)  # longer than uvicorn's default keep-alive
        assert _get(sock, url.netloc).startswith(b"HTTP/1.1 200")  # the same connection


@pytest.mark.parametrize("value", [0, 0.5, 7200])
def test_a_keep_alive_outside_its_range_is_refused(tmp_path, value):
    with pytest.raises(ServerConfigError, match="keep_alive_s"):
        load_config(data_dir=tmp_path, env={}, keep_alive_s=value)
