"""Make the proxy route by the file just written, and prove it did.

terraphim-llm-proxy routes with the configuration it started with. Its reload endpoint
re-reads `./config.toml` of its working directory and changes nothing in routing
(docs/generator.md, "Applying routes"); what changes routing is a restart, which drops
every request in flight (the proxy has no graceful shutdown). So:

- `restart`: when the proxy's live routes differ from the file's, run the operator's
  restart command (argv, no shell unless asked), wait for `GET /health`, then read
  `GET /v0/management/config` until its router routes equal the file's. At most
  `max_restarts_per_hour` restarts: a change beyond that waits (and says so) for a
  later run, which compares again and restarts then.
- `reload`: the same, with `POST /v0/management/config/reload` instead of a restart.
  It proves the proxy *read* the file; on the current proxy routing does not change.

A failed command, a proxy that does not come back, or live routes that differ after the
deadline are errors with a reason (`command`, `no_comeback`, `mismatch`, `reload`,
`unreachable`): exit 1 and `perfgen_generator_apply_failures_total{reason}`.

The management secret is sent exactly as configured: the proxy never `$`-expands
`[management] secret_key`, so neither does perfgen.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import subprocess
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from perfgen.generator.proxy_schema import ROUTE_KEYS
from perfgen.generator.proxy_toml import atomic_write

HEALTH_PATH = "/health"
CONFIG_PATH = "/v0/management/config"
RELOAD_PATH = "/v0/management/config/reload"
MODES = ("none", "restart", "reload")
REASONS = ("command", "no_comeback", "mismatch", "reload", "unreachable")
RELOAD_WARNING = (
    "--apply reload: on the current terraphim-llm-proxy a reload changes nothing in "
    "routing (it re-reads ./config.toml of its working directory and keeps routing with "
    "the configuration it started with); the check below proves only that the proxy "
    "read the file. Use --apply restart to change routing."
)


class ApplyError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ApplyOutcome:
    """What one apply step did. `applied`: the proxy's live routes equal the file's."""

    action: str  # "none" (already live), "restarted", "reloaded", "waiting", "failed"
    applied: bool
    message: str
    reason: str | None = None  # the failure reason when action == "failed"
    warnings: list[str] = field(default_factory=list)
    restarted: bool = False  # the restart command ran (whatever came of it)


class RestartBudget:
    """At most `per_hour` restarts in any sliding hour (None: unbounded).

    In memory for one `--every` process; with `state` (a JSON file) also across one-shot
    runs from a timer or CronJob, which would otherwise each start with a full budget.
    """

    def __init__(
        self,
        per_hour: int | None,
        clock: Callable[[], float] = time.time,
        state: str | os.PathLike[str] | None = None,
    ) -> None:
        self.per_hour, self.clock = per_hour, clock
        self.state = Path(state) if state is not None else None
        self._starts: collections.deque[float] = collections.deque(self._load())

    def _load(self) -> list[float]:
        if self.state is None:
            return []
        try:
            data = json.loads(self.state.read_text(encoding="utf-8"))
            return sorted(float(t) for t in data["restarts"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable: count it as spent rather than restart without a bound.
            raise ApplyError("command", f"restart state {self.state} unreadable: {exc}") from None

    def _trim(self) -> None:
        now = self.clock()
        while self._starts and now - self._starts[0] >= 3600:
            self._starts.popleft()

    def allows(self) -> bool:
        self._trim()
        return self.per_hour is None or len(self._starts) < self.per_hour

    def next_allowed_in(self) -> float:
        self._trim()
        if self.allows() or not self._starts:
            return 0.0
        return max(0.0, 3600 - (self.clock() - self._starts[0]))

    def spend(self) -> None:
        self._trim()
        self._starts.append(self.clock())
        if self.state is not None:
            atomic_write(
                self.state, json.dumps({"restarts": list(self._starts)}) + "\n", backup=False
            )

    @property
    def used(self) -> int:
        self._trim()
        return len(self._starts)


@dataclass
class Applier:
    """One apply configuration; keep the instance across `--every` runs (restart budget)."""

    mode: str
    proxy_url: str
    management_key: str | None = None
    restart_command: Sequence[str] | str | None = None  # a str runs through the shell
    timeout: float = 60.0  # seconds for the command plus the proxy's comeback
    budget: RestartBudget = field(default_factory=lambda: RestartBudget(None))
    poll_interval: float = 0.5
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        if self.mode not in ("restart", "reload"):
            raise ValueError(f"apply mode must be restart or reload, got {self.mode!r}")
        if self.mode == "restart" and not self.restart_command:
            raise ValueError("--apply restart needs --restart-command")
        self.proxy_url = self.proxy_url.rstrip("/")
        if not urlsplit(self.proxy_url).scheme.startswith("http"):
            raise ValueError(f"--proxy-url must be an http(s) URL: {self.proxy_url}")

    # ------------------------------------------------------------------ the step

    def apply(self, text: str, changed: bool) -> ApplyOutcome:
        """Bring the proxy to `text`'s routes; `changed`: this run rewrote them."""
        wanted = file_routes(text)
        warnings = [RELOAD_WARNING] if self.mode == "reload" else []
        try:
            live = self.live_routes()
        except ApplyError as exc:
            if not changed:
                # Nothing new to apply and the proxy cannot be checked: say so, do not
                # restart a proxy that may be down for reasons of its own.
                return self._failed(exc, warnings)
            live = None
        if live == wanted:
            return ApplyOutcome(
                "none", True, "the proxy already routes by this file", None, warnings
            )
        if self.mode == "restart" and not self.budget.allows():
            wait = self.budget.next_allowed_in()
            return ApplyOutcome(
                "waiting",
                False,
                f"route change waits: {self.budget.used} restart(s) in the last hour "
                f"(--max-restarts-per-hour {self.budget.per_hour}); next restart allowed in "
                f"{wait:.0f}s",
                None,
                warnings,
            )
        restarted = self.mode == "restart"
        try:
            if restarted:
                self.budget.spend()
                self._run_command()
            else:
                self._reload()
            self._verify(wanted)
        except ApplyError as exc:
            outcome = self._failed(exc, warnings)
            outcome.restarted = restarted
            return outcome
        action = "restarted" if restarted else "reloaded"
        return ApplyOutcome(
            action,
            True,
            f"proxy {action}; its live router routes equal the file's",
            None,
            warnings,
            restarted,
        )

    def _failed(self, exc: ApplyError, warnings: list[str]) -> ApplyOutcome:
        return ApplyOutcome("failed", False, self._redact(str(exc)), exc.reason, warnings)

    # ------------------------------------------------------------------ parts

    def _run_command(self) -> None:
        command = self.restart_command
        assert command
        shell = isinstance(command, str)
        shown = command if shell else shlex.join(command)
        try:
            done = subprocess.run(
                command,
                shell=shell,  # noqa: S602 - only with the explicit --restart-shell
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise ApplyError("command", f"restart command not found: {shown}") from None
        except subprocess.TimeoutExpired:
            raise ApplyError(
                "command", f"restart command {shown} did not finish in {self.timeout:g}s"
            ) from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-300:]
            raise ApplyError(
                "command",
                f"restart command {shown} exited {done.returncode}" + (f": {tail}" if tail else ""),
            )

    def _reload(self) -> None:
        try:
            response = self.session.post(
                self.proxy_url + RELOAD_PATH, headers=self._headers(), timeout=10
            )
        except requests.RequestException as exc:
            raise ApplyError("reload", f"proxy reload at {self.proxy_url} failed: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise ApplyError(
                "reload",
                f"proxy reload at {self.proxy_url} answered HTTP {response.status_code}: "
                f"{response.text[:200].strip()}",
            )

    def _verify(self, wanted: Mapping[str, str | None]) -> None:
        """Poll /health, then the live routes, until they equal `wanted` or time is up.

        Polling past a first mismatch matters: right after the command returns the old
        process may still answer, or the new one may not have loaded yet.
        """
        deadline = time.monotonic() + self.timeout
        live = None
        while True:
            # The last poll decides: the old process may answer /health for a moment
            # after the command returns, and then go away for good.
            healthy = self._healthy()
            if healthy:
                try:
                    live = self.live_routes()
                except ApplyError:
                    live = None
                if live == wanted:
                    return
            if time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        if not healthy:
            raise ApplyError(
                "no_comeback",
                f"the proxy at {self.proxy_url} did not answer GET {HEALTH_PATH} "
                f"within {self.timeout:g}s",
            )
        if live is None:
            raise ApplyError(
                "unreachable",
                f"the proxy at {self.proxy_url} is up but GET {CONFIG_PATH} failed",
            )
        differ = [k for k in ROUTE_KEYS if live.get(k) != wanted.get(k)]
        detail = "; ".join(
            f"router.{k}: live {live.get(k)!r}, file {wanted.get(k)!r}" for k in differ
        )
        raise ApplyError(
            "mismatch",
            f"the proxy came back with other routes than the file's after {self.timeout:g}s: "
            + detail,
        )

    def _healthy(self) -> bool:
        try:
            response = self.session.get(self.proxy_url + HEALTH_PATH, timeout=5)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def live_routes(self) -> dict[str, str | None]:
        """The router routes the proxy reports it loaded (GET /v0/management/config)."""
        url = self.proxy_url + CONFIG_PATH
        try:
            response = self.session.get(url, headers=self._headers(), timeout=10)
        except requests.RequestException as exc:
            raise ApplyError("unreachable", f"GET {url} failed: {exc}") from None
        if response.status_code != 200:
            hint = " (check the management secret)" if response.status_code in (401, 403) else ""
            raise ApplyError("unreachable", f"GET {url} answered HTTP {response.status_code}{hint}")
        try:
            router = response.json()["router"]
            return {key: router.get(key) for key in ROUTE_KEYS}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ApplyError("unreachable", f"GET {url}: no router object in the answer") from None

    def _headers(self) -> dict[str, str]:
        # Literal: "$MANAGEMENT_SECRET" in the proxy's file is that very string.
        return {"X-Management-Key": self.management_key} if self.management_key else {}

    def _redact(self, text: str) -> str:
        key = self.management_key
        return text.replace(key, "<redacted>") if key and len(key) >= 4 else text


def file_routes(text: str) -> dict[str, str | None]:
    """A file's router routes in the shape GET /v0/management/config reports them."""
    router = tomllib.loads(text).get("router", {})
    return {
        key: router.get(key) if isinstance(router.get(key), str) else None for key in ROUTE_KEYS
    }


def management_secret(text: str) -> str | None:
    """`[management] secret_key` exactly as written (the proxy never expands it)."""
    management = tomllib.loads(text).get("management", {})
    secret = management.get("secret_key") if isinstance(management, dict) else None
    return secret if isinstance(secret, str) and secret else None


def management_enabled(text: str) -> bool:
    management = tomllib.loads(text).get("management", {})
    return isinstance(management, dict) and management.get("enabled") is True


def default_proxy_url(text: str) -> str | None:
    """http://HOST:PORT from [proxy]; a wildcard host is reached on loopback."""
    proxy: Any = tomllib.loads(text).get("proxy", {})
    if not isinstance(proxy, dict) or "port" not in proxy:
        return None
    host = str(proxy.get("host", "127.0.0.1"))
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{proxy['port']}"
