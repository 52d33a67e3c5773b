"""HOST:PORT listen addresses, read the same way by every perfgen server.

`perfgen simulate --listen`, `perfgen exporter --listen`, `perfgen generate
--metrics-listen` and the demo's webhook receiver all take one. The host is required (a
server that should listen on every interface says `0.0.0.0` or `[::]`, never by
omission), an IPv6 host is written in brackets (`[::1]:9470`, as in URLs: without them
`::1:9470` could be read more than one way), and port 0 asks the kernel for a free port.
"""

from __future__ import annotations

MAX_PORT = 65535


class ListenError(ValueError):
    """A listen address that is not HOST:PORT; the message says what is wrong."""


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) -> (host, port); raises ListenError."""

    def bad(why: str) -> ListenError:
        return ListenError(f"{text!r} is not HOST:PORT (IPv6 as [::1]:PORT): {why}")

    host, found, port_text = text.rpartition(":")
    if not found:
        raise bad("no ':' before the port")
    if not port_text.isascii() or not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > MAX_PORT:
        raise bad(f"port {port} is above {MAX_PORT}")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise bad("unbalanced brackets around the host")
        host = host[1:-1]
        if "[" in host or "]" in host:
            raise bad("unbalanced brackets around the host")
    elif ":" in host:
        raise bad("an IPv6 host needs brackets")
    if not host:
        raise bad("no host (use 0.0.0.0 or [::] for every interface)")
    if any(c.isspace() for c in host):
        raise bad("whitespace in the host")
    return host, port


def display_host(host: str) -> str:
    """The host as it is written in a URL (IPv6 back in brackets)."""
    return f"[{host}]" if ":" in host else host
