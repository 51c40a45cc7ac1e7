"""HTTP behind one small interface, so the protocol code never touches httpx directly.

:class:`Transport` is what the rest of ``edgerec.sync`` calls; :class:`HttpxTransport` is the
one adapter over httpx. Tests wrap a transport to record or tamper with bodies, or pass an
``httpx.Client`` of their own (e.g. Starlette's ``TestClient``) to ``HttpxTransport``.

:func:`check_server_url` is the rule for which server URLs a device accepts (``https://``;
``http://`` only to loopback or to hosts the app names). It is applied where an app hands a
URL to the SDK (``SyncSession``); the transport itself stays neutral so tests and tools can
use it with any base URL. :class:`HttpxTransport` never follows redirects, so an ``https://``
server cannot send a device on to ``http://`` or to another host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Protocol
from urllib.parse import urlsplit

from .._exceptions import ConfigError, TransportError

if TYPE_CHECKING:  # httpx is imported when a transport is made, not with edgerec.sync
    import httpx

__all__ = ["HttpxTransport", "RecordingTransport", "Response", "Transport", "check_server_url",
           "is_loopback_host"]

_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x.y.z)."""
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name: only "localhost" is trusted to stay on this machine
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _host_names(hosts: object) -> frozenset[str]:
    # A bare str would be read as its letters; insist on a collection of names.
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, Iterable):
        raise ConfigError("insecure_http_hosts must be a tuple of host names")
    names = []
    for host in hosts:
        if not isinstance(host, str) or not host.strip("[]. "):
            raise ConfigError(f"insecure_http_hosts: {host!r} is not a host name")
        names.append(host.strip("[]").rstrip(".").lower())
    return frozenset(names)


def check_server_url(url: object, insecure_http_hosts: Iterable[str] = ()) -> str:
    """``url`` if a device may talk to it, else :class:`ConfigError`.

    ``https://`` is always accepted. ``http://`` is accepted only to a loopback host (the
    traffic never leaves the machine) or to a host the app names in ``insecure_http_hosts``
    (opt-in by name, e.g. a lab server on a trusted LAN): in clear text a network attacker can
    read credentials and hold back every bundle and round (bundles stay signed either way).
    """
    allowed = _host_names(insecure_http_hosts)
    if not isinstance(url, str):
        raise ConfigError(f"server_url must be an http(s) URL, got {url!r}")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(f"server_url {url!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"server_url must be an http(s) URL, got {url!r}")
    if not host:
        raise ConfigError(f"server_url {url!r} names no host")
    if parts.scheme == "http" and not is_loopback_host(host) and host.rstrip(".") not in allowed:
        raise ConfigError(
            f"server_url {url!r} is plain http to a host that is not loopback; use https, or "
            f"name the host in insecure_http_hosts=({host!r},) to accept clear text to it")
    return url


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, headers (lower-case names) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request and returns the answer; raises :class:`TransportError` when none came."""

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response: ...


class HttpxTransport:
    """:class:`Transport` over an ``httpx.Client``.

    ``HttpxTransport("https://fl.example.com")`` makes (and owns) a client; pass ``client=`` to
    reuse one (its ``base_url`` is then used and it is not closed by :meth:`close`).
    """

    def __init__(self, base_url: str = "", *, timeout: float = 30.0,
                 client: httpx.Client | None = None, verify: bool | str = True) -> None:
        import httpx

        self._httpx = httpx
        self._owned = client is None
        # No redirects (httpx's default, stated): a 3xx must not take a device to another
        # host or from https:// to http://.
        self._client = client if client is not None else httpx.Client(
            base_url=base_url, timeout=timeout, verify=verify, follow_redirects=False)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        try:
            answer = self._client.request(method, path, content=body, headers=dict(headers or {}))
        except self._httpx.HTTPError as exc:  # connect/read errors, timeouts, protocol errors
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return Response(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                        answer.content)

    def close(self) -> None:
        """Close the client if this transport made it."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> HttpxTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RecordingTransport:
    """Wraps a transport and keeps every (method, path, request body, response) it carried.

    ``tamper(method, path, body) -> body`` may rewrite a request body before it is sent (tests).
    """

    inner: Transport
    tamper: Callable[[str, str, bytes | None], bytes | None] | None = None
    log: list[tuple[str, str, bytes | None, Response]] = field(default_factory=list)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        if self.tamper is not None:
            body = self.tamper(method, path, body)
        answer = self.inner.request(method, path, body=body, headers=headers)
        self.log.append((method, path, body, answer))
        return answer
