"""A tiny webhook receiver on 127.0.0.1 that records Alertmanager notifications.

Stands in for the pager in the demo and the tests: Alertmanager POSTs its webhook JSON
(version 4: `status`, `groupLabels`, `alerts[]` with `labels` and `annotations`) here,
and the caller reads or waits for what arrived. A thread, not asyncio, so it works the
same from a synchronous pytest fixture and from the demo's main loop.

`python -m perfgen.stack.webhook --listen HOST:PORT` runs it on its own and prints one line per
alert, so that docker-compose's Alertmanager has a receiver whose output `docker-compose
logs alert-log` shows.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from perfgen.listen import ListenError, parse_listen

Alert = dict[str, Any]
Notification = dict[str, Any]


class WebhookReceiver:
    """Records every JSON body POSTed to it; `wait_for_alert` blocks until one matches."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        on_notification: Callable[[Notification], None] | None = None,
    ) -> None:
        self._notifications: list[Notification] = []
        self._on_notification = on_notification
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body or b"null")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver._record(payload)
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                # Lets a person (or curl) see what the "pager" received during the demo.
                body = json.dumps(receiver.notifications(), indent=2).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                # Quiet: the demo narrates arrivals itself.
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> WebhookReceiver:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="webhook-receiver", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, payload: Notification) -> None:
        with self._changed:
            self._notifications.append(payload)
            self._changed.notify_all()
        if self._on_notification is not None:
            self._on_notification(payload)

    def notifications(self) -> list[Notification]:
        """Every body received so far, oldest first."""
        with self._changed:
            return list(self._notifications)

    def alerts(self, status: str | None = None) -> list[Alert]:
        """Every alert of every notification (optionally only `firing` or `resolved`)."""
        with self._changed:
            return self._alerts_locked(status)

    def wait_for_alert(
        self,
        predicate: Callable[[Alert], bool] | None = None,
        *,
        timeout: float = 60.0,
        status: str | None = "firing",
        **labels: str,
    ) -> Alert | None:
        """The first alert with these labels (and passing predicate); None after timeout.

        `wait_for_alert(alertname="PerfgenLatencyHigh", model="m")`.
        """

        def matches(alert: Alert) -> bool:
            alert_labels = alert.get("labels") or {}
            if any(alert_labels.get(key) != value for key, value in labels.items()):
                return False
            return predicate is None or predicate(alert)

        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for alert in self._alerts_locked(status):
                    if matches(alert):
                        return alert
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(timeout=remaining)

    def _alerts_locked(self, status: str | None) -> list[Alert]:
        found: list[Alert] = []
        for notification in self._notifications:
            if isinstance(notification, dict):
                for alert in notification.get("alerts") or []:
                    if status is None or alert.get("status") == status:
                        found.append(alert)
        return found


def alert_line(alert: Alert) -> str:
    """One line a person can read in a log: status, name, target, severity, summary."""
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    target = "/".join(labels[k] for k in ("provider", "model") if labels.get(k))
    parts = [
        str(alert.get("status", "?")).upper(),
        labels.get("alertname", "?"),
        target or "-",
        f"severity={labels.get('severity', '-')}",
        annotations.get("summary", ""),
    ]
    return " ".join(p for p in parts if p)


def _print_alerts(notification: Notification) -> None:
    alerts = notification.get("alerts") if isinstance(notification, dict) else None
    for alert in alerts or []:
        print(alert_line(alert), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfgen.stack.webhook",
        description="Receive Alertmanager webhooks and print one line per alert.",
    )
    parser.add_argument("--listen", default="127.0.0.1:5001", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ListenError as exc:
        parser.error(f"--listen: {exc}")
    receiver = WebhookReceiver(port, host, on_notification=_print_alerts)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with receiver:
        print(f"webhook receiver listening on http://{args.listen}/alerts", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
