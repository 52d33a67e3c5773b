"""A total deadline for one blocking `requests` call, headers and body alike.

requests' `timeout` bounds each socket read, so a server that drips a byte a second (its
headers or its body) never trips it. Within `deadline()`, every connection the session
takes from its pools is noted; when the time is up, a timer thread shuts those sockets
down, which ends the blocked read at once (shutdown, unlike close, wakes a thread blocked
in recv). The caller then sees a connection error and `expired` tells it why.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_WATCHED = threading.local()


class _Watched:
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        watched = getattr(_WATCHED, "connections", None)
        if watched is not None:
            watched.append(connection)
        return connection


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


def watch_session(session: requests.Session) -> None:
    """Make `session`'s HTTP(S) pools report the connections they hand out."""
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.poolmanager.pool_classes_by_scheme = {
                "http": _WatchedHTTPPool,
                "https": _WatchedHTTPSPool,
            }


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Run the block with a total deadline; yields the event set when it expired."""
    connections: list[Any] = []
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    _WATCHED.connections = connections
    timer = threading.Timer(max(seconds, 0.0), expire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
        _WATCHED.connections = None
