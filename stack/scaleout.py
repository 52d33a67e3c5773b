"""perfgen beyond one Prometheus, on this machine: regions, remote write, vmalert.

`ScaleOutStack` starts, on free loopback ports in one work directory (docs/scale-out.md):

    per region (east, west):  simulator (its own latencies) -> exporter
                              -> Prometheus in agent mode, every series labelled region=NAME
                              -- remote write --> VictoriaMetrics (single node)
    shared:                   vmalert evaluates the committed rule templates' rendering
                              against VictoriaMetrics, writes the recorded series back by
                              remote write, sends alerts to Alertmanager -> webhook receiver
    per region:               perfgen generate --region NAME --prometheus VictoriaMetrics,
                              rewriting that region's copy of the proxy config

The story (`run_scaleout_story`, narrated by `perfgen demo --scale-out`, asserted by
tests/test_scaleout.py): both regions are ranked, each region gets its own primary, the
primary of one region is degraded, the alert naming that region reaches the receiver,
and that region's generator demotes it while the other region's routes stay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from perfgen.config import Config, Route, load_config
from perfgen.stack.demo import (
    DEGRADATION_ALERTS,
    GENERATOR_READY_PREFIX,
    _prometheus_query,
    patch_profile,
    point_at_simulator,
    read_chain,
    run_perfgen,
)
from perfgen.stack.processes import (
    ManagedProcess,
    free_port,
    start_alertmanager,
    start_perfgen,
    start_prometheus_agent,
    start_victoriametrics,
    start_vmalert,
)
from perfgen.stack.prometheus_config import render_alertmanager_config, render_prometheus_config
from perfgen.stack.running import Log, RunningStack, indent, quiet
from perfgen.stack.webhook import Alert

HERE = Path(__file__).resolve().parent
SCALEOUT_PROXY_CONFIG = HERE / "scaleout-proxy.toml"
REGIONS = ("east", "west")
# Each region's simulated providers: the same models, their latencies swapped.
SIMULATOR_CONFIGS = {region: HERE / f"scaleout-{region}.toml" for region in REGIONS}


# The incident in one region: first tokens three times past the 800 ms threshold, and
# no errors. With one probe per model and round (the latency module only), a failed
# probe, which has no TTFT, would reset PerfgenLatencyHigh's `for:` clock every time;
# the single-Prometheus demo's 10 % errors could keep the page away for minutes here.
DEGRADATION: dict[str, Any] = {"ttft_ms": 2500.0, "ttft_sigma": 0.1}


@dataclass
class ScaleOutStack(RunningStack):
    """Every process of the distributed path; `start()`, then `stop()` (idempotent)."""

    regions: tuple[str, ...] = REGIONS
    proxy_config: Path = SCALEOUT_PROXY_CONFIG
    scrape_interval: str = "5s"
    evaluation_interval: str = "5s"
    generator_every: str = "5s"
    binaries: ClassVar[tuple[str, ...]] = (
        "prometheus",
        "alertmanager",
        "victoria-metrics",
        "vmalert",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.config: Config = load_config(self.proxy_config)

    # ------------------------------------------------------------------ lifecycle

    def _start_all(self) -> None:
        from perfgen.rules.render import render_rules

        self.receiver.start()
        self.log(f"webhook receiver (stands in for the pager) on {self.receiver.url}")
        # Fresh reads: vmalert and the generator see a sample as soon as it is written
        # (the generator alone would also cope with the defaults, tests/test_generator_
        # integration.py; the rules would just run 30 s behind).
        self._add("victoria-metrics", start_victoriametrics(self.workdir / "victoria-metrics"))
        alertmanager_config = render_alertmanager_config(
            self.receiver.url,
            group_wait="1s",
            group_interval="5s",
            repeat_interval="1h",
            group_by=("alertname", "provider", "model", "region"),
        )
        self._add(
            "alertmanager",
            start_alertmanager(self.workdir / "alertmanager", alertmanager_config),
        )
        self.rule_files = {
            f"rules/{name}": text for name, text in render_rules(self.config.performance).items()
        }
        self._add(
            "vmalert",
            start_vmalert(
                self.workdir / "vmalert",
                self.rule_files,
                datasource_url=self.victoriametrics_url,
                remote_write_url=self.victoriametrics_url,
                notifier_url=self.alertmanager_url,
                evaluation_interval=self.evaluation_interval,
                # Alertmanager hears of a firing alert at once and again every 5 s, as
                # the single-Prometheus demo's --rules.alert.resend-delay=5s.
                extra_args=["-rule.resendDelay=5s"],
            ),
        )
        for region in self.regions:
            self._start_region(region)

    def _start_region(self, region: str) -> None:
        root = self.workdir / region
        root.mkdir(parents=True, exist_ok=True)
        simulator = self._perfgen(
            region,
            "simulator",
            [
                "simulate",
                "--config",
                str(SIMULATOR_CONFIGS[region]),
                "--listen",
                "127.0.0.1:0",
            ],
            "simulator listening on",
        )
        text = point_at_simulator(
            self.proxy_config.read_text(encoding="utf-8"), simulator.url or ""
        )
        self.config_path(region).write_text(text, encoding="utf-8")
        (root / "config.original.toml").write_text(text, encoding="utf-8")
        exporter = self._perfgen(
            region,
            "exporter",
            ["exporter", "--config", str(self.config_path(region)), "--listen", "127.0.0.1:0"],
            "exporter listening on",
        )
        generator_port = free_port()
        agent_config = render_prometheus_config(
            exporter.url or "",
            scrape_interval=self.scrape_interval,
            sd_refresh_interval=self.scrape_interval,
            generator=f"127.0.0.1:{generator_port}",
            region=region,
            remote_write=[f"{self.victoriametrics_url}/api/v1/write"],
            # Sent within a second of the scrape, not the default 5 s.
            remote_write_deadline="1s",
        )
        self._add(
            f"{region}/prometheus-agent", start_prometheus_agent(root / "agent", agent_config)
        )
        self.log(f"{region}: prometheus agent on {self.agent_url(region)}")
        self._perfgen(
            region,
            "generator",
            [
                "generate",
                "--config",
                str(self.config_path(region)),
                "--prometheus",
                self.victoriametrics_url,
                "--region",
                region,
                "--every",
                self.generator_every,
                "--metrics-listen",
                f"127.0.0.1:{generator_port}",
                "--quiet",
            ],
            GENERATOR_READY_PREFIX,
        )

    def _add(self, name: str, process: ManagedProcess) -> ManagedProcess:
        self.processes[name] = process
        if "/" not in name:
            self.log(f"{name} listening on {process.url}")
        return process

    def _perfgen(
        self, region: str, name: str, args: list[str], ready_prefix: str
    ) -> ManagedProcess:
        process = start_perfgen(args, ready_prefix, self.workdir / region, name=name)
        self.processes[f"{region}/{name}"] = process
        ready = process.ready_line.split(" ", 1)[1] if process.ready_line else ""
        self.log(f"{region}: {name} {ready}".rstrip())
        return process

    # ------------------------------------------------------------------ addresses

    @property
    def victoriametrics_url(self) -> str:
        return self._url("victoria-metrics")

    @property
    def alertmanager_url(self) -> str:
        return self._url("alertmanager")

    @property
    def vmalert_url(self) -> str:
        return self._url("vmalert")

    def agent_url(self, region: str) -> str:
        return self._url(f"{region}/prometheus-agent")

    def simulator_url(self, region: str) -> str:
        return self._url(f"{region}/simulator")

    def exporter_url(self, region: str) -> str:
        return self._url(f"{region}/exporter")

    def config_path(self, region: str) -> Path:
        """That region's proxy config: its exporter reads it, its generator rewrites it."""
        return self.workdir / region / "config.toml"

    def urls(self) -> dict[str, str]:
        """What a person can open while the demo runs."""
        urls = {
            "VictoriaMetrics": self.victoriametrics_url,
            "vmalert rules": f"{self.vmalert_url}/api/v1/rules",
            "Alertmanager": self.alertmanager_url,
            "Received alerts": self.receiver.url,
        }
        for region in self.regions:
            urls[f"{region}: agent"] = self.agent_url(region)
            urls[f"{region}: simulator profiles"] = f"{self.simulator_url(region)}/-/profiles"
            urls[f"{region}: proxy config"] = str(self.config_path(region))
        return urls

    # ------------------------------------------------------------------ story steps

    def query(self, promql: str) -> list[dict[str, Any]]:
        return _prometheus_query(self.victoriametrics_url, promql)

    def ranked_models(self, region: str) -> set[Route]:
        """Models with a score and enough samples in `region`, as vmalert recorded them."""
        window = self.config.performance.window
        minimum = self.config.performance.min_test_count
        selector = f'region="{region}"'
        scored = {
            Route(s["metric"]["provider"], s["metric"]["model"])
            for s in self.query(
                f'provider_model:llm_performance_score:ratio_{window}{{{selector},scenario="default"}}'
            )
        }
        sampled = {
            Route(s["metric"]["provider"], s["metric"]["model"])
            for s in self.query(
                f"provider_model:llm_requests:increase_{window}{{{selector}}} >= {minimum}"
            )
        }
        return scored & sampled

    def wait_for_rankings(self, timeout: float = 150.0, progress: Log = quiet) -> None:
        """Until every probed model is ranked in every region."""
        wanted = {Route(t.provider, t.model) for t in self.config.performance.targets}

        def status() -> str:
            return ", ".join(
                f"{region} {len(self.ranked_models(region) & wanted)}/{len(wanted)}"
                for region in self.regions
            )

        self._wait(
            lambda: all(wanted <= self.ranked_models(r) for r in self.regions),
            timeout,
            "every model to be ranked in every region",
            status,
            progress,
        )

    def primary(self, region: str) -> Route:
        chain = read_chain(self.config_path(region))
        if not chain:
            raise RuntimeError(f"[router] default is empty in {self.config_path(region)}")
        return chain[0]

    def wait_for_primaries(
        self, expected: Mapping[str, Route], timeout: float = 120.0, progress: Log = quiet
    ) -> dict[str, Route]:
        """Until each region's written config starts its default chain with `expected`."""

        def status() -> str:
            return ", ".join(f"{r} {self.primary(r)}" for r in self.regions)

        self._wait(
            lambda: all(self.primary(r) == route for r, route in expected.items()),
            timeout,
            "each region's primary: " + ", ".join(f"{r} {v}" for r, v in expected.items()),
            status,
            progress,
        )
        return {region: self.primary(region) for region in self.regions}

    def ranking_table(self, region: str) -> str:
        """`perfgen query --region NAME` against VictoriaMetrics, as a user would see it."""
        return run_perfgen(
            [
                "query",
                "--prometheus",
                self.victoriametrics_url,
                "--config",
                str(self.config_path(region)),
                "--region",
                region,
            ],
            cwd=self.workdir,
        )

    def degrade(
        self, region: str, route: Route, changes: Mapping[str, Any] = DEGRADATION
    ) -> dict[str, Any]:
        """PATCH `route`'s profile in `region`'s simulator; the profile now in force."""
        return patch_profile(self.simulator_url(region), route, changes)

    def wait_for_alert(
        self, region: str, route: Route, timeout: float = 150.0, progress: Log = quiet
    ) -> Alert:
        """The first firing degradation alert about `route` in `region` at the receiver."""

        def arrived() -> Alert | None:
            return self.receiver.wait_for_alert(
                lambda alert: alert.get("labels", {}).get("alertname") in DEGRADATION_ALERTS,
                provider=route.provider,
                model=route.model,
                region=region,
                timeout=0,
            )

        def status() -> str:
            found = self.query(
                f'ALERTS{{provider="{route.provider}",model="{route.model}",region="{region}"}}'
            )
            names = sorted({s["metric"].get("alertname", "?") for s in found})
            return "vmalert: " + (", ".join(names) if names else "no alert on it yet")

        result: Alert = self._wait(
            arrived, timeout, f"an alert about {route} in {region}", status, progress
        )
        return result


# --------------------------------------------------------------------------- the story


@dataclass
class ScaleOutResult:
    tables: dict[str, str]
    primaries: dict[str, Route]  # per region, before the degradation
    degraded_region: str
    degraded: Route
    alert: Alert
    primaries_after: dict[str, Route]
    seconds: dict[str, float] = field(default_factory=dict)


# East measures alpha faster, west beta (stack/scaleout-*.toml).
EXPECTED_PRIMARIES = {"east": Route("alpha", "chat"), "west": Route("beta", "chat")}


def run_scaleout_story(
    stack: ScaleOutStack,
    *,
    say: Log = quiet,
    progress: Log = quiet,
    time_left: Callable[[], float] = lambda: float("inf"),
) -> ScaleOutResult:
    """Rankings per region, different primaries, one region degraded, alerted, demoted."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    say(
        "Step 1/4: each region's agent scrapes its own exporter and remote-writes to "
        "VictoriaMetrics; vmalert records the scores there."
    )
    stack.wait_for_rankings(timeout=min(150.0, time_left()), progress=progress)
    seconds["rankings"] = time.monotonic() - started
    tables = {region: stack.ranking_table(region) for region in stack.regions}
    for region, table in tables.items():
        say(f"Rankings in {region} (perfgen query --region {region}):\n" + indent(table))

    say("Step 2/4: each region's generator ranks from its own region's series.")
    expected = {r: EXPECTED_PRIMARIES[r] for r in stack.regions if r in EXPECTED_PRIMARIES}
    primaries = stack.wait_for_primaries(
        expected, timeout=min(120.0, time_left()), progress=progress
    )
    seconds["routes"] = time.monotonic() - started
    say(
        "Different routes per region: "
        + ", ".join(f'{r} default = "{primaries[r]}|..."' for r in stack.regions)
    )

    region = stack.regions[0]
    degraded = primaries[region]
    say(
        f"Step 3/4: degrading {degraded} in {region} only: PATCH /-/profiles/"
        f"{degraded.provider}/{degraded.model} {json.dumps(DEGRADATION, separators=(',', ':'))}"
    )
    stack.degrade(region, degraded)
    degraded_at = time.monotonic()
    alert = stack.wait_for_alert(
        region, degraded, timeout=min(180.0, time_left()), progress=progress
    )
    seconds["alert"] = time.monotonic() - degraded_at
    say(
        f"{alert['labels']['alertname']} reached the pager {seconds['alert']:.0f}s later: "
        f"{alert.get('annotations', {}).get('summary', '')}"
    )

    say(f"Step 4/4: waiting for the {region} generator to demote {degraded}.")
    others = {r: primaries[r] for r in stack.regions if r != region}
    demoted = {region: next(r for r in expected.values() if r != degraded), **others}
    after = stack.wait_for_primaries(demoted, timeout=min(180.0, time_left()), progress=progress)
    seconds["demotion"] = time.monotonic() - degraded_at
    say(
        f"{region} now starts with {after[region]}; "
        + ", ".join(f"{r} keeps {after[r]}" for r in others)
    )
    seconds["total"] = time.monotonic() - started
    return ScaleOutResult(tables, primaries, region, degraded, alert, after, seconds)
