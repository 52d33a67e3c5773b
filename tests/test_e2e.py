"""End to end: the demo's story, asserted (simulator → exporter → Prometheus → Alertmanager
→ receiver, and Prometheus → generator → the proxy config it writes).

Uses the session's `demo_stack` (tests/conftest.py); about 75 s, start-up included.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from perfgen.config import load_config
from perfgen.generator.proxy_schema import validate_text
from perfgen.generator.proxy_toml import only_routes_changed
from perfgen.stack.demo import DEGRADATION_ALERTS, DemoStack, StoryResult, read_chain, run_story
from perfgen.stack.processes import (
    find_binary,
    free_port,
    http_get,
    perfgen_command,
    perfgen_env,
    start_perfgen,
)
from perfgen.stack.proxy_standin import start_standin

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def story(demo_stack: DemoStack) -> StoryResult:
    started = time.monotonic()
    result = run_story(demo_stack, say=print, progress=print)
    # Under five minutes including start-up is the budget for the whole e2e run.
    assert time.monotonic() - started < 240, result.seconds
    return result


def test_rankings_cover_every_default_candidate(demo_stack: DemoStack, story: StoryResult) -> None:
    for route in demo_stack.candidates("default"):
        assert route.model in story.table, f"{route} missing from:\n{story.table}"
    # The degraded model was the best before the incident: first data row of the table.
    first_row = story.table.splitlines()[2].split()
    assert first_row[1:3] == [story.degraded.provider, story.degraded.model], story.table


def test_degradation_alert_reached_the_receiver_with_its_labels(story: StoryResult) -> None:
    labels = story.alert["labels"]
    assert labels["alertname"] in DEGRADATION_ALERTS
    assert labels["provider"] == story.degraded.provider
    assert labels["model"] == story.degraded.model
    assert labels["severity"] in ("warning", "critical", "page", "ticket")
    assert story.alert["status"] == "firing"
    annotations = story.alert["annotations"]
    assert annotations.get("summary") and annotations.get("description")
    assert annotations.get("runbook_url")


def test_generator_demoted_the_degraded_model(demo_stack: DemoStack, story: StoryResult) -> None:
    assert story.chain_before[0] == story.degraded
    assert story.chain_after[0] != story.degraded
    assert read_chain(demo_stack.config_path)[0] != story.degraded
    removed = [line for line in story.diff.splitlines() if line.startswith("-default")]
    added = [line for line in story.diff.splitlines() if line.startswith("+default")]
    assert removed and f'"{story.degraded}' in removed[0], story.diff
    assert added and f'"{story.degraded}' not in added[0], story.diff


def test_written_config_is_valid_and_only_routes_changed(
    demo_stack: DemoStack, story: StoryResult
) -> None:
    written = demo_stack.config_path.read_text(encoding="utf-8")
    original = demo_stack.original_config_path.read_text(encoding="utf-8")
    assert validate_text(written) == []
    assert only_routes_changed(original, written) == []
    load_config(demo_stack.config_path)  # the exporter still accepts it


def test_generator_reports_the_change_in_its_metrics(
    demo_stack: DemoStack, story: StoryResult
) -> None:
    status, body = http_get(demo_stack.generator_metrics_url)
    assert status == 200
    text = body.decode()
    assert 'perfgen_generator_route_changes_total{scenario="default"}' in text
    primary_lines = [
        line
        for line in text.splitlines()
        if line.startswith("perfgen_generator_primary_info{")
        and 'scenario="default"' in line
        and line.endswith(" 1.0")
    ]
    assert primary_lines, text
    assert all(f'model="{story.degraded.model}"' not in line for line in primary_lines)


def test_every_process_is_still_up(demo_stack: DemoStack, story: StoryResult) -> None:
    demo_stack.check_alive()
    assert set(demo_stack.processes) == {
        "simulator",
        "exporter",
        "alertmanager",
        "prometheus",
        "proxy-standin",
        "generator",
    }


def test_the_stack_prometheus_config_passes_promtool(demo_stack: DemoStack) -> None:
    """The rendered prometheus.yml with the rules rendered from the demo's [performance]."""
    prometheus = demo_stack.processes["prometheus"]
    assert prometheus.config_path is not None
    result = subprocess.run(
        [find_binary("promtool"), "check", "config", str(prometheus.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in demo_stack.rule_files:
        assert "SUCCESS" in result.stdout and name.rsplit("/", 1)[-1] in result.stdout


def test_the_restarted_proxy_serves_the_new_primary(
    demo_stack: DemoStack, story: StoryResult
) -> None:
    promoted = story.chain_after[0]
    assert story.served["route"] == str(promoted)
    # Ground truth: the simulator's own record of the request the stand-in forwarded.
    assert (story.served["provider"], story.served["model"]) == (
        promoted.provider,
        promoted.model,
    )
    assert demo_stack.live_routes()["default"] == "|".join(map(str, story.chain_after))
    status, body = http_get(demo_stack.generator_metrics_url)
    text = body.decode()
    assert "perfgen_generator_routes_applied 1.0" in text
    restarts = [
        line
        for line in text.splitlines()
        if line.startswith("perfgen_generator_proxy_restarts_total ")
    ]
    assert restarts and float(restarts[0].split()[1]) >= 1, text


def _failed_apply_setup(demo_stack: DemoStack, tmp_path: Path) -> tuple[Path, Path]:
    """A proxy (stand-in) running the pre-incident routes, and a copy for generate."""
    running = tmp_path / "running.toml"
    running.write_text(demo_stack.original_config_path.read_text(encoding="utf-8"))
    written = tmp_path / "config.toml"
    written.write_text(running.read_text())
    return running, written


def test_a_failing_restart_command_is_exit_1_and_a_metric(
    demo_stack: DemoStack, story: StoryResult, tmp_path: Path
) -> None:
    running, written = _failed_apply_setup(demo_stack, tmp_path)
    with start_standin(running, tmp_path / "proxy") as proxy:
        common = [
            "generate",
            "--config",
            str(written),
            "--prometheus",
            demo_stack.prometheus_url,
            "--apply",
            "restart",
            "--restart-command",
            "false",
            "--proxy-url",
            proxy.url or "",
            "--apply-timeout",
            "5",
            "-q",
        ]
        done = subprocess.run(
            perfgen_command(common), capture_output=True, text=True, timeout=60, env=perfgen_env()
        )
        assert done.returncode == 1, done.stderr
        assert "restart command false exited 1" in done.stderr
        # The routes were demoted in the file, but the proxy still runs the old ones.
        assert read_chain(written)[0] != story.degraded
        # --every: the same failure as a metric the alert reads.
        written.write_text(running.read_text())
        port = free_port()
        generator = start_perfgen(
            [*common, "--every", "2s", "--metrics-listen", f"127.0.0.1:{port}"],
            "generator listening on",
            tmp_path / "generator",
        )
        try:
            deadline = time.monotonic() + 30
            failures = 0.0
            while time.monotonic() < deadline and not failures:
                _, body = http_get(f"http://127.0.0.1:{port}/metrics")
                for line in body.decode().splitlines():
                    if line.startswith('perfgen_generator_apply_failures_total{reason="command"}'):
                        failures = float(line.split()[1])
                time.sleep(0.5)
            assert failures >= 1
            assert "perfgen_generator_routes_applied 0.0" in body.decode()
        finally:
            generator.stop()


def test_a_proxy_back_with_the_old_routes_is_exit_1(
    demo_stack: DemoStack, story: StoryResult, tmp_path: Path
) -> None:
    # The proxy loads running.toml; perfgen writes config.toml: a restart brings the
    # proxy back with the routes it had.
    running, written = _failed_apply_setup(demo_stack, tmp_path)
    with start_standin(running, tmp_path / "proxy") as proxy:
        done = subprocess.run(
            perfgen_command(
                [
                    "generate",
                    "--config",
                    str(written),
                    "--prometheus",
                    demo_stack.prometheus_url,
                    "--apply",
                    "restart",
                    "--restart-command",
                    f"kill -HUP {proxy.pid}",
                    "--proxy-url",
                    proxy.url or "",
                    "--apply-timeout",
                    "8",  # the re-executed stand-in is back in about 1 s
                    "-q",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=60,
            env=perfgen_env(),
        )
        assert done.returncode == 1, done.stderr
        assert "the proxy came back with other routes than the file's" in done.stderr
        old = "|".join(map(str, read_chain(running)))
        assert f"router.default: live '{old}'" in done.stderr
        assert proxy.alive()
