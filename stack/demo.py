"""The whole perfgen pipeline on this machine, against simulated providers.

`DemoStack` starts, on free loopback ports in one work directory: the simulator
(stack/demo-simulator.toml), the exporter and the generator on a copy of
stack/demo-proxy.toml pointed at the simulator, Prometheus with the rendered rules and an
http_sd probe job, Alertmanager, and a webhook receiver standing in for the pager.

The story (`run_story`, narrated by `perfgen demo`, asserted by tests/test_e2e.py):
rankings appear, the primary of `[router] default` is degraded through the simulator's
admin API, the degradation alert reaches the receiver, the generator demotes the model
in the config it writes and restarts the proxy (`--apply restart`), and a request
through the proxy is served by the newly promoted model.

The proxy is a stand-in (stack/proxy_standin.py), not terraphim-llm-proxy, which cannot
be built here: it loads, reports and routes as the proxy does where perfgen touches it.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from perfgen.config import Config, Route, infer_protocol, load_config, parse_chain
from perfgen.stack.processes import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    http_get,
    perfgen_command,
    perfgen_env,
    start_alertmanager,
    start_perfgen,
    start_prometheus,
)
from perfgen.stack.prometheus_config import render_alertmanager_config, render_prometheus_config
from perfgen.stack.proxy_standin import start_standin
from perfgen.stack.running import Log, RunningStack, indent, quiet
from perfgen.stack.webhook import Alert, WebhookReceiver

HERE = Path(__file__).resolve().parent
DEMO_SIMULATOR_CONFIG = HERE / "demo-simulator.toml"
DEMO_PROXY_CONFIG = HERE / "demo-proxy.toml"
# What stack/demo-proxy.toml's api_base_urls assume; replaced by the simulator's real URL.
SIMULATOR_PLACEHOLDER = "http://127.0.0.1:8700"

# The incident: first tokens three times past the 800 ms threshold, and one request in
# ten failing with a 503. Latency, reliability and the score all break, so the generator
# has no reason to wait. The error rate stays low on purpose: PerfgenLatencyHigh also
# wants the latest probe to be slow, and a failed probe has no TTFT, so frequent errors
# would keep resetting its `for:` clock and delay the page.
DEGRADATION: dict[str, Any] = {
    "ttft_ms": 2500.0,
    "ttft_sigma": 0.1,
    "error_rate": 0.1,
    "faults": {"http_503": 1.0},
}
# Alerts that say "this model got worse"; the story waits for any of them on the model.
DEGRADATION_ALERTS = (
    "PerfgenLatencyHigh",
    "PerfgenProbeFailing",
    "PerfgenScoreDegraded",
    "PerfgenThroughputLow",
)

# What `perfgen generate --metrics-listen` prints once its /metrics is served.
GENERATOR_READY_PREFIX = "generator listening on"


def _prometheus_query(url: str, query: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """An instant query's result vector; [] when Prometheus has nothing (yet)."""
    status, body = http_get(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}", timeout=timeout
    )
    if status != 200:
        return []
    data = json.loads(body).get("data", {})
    return list(data.get("result", [])) if data.get("resultType") == "vector" else []


def _first_ranked(table: str) -> Route | None:
    """The model of the first data row of a `perfgen query` table (title, header, rows)."""
    lines = table.splitlines()
    fields = lines[2].split() if len(lines) > 2 else []
    return Route(fields[1], fields[2]) if len(fields) > 2 and fields[0] == "1" else None


def read_chain(config_path: Path, scenario: str = "default") -> list[Route]:
    """The routes of a `[router]` scenario in a proxy config, primary first."""
    router = tomllib.loads(config_path.read_text(encoding="utf-8")).get("router", {})
    text = router.get(scenario)
    return parse_chain(text) if isinstance(text, str) else []


def point_at_simulator(text: str, simulator_url: str) -> str:
    """The proxy config with every api_base_url on the stand-in host moved to the simulator.

    tomlkit keeps comments and layout, so the demo's copy reads like the original.
    """
    document = tomlkit.parse(text)
    for provider in document.get("providers", []):
        base = str(provider.get("api_base_url", ""))
        if base.startswith(SIMULATOR_PLACEHOLDER):
            provider["api_base_url"] = (
                simulator_url.rstrip("/") + base[len(SIMULATOR_PLACEHOLDER) :]
            )
    return tomlkit.dumps(document)


def patch_profile(simulator_url: str, route: Route, changes: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH a simulator's profile of `route`; returns the profile now in force."""
    url = (
        f"{simulator_url}/-/profiles/"
        f"{urllib.parse.quote(route.provider)}/{urllib.parse.quote(route.model)}"
    )
    request = urllib.request.Request(
        url,
        data=json.dumps(dict(changes)).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
        return dict(json.loads(response.read() or b"{}"))


def router_diff(before: str, after: str, path: str) -> str:
    """A unified diff of two versions of the proxy config (only routes should differ)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (before)",
        tofile=f"{path} (now)",
        n=1,
    )
    return "".join(lines)


@dataclass
class DemoStack(RunningStack):
    """Every process of the demo; `start()`, then `stop()` (also on error, idempotent)."""

    simulator_config: Path = DEMO_SIMULATOR_CONFIG
    proxy_config: Path = DEMO_PROXY_CONFIG
    scrape_interval: str = "5s"
    evaluation_interval: str = "5s"
    generator_every: str = "10s"
    generator_metrics_port: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # The live copy: the exporter reads it, the generator rewrites its [router].
        self.config_path = self.workdir / "config.toml"
        self.original_config_path = self.workdir / "config.original.toml"

    # ------------------------------------------------------------------ lifecycle

    def _start_all(self) -> None:
        self.receiver.start()
        self.log(f"webhook receiver (stands in for the pager) on {self.receiver.url}")

        simulator = self._perfgen(
            "simulator",
            ["simulate", "--config", str(self.simulator_config), "--listen", "127.0.0.1:0"],
            "simulator listening on",
        )
        text = point_at_simulator(
            self.proxy_config.read_text(encoding="utf-8"), simulator.url or ""
        )
        self.original_config_path.write_text(text, encoding="utf-8")
        self.config_path.write_text(text, encoding="utf-8")
        self.config: Config = load_config(self.config_path)

        self._perfgen(
            "exporter",
            ["exporter", "--config", str(self.config_path), "--listen", "127.0.0.1:0"],
            "exporter listening on",
        )

        alertmanager_config = render_alertmanager_config(
            self.receiver.url, group_wait="1s", group_interval="5s", repeat_interval="1h"
        )
        self.processes["alertmanager"] = start_alertmanager(
            self.workdir / "alertmanager", alertmanager_config
        )
        self.log(f"alertmanager listening on {self.alertmanager_url}")

        from perfgen.rules.render import render_rules

        self.rule_files = {
            f"rules/{name}": text for name, text in render_rules(self.config.performance).items()
        }
        # Known before the generator starts, so Prometheus scrapes it from the start.
        self.generator_metrics_port = free_port()
        prometheus_config = render_prometheus_config(
            self.exporter_url,
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.evaluation_interval,
            sd_refresh_interval=self.scrape_interval,
            generator=f"127.0.0.1:{self.generator_metrics_port}",
            alertmanager=self.alertmanager_url,
            rule_files=sorted(self.rule_files),
        )
        self.processes["prometheus"] = start_prometheus(
            self.workdir / "prometheus",
            prometheus_config,
            self.rule_files,
            # Alertmanager is discovered a few seconds after start; without a short
            # resend delay an early alert would wait a minute to be re-sent.
            extra_args=["--rules.alert.resend-delay=5s"],
        )
        self.log(f"prometheus listening on {self.prometheus_url}")

        # The proxy stand-in routes by the file it loaded; its cwd is the workdir, so a
        # reload would re-read this very config.toml, as the real proxy does.
        standin = start_standin(self.config_path, self.workdir, name="proxy-standin")
        self.processes["proxy-standin"] = standin
        self.log(f"proxy stand-in (not the real proxy) listening on {standin.url}")

        self._perfgen(
            "generator",
            [
                "generate",
                "--config",
                str(self.config_path),
                "--prometheus",
                self.prometheus_url,
                "--every",
                self.generator_every,
                "--metrics-listen",
                f"127.0.0.1:{self.generator_metrics_port}",
                # What `systemctl restart terraphim-llm-proxy` is on a real host.
                "--apply",
                "restart",
                "--restart-command",
                f"kill -HUP {standin.pid}",
                "--proxy-url",
                standin.url or "",
                "--apply-timeout",
                "20",
                "--max-restarts-per-hour",
                "60",
            ],
            GENERATOR_READY_PREFIX,
        )

    def _perfgen(self, name: str, args: list[str], ready_prefix: str) -> ManagedProcess:
        process = start_perfgen(args, ready_prefix, self.workdir, name=name)
        self.processes[name] = process
        self.log(
            f"{name} {process.ready_line.split(' ', 1)[1] if process.ready_line else ''}".rstrip()
        )
        return process

    # ------------------------------------------------------------------ addresses

    @property
    def simulator_url(self) -> str:
        return self._url("simulator")

    @property
    def exporter_url(self) -> str:
        return self._url("exporter")

    @property
    def prometheus_url(self) -> str:
        return self._url("prometheus")

    @property
    def alertmanager_url(self) -> str:
        return self._url("alertmanager")

    @property
    def proxy_url(self) -> str:
        return self._url("proxy-standin")

    @property
    def generator_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.generator_metrics_port}/metrics"

    def urls(self) -> dict[str, str]:
        """What a person can open while the demo runs."""
        return {
            "Prometheus": f"{self.prometheus_url}/alerts",
            "Alertmanager": self.alertmanager_url,
            "Exporter": self.exporter_url,
            "Simulator profiles": f"{self.simulator_url}/-/profiles",
            "Generator metrics": self.generator_metrics_url,
            "Proxy stand-in config": f"{self.proxy_url}/v0/management/config",
            "Received alerts": self.receiver.url,
            "Proxy config (written)": str(self.config_path),
        }

    # ------------------------------------------------------------------ story steps

    @property
    def window(self) -> str:
        return self.config.performance.window

    def query(self, query: str) -> list[dict[str, Any]]:
        return _prometheus_query(self.prometheus_url, query)

    def ranked_models(self, scenario: str = "default") -> set[Route]:
        """Models with a score and at least min_test_count samples in the window."""
        window = self.window
        minimum = self.config.performance.min_test_count
        scored = {
            Route(s["metric"]["provider"], s["metric"]["model"])
            for s in self.query(
                f'provider_model:llm_performance_score:ratio_{window}{{scenario="{scenario}"}}'
            )
        }
        sampled = {
            Route(s["metric"]["provider"], s["metric"]["model"])
            for s in self.query(f"provider_model:llm_requests:increase_{window} >= {minimum}")
        }
        return scored & sampled

    def wait_for_rankings(
        self, timeout: float = 120.0, scenario: str = "default", progress: Log = quiet
    ) -> set[Route]:
        """Until every probed model is ranked (scored, enough samples); returns them.

        All models, not only the scenario's candidates: the table printed next, and the
        dashboards tested against this Prometheus, should have every row filled.
        """
        wanted = {Route(t.provider, t.model) for t in self.config.performance.targets}

        def ready() -> set[Route] | None:
            ranked = self.ranked_models(scenario)
            return ranked if wanted <= ranked else None

        def status() -> str:
            return f"{len(self.ranked_models(scenario) & wanted)}/{len(wanted)} models ranked"

        return self._wait(ready, timeout, "every model to be ranked", status, progress)

    def candidates(self, scenario: str = "default") -> list[Route]:
        own = self.config.performance.scenarios.get(scenario)
        if own and own.candidates:
            return list(own.candidates)
        return read_chain(self.original_config_path, scenario)

    def ranking_table(self, scenario: str = "default") -> str:
        """`perfgen query` output for the scenario, exactly as a user would see it."""
        return run_perfgen(
            [
                "query",
                "--prometheus",
                self.prometheus_url,
                "--config",
                str(self.config_path),
                "--scenario",
                scenario,
            ],
            cwd=self.workdir,
        )

    def wait_for_primary_to_lead(
        self, timeout: float = 60.0, scenario: str = "default", progress: Log = quiet
    ) -> str:
        """Until the generator's primary is the model `perfgen query` ranks first; returns
        that table. Right after every model is ranked the generator may still hold an
        earlier pick (one ranked before the leader had its samples) for its hold time."""
        seen: dict[str, str] = {}

        def ready() -> str | None:
            table = seen["table"] = self.ranking_table(scenario)
            return table if _first_ranked(table) == self.primary(scenario) else None

        def status() -> str:
            leader = _first_ranked(seen.get("table", ""))
            return f"primary {self.primary(scenario)}, ranked first {leader}"

        return self._wait(
            ready, timeout, "the primary to be the best-ranked model", status, progress
        )

    def primary(self, scenario: str = "default") -> Route:
        chain = read_chain(self.config_path, scenario)
        if not chain:
            raise RuntimeError(f"[router] {scenario} is empty in {self.config_path}")
        return chain[0]

    def degrade(self, route: Route, changes: Mapping[str, Any] = DEGRADATION) -> dict[str, Any]:
        """PATCH the simulator's profile of `route`; returns the profile now in force."""
        return patch_profile(self.simulator_url, route, changes)

    def degrade_primary(self, scenario: str = "default") -> Route:
        route = self.primary(scenario)
        self.degrade(route)
        return route

    def wait_for_alert(self, route: Route, timeout: float = 150.0, progress: Log = quiet) -> Alert:
        """The first firing degradation alert about `route` at the webhook receiver."""

        def arrived() -> Alert | None:
            return self.receiver.wait_for_alert(
                lambda alert: alert.get("labels", {}).get("alertname") in DEGRADATION_ALERTS,
                provider=route.provider,
                model=route.model,
                timeout=0,
            )

        def status() -> str:
            pending = [
                s["metric"].get("alertname", "?")
                for s in self.query(f'ALERTS{{provider="{route.provider}",model="{route.model}"}}')
            ]
            return (
                "alerts pending/firing in Prometheus: " + ", ".join(sorted(set(pending)))
                if pending
                else "no alert on it in Prometheus yet"
            )

        return self._wait(
            arrived, timeout, f"an alert about {route} at the receiver", status, progress
        )

    def wait_for_demotion(
        self,
        route: Route,
        scenario: str = "default",
        timeout: float = 150.0,
        progress: Log = quiet,
    ) -> list[Route]:
        """Until the written config's `scenario` chain no longer starts with `route`."""

        def demoted() -> list[Route] | None:
            chain = read_chain(self.config_path, scenario)
            return chain if chain and chain[0] != route else None

        def status() -> str:
            chain = "|".join(str(r) for r in read_chain(self.config_path, scenario))
            return f"[router] {scenario} = {chain}"

        return self._wait(demoted, timeout, f"the generator to demote {route}", status, progress)

    def live_routes(self) -> dict[str, Any]:
        """The router routes the proxy (stand-in) reports it runs with."""
        return dict(self._management_config().get("router") or {})

    def _management_config(self) -> dict[str, Any]:
        # Sent as written: the proxy never expands $NAME in secret_key.
        secret = str(self.config_document.get("management", {}).get("secret_key", ""))
        request = urllib.request.Request(
            f"{self.proxy_url}/v0/management/config", headers={"X-Management-Key": secret}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return dict(json.loads(response.read()))
        except OSError:
            return {}  # restarting: no answer for a moment

    def wait_for_applied(
        self, scenario: str = "default", timeout: float = 60.0, progress: Log = quiet
    ) -> str:
        """Until the proxy reports the written `scenario` chain as the one it runs."""
        written = tomllib.loads(self.config_path.read_text(encoding="utf-8"))["router"]

        def applied() -> str | None:
            live = self.live_routes().get(scenario)
            return str(live) if live == written.get(scenario) else None

        def status() -> str:
            return f"the proxy runs {scenario} = {self.live_routes().get(scenario)}"

        return self._wait(applied, timeout, "the proxy to run the new routes", status, progress)

    def request_through_proxy(self, scenario_model: str = "demo-client") -> dict[str, Any]:
        """One client request through the proxy; who served it, by the simulator's record.

        The client model must not contain "haiku" (that is the background scenario). The
        wire format follows the new primary's, as the stand-in does not translate.
        """
        primary = self.primary("default")
        anthropic = infer_protocol(primary.provider) == "anthropic"
        path = "/v1/messages" if anthropic else "/v1/chat/completions"
        body = {
            "model": scenario_model,
            "max_tokens": 16,
            "stream": False,
            "messages": [{"role": "user", "content": "Which model answers?"}],
        }
        key = str(self.config_document["proxy"]["api_key"])
        request = urllib.request.Request(
            self.proxy_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "x-api-key": key,
                "Authorization": f"Bearer {key}",
            },
        )
        # The exporter keeps probing meanwhile, so the newest record need not be ours. Ours
        # is the one non-streaming request received after this moment: probes always
        # stream, and the simulator's `received` is CLOCK_MONOTONIC, as is ours.
        sent = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            route = response.headers.get("x-standin-route", "")
            json.loads(response.read())
        status, raw = http_get(f"{self.simulator_url}/-/requests?limit=200")
        records = json.loads(raw).get("requests", []) if status == 200 else []
        ours = [r for r in records if not r.get("stream") and r.get("received", 0) >= sent]
        record = ours[-1] if ours else {}
        return {
            "path": path,
            "route": route,
            "provider": record.get("provider"),
            "model": record.get("model"),
        }

    @property
    def config_document(self) -> dict[str, Any]:
        return tomllib.loads(self.config_path.read_text(encoding="utf-8"))


def run_perfgen(args: list[str], cwd: Path | None = None, timeout: float = 60.0) -> str:
    """Run one perfgen command to completion with this interpreter; its stdout."""
    result = subprocess.run(
        perfgen_command(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=perfgen_env(),
        cwd=cwd,
    )
    if result.returncode != 0:
        raise ProcessFailed(
            f"perfgen {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


# --------------------------------------------------------------------------- the story


def describe_alert(alert: Alert) -> str:
    """One line per alert: `FIRING PerfgenLatencyHigh fastcloud/swift-chat (warning): ...`."""
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    if "model" in labels:
        who = "/".join(labels[k] for k in ("provider", "model") if k in labels)
    else:  # generator and exporter alerts are about a scenario or an instance
        who = labels.get("scenario") or labels.get("instance") or labels.get("job") or ""
    state = str(alert.get("status", "firing")).upper()
    parts = [state, labels.get("alertname", "?"), who, f"({labels.get('severity', '?')})"]
    text = " ".join(part for part in parts if part)
    summary = annotations.get("summary", "")
    return f"{text}: {summary}" if summary else text


class AlertFeed:
    """Hands out each alert the receiver got exactly once, for narration."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.seen = 0

    def new(self) -> list[Alert]:
        alerts = self.receiver.alerts(status=None)
        fresh, self.seen = alerts[self.seen :], len(alerts)
        return fresh


@dataclass
class StoryResult:
    table: str
    degraded: Route
    alert: Alert
    chain_before: list[Route]
    chain_after: list[Route]
    diff: str
    seconds: dict[str, float] = field(default_factory=dict)
    # The request sent through the proxy after the restart: path, the stand-in's route,
    # and provider/model as the simulator recorded them.
    served: dict[str, Any] = field(default_factory=dict)


def run_story(
    stack: DemoStack,
    *,
    say: Log = quiet,
    progress: Log = quiet,
    time_left: Callable[[], float] = lambda: float("inf"),
) -> StoryResult:
    """Rankings, a degraded primary, its alert, its demotion, the proxy serving the new
    primary after a restart; raises StoryTimeout if stuck.

    Each stage gets a generous timeout (the whole story usually takes about 75 s)
    capped by `time_left()`, the demo's --duration.
    """
    seconds: dict[str, float] = {}
    started = time.monotonic()
    window = stack.window
    say(
        f"Step 1/5: probing every model; a model is ranked once it has "
        f"{stack.config.performance.min_test_count} samples in the {window} window."
    )
    stack.wait_for_rankings(timeout=min(150.0, time_left()), progress=progress)
    table = stack.wait_for_primary_to_lead(timeout=min(60.0, time_left()), progress=progress)
    seconds["rankings"] = time.monotonic() - started
    say("Rankings (perfgen query --scenario default):\n" + indent(table))

    before_text = stack.config_path.read_text(encoding="utf-8")
    chain_before = read_chain(stack.config_path)
    degraded = chain_before[0]
    say(
        f"Step 2/5: degrading the primary of [router] default, {degraded}: "
        f"PATCH /-/profiles/{degraded.provider}/{degraded.model} "
        f"{json.dumps(DEGRADATION, separators=(',', ':'))}"
    )
    stack.degrade(degraded)
    degraded_at = time.monotonic()
    degraded_wall = time.time()

    say(f"Step 3/5: waiting for Prometheus to alert on {degraded} through Alertmanager.")
    alert = stack.wait_for_alert(degraded, timeout=min(180.0, time_left()), progress=progress)
    seconds["alert"] = time.monotonic() - degraded_at
    say(
        f"{alert['labels']['alertname']} about {degraded} reached the pager "
        f"{seconds['alert']:.0f}s after the degradation."
    )

    say(
        f"Step 4/5: checking that perfgen generate (every {stack.generator_every}) demoted "
        f"{degraded} in {stack.config_path.name}."
    )
    chain_after = stack.wait_for_demotion(
        degraded, timeout=min(180.0, time_left()), progress=progress
    )
    # The generator may well have acted before the page arrived: the write time of the
    # file (replaced atomically on each change) says when.
    seconds["demotion"] = max(0.0, stack.config_path.stat().st_mtime - degraded_wall)
    after_text = stack.config_path.read_text(encoding="utf-8")
    diff = router_diff(before_text, after_text, stack.config_path.name)
    say(
        f"The generator demoted it {seconds['demotion']:.0f}s after the degradation; "
        f"{stack.config_path.name} changed:\n" + indent(diff)
    )
    promoted = chain_after[0]
    say(
        f"Step 5/5: perfgen generate --apply restart restarts the proxy stand-in and checks "
        f"GET /v0/management/config; then a request through it should reach {promoted}."
    )
    stack.wait_for_applied(timeout=min(60.0, time_left()), progress=progress)
    served = stack.request_through_proxy()
    seconds["applied"] = time.monotonic() - started
    say(
        f"POST {served['path']} through the proxy stand-in was routed to {served['route']}; "
        f"the simulator recorded it for {served['provider']}/{served['model']}."
    )
    seconds["total"] = time.monotonic() - started
    return StoryResult(table, degraded, alert, chain_before, chain_after, diff, seconds, served)
