"""stack/demo.py and `perfgen demo` without the long story: configs, helpers, failures."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfgen.config import Route, load_config
from perfgen.generator.proxy_schema import validate_text
from perfgen.simulator.config import load_simulator_config
from perfgen.stack import processes
from perfgen.stack.demo import (
    DEMO_PROXY_CONFIG,
    DEMO_SIMULATOR_CONFIG,
    SIMULATOR_PLACEHOLDER,
    AlertFeed,
    DemoStack,
    describe_alert,
    point_at_simulator,
    read_chain,
    router_diff,
)
from perfgen.stack.demo_cli import demo
from perfgen.stack.processes import INSTALL_HINT, perfgen_command, perfgen_env
from perfgen.stack.webhook import WebhookReceiver


def test_demo_configs_load_and_agree() -> None:
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    config = load_config(DEMO_PROXY_CONFIG)
    assert validate_text(DEMO_PROXY_CONFIG.read_text(encoding="utf-8")) == []
    simulated = {(p.name, m.name) for p in simulator.providers for m in p.models}
    configured = {(t.provider, t.model) for t in config.performance.targets}
    assert configured == simulated
    assert len(simulator.providers) >= 3 and len(simulated) >= 6
    profiles = {m.name: m.profile for p in simulator.providers for m in p.models}
    assert any(p.reasoning_tokens > 0 for p in profiles.values())
    assert any(p.error_rate > 0 for p in profiles.values())
    # Each provider's protocol is the one the proxy infers from its name.
    for provider in simulator.providers:
        assert config.providers[provider.name].protocol == provider.protocol
        assert config.providers[provider.name].api_key.reveal() == provider.api_key


def test_demo_default_primary_is_the_best_profile() -> None:
    """The story degrades the default primary; it must start as the clear favourite."""
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    profiles = {(p.name, m.name): m.profile for p in simulator.providers for m in p.models}
    chain = read_chain(DEMO_PROXY_CONFIG)
    first = chain[0]
    best = profiles[(first.provider, first.model)]
    assert len(chain) >= 3
    for route in chain[1:]:
        other = profiles[(route.provider, route.model)]
        assert best.ttft_ms < other.ttft_ms
        assert best.tokens_per_second >= other.tokens_per_second or other.error_rate > 0


def test_demo_probes_fit_the_scrape_timeout() -> None:
    """Every probe must finish inside the 5 s scrape (minus the exporter's offset)."""
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    config = load_config(DEMO_PROXY_CONFIG)
    for provider in simulator.providers:
        for model in provider.models:
            p = model.profile
            for module in config.performance.sd_modules:
                tokens = min(p.output_tokens, config.performance.modules[module].max_tokens)
                seconds = (
                    p.ttft_ms / 1000 * (1 + p.ttft_sigma)
                    + (tokens + p.reasoning_tokens) / p.tokens_per_second
                )
                assert seconds < 4.0, (provider.name, model.name, module, seconds)


def test_point_at_simulator_moves_only_placeholder_urls() -> None:
    text = DEMO_PROXY_CONFIG.read_text(encoding="utf-8")
    moved = point_at_simulator(text, "http://127.0.0.1:12345/")
    assert SIMULATOR_PLACEHOLDER not in moved
    urls = [p["api_base_url"] for p in tomllib.loads(moved)["providers"]]
    assert urls == [
        "http://127.0.0.1:12345/fastcloud/v1",
        "http://127.0.0.1:12345/anthropic",
        "http://127.0.0.1:12345/budgetcloud/v1",
    ]
    # Comments and everything else survive (tomlkit round trip).
    assert moved.replace("127.0.0.1:12345", "127.0.0.1:8700") == text


def test_read_chain_and_router_diff(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[router]\ndefault = "a,x|b,y"\n')
    assert read_chain(path) == [Route("a", "x"), Route("b", "y")]
    assert read_chain(path, "think") == []
    diff = router_diff(path.read_text(), '[router]\ndefault = "b,y|a,x"\n', "config.toml")
    assert '-default = "a,x|b,y"' in diff and '+default = "b,y|a,x"' in diff


def test_describe_alert_and_feed() -> None:
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "PerfgenLatencyHigh",
            "provider": "p",
            "model": "m",
            "severity": "warning",
        },
        "annotations": {"summary": "slow"},
    }
    assert describe_alert(alert) == "FIRING PerfgenLatencyHigh p/m (warning): slow"
    receiver = WebhookReceiver()
    feed = AlertFeed(receiver)
    receiver._record({"alerts": [alert]})
    assert feed.new() == [alert]
    assert feed.new() == []
    receiver.stop()


def test_stop_before_start_is_harmless(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path)
    stack.stop()
    stack.stop()


def test_demo_without_binaries_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(processes, "_EXTRA_DIRS", ())
    monkeypatch.delenv("PERFGEN_PROMETHEUS_BINARY", raising=False)
    result = CliRunner().invoke(demo, ["--workdir", str(tmp_path / "w"), "--quiet"])
    assert result.exit_code == 1
    assert INSTALL_HINT in result.output
    assert not (tmp_path / "w").exists()  # nothing was started


def test_demo_duration_has_a_floor() -> None:
    result = CliRunner().invoke(demo, ["--duration", "5"])
    assert result.exit_code == 2
    assert "--duration" in result.output


# --------------------------------------------------------------------------- perfgen demo
# The command itself, as a user runs it: a child process started the way the stack starts
# every perfgen command, stopped by Ctrl-C or by --duration. A few seconds each, plus
# start-up; the story proper is asserted by tests/test_e2e.py.

# `[0:01] started exporter listening on http://127.0.0.1:46225`, ... (the webhook
# receiver's line names its port too).
_STARTED = re.compile(r"^\[\d+:\d\d\] started .*?http://127\.0\.0\.1:(\d+)")


class DemoCommand:
    """`perfgen demo ARGS` in a child process, its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            perfgen_command(["demo", *args]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=perfgen_env(),
            cwd=cwd,
            # Started from a shell without job control, a child inherits an ignored
            # SIGINT; this test is about what Ctrl-C does, so give it the default.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"perfgen demo printed no line with {needle!r}:\n{self.output}")

    def finish(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"perfgen demo still running after {timeout:g}s:\n{self.output}")
        self._reader.join(timeout=5)
        return code

    def ports(self) -> set[int]:
        return {int(m.group(1)) for line in self.lines if (m := _STARTED.match(line))}

    def kill(self) -> None:
        """After a failed test: stop it (SIGTERM cleans up like Ctrl-C), then for sure."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def run_demo(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., DemoCommand]]:
    started: list[DemoCommand] = []

    def run(*args: str) -> DemoCommand:
        command = DemoCommand(list(args), cwd=tmp_path)
        started.append(command)
        return command

    yield run
    for command in started:
        command.kill()


def _listening_ports() -> set[int]:
    """TCP ports something on this machine listens on, from /proc (no psutil)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _processes_under(directory: Path) -> list[str]:
    """`pid: command line` of every process running in, or naming, `directory`.

    Every process the demo starts either runs there (the perfgen ones) or has its work
    directory on its command line (Prometheus, Alertmanager).
    """
    root = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if root in cmdline or cwd == root or cwd.startswith(root + os.sep):
            found.append(f"{entry.name}: {cmdline}")
    return found


def _assert_everything_stopped(command: DemoCommand, directory: Path) -> None:
    ports = command.ports()
    # The webhook receiver, simulator, exporter, Alertmanager, Prometheus, proxy
    # stand-in, generator.
    assert len(ports) == 7, command.output
    assert not ports & _listening_ports(), command.output
    assert _processes_under(directory) == [], command.output


@pytest.mark.e2e
@pytest.mark.integration
def test_demo_ctrl_c_stops_every_process(
    run_demo: Callable[..., DemoCommand], tmp_path: Path
) -> None:
    workdir = tmp_path / "demo"
    command = run_demo("--workdir", str(workdir))
    command.wait_for_line("Step 1/5:", timeout=60)
    command.popen.send_signal(signal.SIGINT)
    code = command.finish(timeout=40)
    output = command.output
    assert code == 130, output  # Ctrl-C before the story finished
    assert "interrupted; stopping everything" in output
    assert f"logs, configs and data kept in {workdir}" in output
    assert command.lines[-1].endswith("] stopped"), output
    assert "Traceback" not in output
    _assert_everything_stopped(command, tmp_path)
    assert (workdir / "prometheus" / "prometheus.log").is_file()


@pytest.mark.e2e
@pytest.mark.integration
def test_demo_duration_runs_out_cleanly(
    run_demo: Callable[..., DemoCommand], tmp_path: Path
) -> None:
    """The shortest --duration ends the story in step 1: exit 1, everything stopped."""
    workdir = tmp_path / "demo"
    command = run_demo("--workdir", str(workdir), "--duration", "10")
    code = command.finish(timeout=60)
    output = command.output
    assert code == 1, output
    assert "error: --duration 10s ran out before the story finished" in output
    assert "gave up waiting for every model to be ranked" in output
    assert f"logs, configs and data kept in {workdir}" in output
    assert command.lines[-1].endswith("] stopped"), output
    assert "Traceback" not in output
    _assert_everything_stopped(command, tmp_path)
