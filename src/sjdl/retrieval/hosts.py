"""Which Host headers ``sjdl serve`` answers: its defence against DNS rebinding (a web page
whose name an attacker points at this machine's address may otherwise call the API).

A request is answered only when its Host header (port ignored) is a name of the allow-list:
the address the server is bound to; for loopback binds also ``localhost``, ``127.0.0.1`` and
``[::1]``; and names given with ``--allow-host``. A wildcard bind (``0.0.0.0``, ``::``)
accepts any IP address as Host (a rebinding page always sends its own name, never an
address) and ``localhost``; a name on the LAN must be listed with ``--allow-host``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD = ("0.0.0.0", "::", "")
_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normalise(host: str) -> str:
    """``host`` without a port, brackets or trailing dot, lower case ('' if malformed)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        inner = host[1:end] if end > 0 else ""
        rest = host[end + 1 :] if end > 0 else ""
        return inner if _ip(inner) and (not rest or rest[1:].isdigit()) else ""
    if host.count(":") == 1:
        host, port = host.split(":")
        if not port.isdigit():
            return ""
    elif ":" in host:  # a bare IPv6 address
        return host if _ip(host) else ""
    return host.removesuffix(".")


def check_name(name: str) -> str:
    """An ``--allow-host`` value, normalised; ValueError for a pattern or a malformed name."""
    host = normalise(name)
    if not host or not (_ip(host) or _NAME.match(host)):
        raise ValueError(
            f"--allow-host {name!r}: expected a host name or IP address (no '*', no scheme, "
            "no path), e.g. --allow-host mybox.lan"
        )
    return host


@dataclass(frozen=True)
class HostPolicy:
    names: frozenset[str]
    any_ip: bool = False

    @classmethod
    def for_bind(cls, bind: str, extra: tuple[str, ...] = ()) -> HostPolicy:
        bind_host = normalise(bind) if bind not in WILDCARD else ""
        names = {check_name(n) for n in extra}
        wildcard = bind in WILDCARD
        addr = _ip(bind_host)
        if bind_host == "localhost" or (addr is not None and addr.is_loopback) or wildcard:
            names |= set(LOOPBACK_NAMES)
        if bind_host:
            names.add(bind_host)
        return cls(frozenset(names), any_ip=wildcard)

    def allows(self, host_header: str) -> bool:
        host = normalise(host_header)
        return bool(host) and (host in self.names or (self.any_ip and _ip(host) is not None))

    def describe(self) -> str:
        shown = sorted(f"[{n}]" if ":" in n else n for n in self.names)
        return ", ".join(shown) + (" or any IP address" if self.any_ip else "")


class HostCheck:
    """ASGI middleware: a request whose Host header the policy does not allow gets a 400
    JSON ``{"error": ...}`` and never reaches the app."""

    def __init__(self, app, policy: HostPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.policy.allows(host):
            return await self.app(scope, receive, send)
        message = (
            f"Host header {host[:100]!r} is not one of this server's names "
            f"({self.policy.describe()}); start sjdl serve with --allow-host NAME to add one"
        )
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
