"""stack/: local processes, the rendered Prometheus/Alertmanager configs, the webhook receiver."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import yaml

from perfgen.stack import processes
from perfgen.stack.processes import (
    INSTALL_HINT,
    BinaryMissing,
    ManagedProcess,
    ProcessFailed,
    find_binary,
    free_port,
    http_get,
    start_alertmanager,
    start_perfgen,
    start_prometheus,
)
from perfgen.stack.prometheus_config import (
    host_port,
    render_alertmanager_config,
    render_prometheus_config,
)
from perfgen.stack.webhook import WebhookReceiver

RULES = """
groups:
  - name: stack-test
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: StackTestAlwaysFiring
        expr: vector(1)
        labels: {severity: info}
        annotations: {summary: always}
"""


def _post_json(url: str, payload: object) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- helpers


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_find_binary_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown binary"):
        find_binary("grafana")


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(processes, "_EXTRA_DIRS", ())
    monkeypatch.delenv("PERFGEN_ALERTMANAGER_BINARY", raising=False)
    with pytest.raises(BinaryMissing) as caught:
        find_binary("alertmanager")
    assert INSTALL_HINT in str(caught.value)
    assert "prometheus-alertmanager" in str(caught.value)


def test_missing_victoriametrics_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(processes, "_EXTRA_DIRS", ())
    monkeypatch.delenv("PERFGEN_VICTORIA_METRICS_BINARY", raising=False)
    with pytest.raises(BinaryMissing) as caught:
        find_binary("victoria-metrics")
    assert processes.VICTORIAMETRICS_INSTALL_HINT in str(caught.value)
    assert "PERFGEN_VICTORIA_METRICS_BINARY" in str(caught.value)
    monkeypatch.setenv("PERFGEN_VMALERT_BINARY", sys.executable)
    assert find_binary("vmalert") == sys.executable


def test_binary_override_must_be_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFGEN_PROMTOOL_BINARY", "/nonexistent/promtool")
    with pytest.raises(BinaryMissing, match="PERFGEN_PROMTOOL_BINARY"):
        find_binary("promtool")
    monkeypatch.setenv("PERFGEN_PROMTOOL_BINARY", sys.executable)
    assert find_binary("promtool") == sys.executable


def test_host_port_accepts_urls_and_addresses() -> None:
    assert host_port("http://127.0.0.1:9115/sd") == "127.0.0.1:9115"
    assert host_port("127.0.0.1:9115") == "127.0.0.1:9115"


# --------------------------------------------------------------------------- ManagedProcess


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    # A child that ignores SIGTERM: stop() must not hang on it.
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", code], tmp_path / "s.log")
    process.wait_log_line("ready", timeout=10)
    started = time.monotonic()
    returncode = process.stop(grace=0.5)
    assert returncode == -9
    assert time.monotonic() - started < 5
    assert not process.alive()
    assert process.stop() == -9  # idempotent


def test_wait_log_line_reports_early_exit_with_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('config is broken: key foo'); sys.exit(3)"
    with ManagedProcess("broken", [sys.executable, "-c", code], tmp_path / "b.log") as process:
        with pytest.raises(ProcessFailed, match="(?s)exited with code 3.*key foo"):
            process.wait_log_line("listening", timeout=10)


def test_start_perfgen_waits_for_the_ready_line(tmp_path: Path) -> None:
    process = start_perfgen(["demo", "--help"], "Usage: perfgen demo", tmp_path, name="help")
    try:
        assert process.ready_line is not None and process.ready_line.startswith(
            "Usage: perfgen demo"
        )
        assert process.log_path == tmp_path / "help.log"
    finally:
        process.stop()


def test_start_perfgen_fails_fast_on_a_bad_command(tmp_path: Path) -> None:
    with pytest.raises(ProcessFailed, match="No such command"):
        start_perfgen(["no-such-command"], "never", tmp_path, timeout=20)


# --------------------------------------------------------------------------- Prometheus


@pytest.mark.integration
def test_prometheus_starts_loads_rules_and_stops(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    config = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
    config += "rule_files:\n  - rules/test.rules.yml\n"
    config += "scrape_configs:\n  - job_name: self\n    static_configs:\n"
    with start_prometheus(tmp_path, config, {"rules/test.rules.yml": RULES}) as prometheus:
        assert prometheus.url is not None and prometheus.url.startswith("http://127.0.0.1:")
        port = int(prometheus.url.rsplit(":", 1)[1])
        assert _listening(port)
        status, body = http_get(prometheus.url + "/api/v1/rules")
        assert status == 200
        groups = json.loads(body)["data"]["groups"]
        assert [group["name"] for group in groups] == ["stack-test"]
        assert (tmp_path / "prometheus-data").is_dir()
        prometheus.reload()
    assert not prometheus.alive()
    assert not _listening(port)


@pytest.mark.integration
def test_prometheus_bad_config_raises_with_log_tail(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ProcessFailed, match="(?s)prometheus exited.*no_such_field"):
        start_prometheus(tmp_path, "global:\n  no_such_field: 1\n", timeout=15)


@pytest.mark.integration
def test_rendered_prometheus_config_passes_promtool(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "test.rules.yml").write_text(RULES)
    text = render_prometheus_config(
        "http://127.0.0.1:9115",
        scrape_interval="5s",
        evaluation_interval="5s",
        generator="127.0.0.1:9200",
        alertmanager="http://127.0.0.1:9093",
        rule_files=["rules/*.yml"],
    )
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"llm_probe", "perfgen_exporter", "perfgen_generator"}
    assert jobs["llm_probe"]["http_sd_configs"][0]["url"] == "http://127.0.0.1:9115/sd"
    assert jobs["llm_probe"]["metrics_path"] == "/probe"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    result = subprocess.run(
        [prometheus_binaries["promtool"], "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rules found" in result.stdout


@pytest.mark.integration
def test_agent_config_with_region_shard_and_remote_write_passes_promtool(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    text = render_prometheus_config(
        "127.0.0.1:9115",
        generator="127.0.0.1:9200",
        region="eu-west",
        shard=(1, 3),
        remote_write=["http://127.0.0.1:8428/api/v1/write"],
        remote_write_deadline="1s",
    )
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    region = {"target_label": "region", "replacement": "eu-west"}
    # Every job labels its series with the region, the probe job after its relabelling.
    assert all(job["relabel_configs"][-1] == region for job in jobs.values())
    # The shard is chosen from the /sd target and module, before they are rewritten.
    assert jobs["llm_probe"]["relabel_configs"][:2] == [
        {
            "source_labels": ["__address__", "module"],
            "modulus": 3,
            "target_label": "__tmp_shard",
            "action": "hashmod",
        },
        {"source_labels": ["__tmp_shard"], "regex": "1", "action": "keep"},
    ]
    assert config["remote_write"] == [
        {
            "url": "http://127.0.0.1:8428/api/v1/write",
            "queue_config": {"batch_send_deadline": "1s"},
        }
    ]
    path = tmp_path / "agent.yml"
    path.write_text(text)
    result = subprocess.run(
        [prometheus_binaries["promtool"], "check", "config", "--agent", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Without a region or shard nothing is added: one Prometheus renders as before.
    plain = yaml.safe_load(render_prometheus_config("127.0.0.1:9115"))
    assert "remote_write" not in plain
    assert all("relabel_configs" not in job for job in plain["scrape_configs"][1:]) and not any(
        "region" in json.dumps(job) or "hashmod" in json.dumps(job)
        for job in plain["scrape_configs"]
    )
    with pytest.raises(ValueError, match="shard index 2"):
        render_prometheus_config("127.0.0.1:9115", shard=(2, 2))


@pytest.mark.integration
def test_probe_job_relabels_sd_targets_into_probe_requests(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    """An http_sd target `provider:model` + module label becomes /probe?target=&module=."""
    sd = [{"targets": ["sim:model-a"], "labels": {"module": "latency"}}]

    class SD(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(sd).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SD)
    sd_port = server.server_address[1]
    Thread(target=server.serve_forever, daemon=True).start()
    target = None
    try:
        config = render_prometheus_config(
            f"127.0.0.1:{sd_port}", scrape_interval="1s", sd_refresh_interval="1s"
        )
        with start_prometheus(tmp_path, config) as prometheus:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and target is None:
                _, body = http_get(f"{prometheus.url}/api/v1/targets")
                data = json.loads(body or b"{}").get("data", {})
                for active in data.get("activeTargets", []):
                    if active["labels"].get("job") == "llm_probe":
                        target = active
                time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    assert target is not None, "the probe job found no target from /sd"
    assert target["labels"]["instance"] == "sim:model-a"
    assert "/probe?" in target["scrapeUrl"]
    assert "module=latency" in target["scrapeUrl"]
    assert "target=sim%3Amodel-a" in target["scrapeUrl"]
    assert target["scrapeUrl"].startswith(f"http://127.0.0.1:{sd_port}/probe")


# --------------------------------------------------------------------------- Alertmanager


@pytest.mark.integration
def test_alertmanager_delivers_to_the_webhook_receiver(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    with WebhookReceiver() as receiver:
        config = render_alertmanager_config(receiver.url, group_wait="0s", group_interval="1s")
        result = subprocess.run(
            [prometheus_binaries["amtool"], "check-config", "/dev/stdin"],
            input=config,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with start_alertmanager(tmp_path, config) as alertmanager:
            assert alertmanager.url is not None
            alert = {
                "labels": {
                    "alertname": "PerfgenTest",
                    "provider": "sim",
                    "model": "m",
                    "severity": "warning",
                },
                "annotations": {"summary": "test alert"},
            }
            assert _post_json(alertmanager.url + "/api/v2/alerts", [alert]) == 200
            got = receiver.wait_for_alert(alertname="PerfgenTest", model="m", timeout=20)
        assert not alertmanager.alive()
    assert got is not None
    assert got["labels"]["severity"] == "warning"
    assert got["annotations"]["summary"] == "test alert"


@pytest.mark.integration
def test_prometheus_alert_reaches_the_receiver_through_alertmanager(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    with WebhookReceiver() as receiver:
        am_config = render_alertmanager_config(receiver.url, group_wait="0s")
        with start_alertmanager(tmp_path / "am", am_config) as alertmanager:
            config = (
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "rule_files: [rules.yml]\n"
                "alerting:\n  alertmanagers:\n    - static_configs:\n"
                f"        - targets: ['{host_port(alertmanager.url or '')}']\n"
            )
            # Prometheus finds its Alertmanagers a few seconds after start, and re-sends a
            # firing alert only after the resend delay (1m by default).
            with start_prometheus(
                tmp_path / "prom",
                config,
                {"rules.yml": RULES},
                extra_args=["--rules.alert.resend-delay=1s"],
            ):
                got = receiver.wait_for_alert(alertname="StackTestAlwaysFiring", timeout=30)
    assert got is not None
    assert got["labels"]["severity"] == "info"


# --------------------------------------------------------------------------- webhook


def test_webhook_receiver_records_and_waits() -> None:
    with WebhookReceiver() as receiver:
        assert receiver.url.startswith("http://127.0.0.1:")
        assert receiver.wait_for_alert(timeout=0.1) is None
        payload = {
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A", "model": "x"}},
                {"status": "resolved", "labels": {"alertname": "B", "model": "y"}},
            ],
        }
        assert _post_json(receiver.url, payload) == 200
        assert receiver.notifications() == [payload]
        assert [a["labels"]["alertname"] for a in receiver.alerts("firing")] == ["A"]
        assert receiver.wait_for_alert(alertname="B", timeout=0.1) is None  # resolved
        assert receiver.wait_for_alert(alertname="B", status=None, timeout=0.1) is not None
        status, body = http_get(receiver.url)
        assert status == 200 and json.loads(body) == [payload]


def test_webhook_receiver_runs_alone_and_prints_each_alert() -> None:
    """`python -m perfgen.stack.webhook` is docker-compose's alert-log: one line per alert."""
    import json
    import signal
    import subprocess
    import sys
    import urllib.request

    from perfgen.stack.processes import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "perfgen.stack.webhook", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("webhook receiver listening on")
        body = {
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "PerfgenLatencyHigh",
                        "provider": "groq",
                        "model": "llama",
                        "severity": "warning",
                    },
                    "annotations": {"summary": "groq/llama is slow to the first token"},
                }
            ],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/alerts/warning",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        line = process.stdout.readline().strip()
        assert line == (
            "FIRING PerfgenLatencyHigh groq/llama severity=warning "
            "groq/llama is slow to the first token"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
