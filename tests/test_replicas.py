"""No double spend with replicas (docs/scale-out.md, "Replicas without double spend").

1. High availability: two Prometheus servers scrape the same exporter. Its cost control
   answers the second scrape of a target from the first one's probe, so the provider is
   asked once per `test_interval_minutes` however many servers scrape.
2. Two exporter replicas: each Prometheus keeps its `hashmod` shard of the same /sd list
   and scrapes its own exporter, so every target is probed by exactly one of them.

Both are judged by the simulator's own record of the requests it received
(`/-/requests`), not by what the exporters or Prometheus report.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_binaries

from perfgen.stack.demo import _prometheus_query
from perfgen.stack.processes import (
    ManagedProcess,
    http_get,
    start_perfgen,
    start_prometheus,
)
from perfgen.stack.prometheus_config import render_prometheus_config

pytestmark = pytest.mark.integration

INTERVAL_SECONDS = 3.0  # test_interval_minutes = 0.05
SIMULATOR = """
seed = 3
[[providers]]
name = "north"
api_key = "north-key"
  [[providers.models]]
  name = "chat"
  ttft_ms = 40
  tokens_per_second = 400
  output_tokens = 8
[[providers]]
name = "south"
api_key = "south-key"
  [[providers.models]]
  name = "chat"
  ttft_ms = 40
  tokens_per_second = 400
  output_tokens = 8
"""
PROXY = """
[router]
default = "north,chat|south,chat"

[[providers]]
name = "north"
api_base_url = "{simulator}/north/v1"
api_key = "north-key"
models = ["chat"]

[[providers]]
name = "south"
api_base_url = "{simulator}/south/v1"
api_key = "south-key"
models = ["chat"]

[performance]
enabled = true
test_interval_minutes = 0.05
min_test_count = 1
window = "1m"

[performance.test_models]
providers = ["north", "south"]
modules = ["latency"]

[performance.modules.latency]
max_tokens = 8
timeout_seconds = 1
"""
TARGETS = ("north", "south")


def prometheus_hashmod(value: str, modulus: int) -> int:
    """Prometheus' `hashmod`: the last 8 bytes of the MD5 of the joined values, mod N."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[ManagedProcess]:
    require_binaries("prometheus")
    (tmp_path / "simulator.toml").write_text(SIMULATOR)
    process = start_perfgen(
        ["simulate", "--config", str(tmp_path / "simulator.toml"), "--listen", "127.0.0.1:0"],
        "simulator listening on",
        tmp_path,
        name="simulator",
    )
    (tmp_path / "config.toml").write_text(PROXY.format(simulator=process.url))
    try:
        yield process
    finally:
        process.stop()


def exporter(tmp_path: Path, name: str) -> ManagedProcess:
    return start_perfgen(
        ["exporter", "--config", str(tmp_path / "config.toml"), "--listen", "127.0.0.1:0"],
        "exporter listening on",
        tmp_path,
        name=name,
    )


def server(tmp_path: Path, name: str, exporter_url: str, **options: object) -> ManagedProcess:
    config = render_prometheus_config(
        exporter_url, scrape_interval="1s", sd_refresh_interval="1s", **options
    )
    return start_prometheus(tmp_path / name, config)


def scrapes(prometheus: ManagedProcess) -> dict[str, float]:
    """Probe scrapes per provider this server made (each gets an llm_probe_success)."""
    found = _prometheus_query(
        prometheus.url or "",
        'sum by (provider) (count_over_time(llm_probe_success{job="llm_probe"}[5m]))',
    )
    return {s["metric"]["provider"]: float(s["value"][1]) for s in found}


def wait_for_scrapes(servers: list[ManagedProcess], expected: list[set[str]], n: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        counts = [scrapes(s) for s in servers]
        if all(
            set(c) == want and min(c.values()) >= n
            for c, want in zip(counts, expected, strict=True)
        ):
            return
        assert time.monotonic() < deadline, counts
        time.sleep(0.5)


def simulator_requests(simulator: ManagedProcess) -> dict[str, list[dict[str, float]]]:
    status, body = http_get(f"{simulator.url}/-/requests?limit=1000")
    assert status == 200
    by_provider: dict[str, list[dict[str, float]]] = {}
    for record in json.loads(body)["requests"]:
        by_provider.setdefault(record["provider"], []).append(record)
    return by_provider


def assert_paid_once_per_interval(records: dict[str, list[dict[str, float]]]) -> None:
    """Each target's next request starts at least one interval after the last one ended.

    The exporter counts the interval from when it finished reading the answer, which is
    after the simulator's `finished` (same monotonic clock, one machine); the 50 ms
    allow for the simulator stamping `finished` just after its last write. The records are
    read while the exporter runs, so its latest probe may still be in flight (no
    `finished` yet); every earlier one has ended, or the next could not have started.
    """
    for provider, found in records.items():
        found.sort(key=lambda r: r["received"])
        assert all(r["finished"] is not None for r in found[:-1]), found
        for before, after in zip(found, found[1:], strict=False):
            gap = after["received"] - before["finished"]
            assert gap >= INTERVAL_SECONDS - 0.05, (provider, gap, found)


def test_two_prometheus_servers_scraping_one_exporter_pay_once(simulator, tmp_path):
    one = exporter(tmp_path, "exporter")
    servers = []
    try:
        servers = [server(tmp_path, f"prometheus-{i}", one.url or "") for i in range(2)]
        # Each server scrapes each target once a second: ~16 scrapes in total per target
        # while the cost control allows about 3 paid probes.
        wait_for_scrapes(servers, [set(TARGETS)] * 2, 8)
        records = simulator_requests(simulator)
        counts = [scrapes(s) for s in servers]
    finally:
        for process in (*servers, one):
            process.stop()
    assert set(records) == set(TARGETS)
    assert_paid_once_per_interval(records)
    for provider, found in records.items():
        # Both servers got an answer to every scrape, and at least half of those
        # answers were the other server's probe (or a previous one) from the cache.
        assert all(c[provider] >= 8 for c in counts), counts
        assert len(found) * 2 <= sum(c[provider] for c in counts), (provider, len(found), counts)


def test_two_exporters_share_the_targets_by_hashmod(simulator, tmp_path):
    shard_of = {p: prometheus_hashmod(f"{p}:chat;latency", 2) for p in TARGETS}
    # The names are chosen so that each shard gets one target (Prometheus' own hash).
    assert sorted(shard_of.values()) == [0, 1]
    exporters, servers = [], []
    try:
        exporters = [exporter(tmp_path, f"exporter-{i}") for i in range(2)]
        servers = [
            server(tmp_path, f"prometheus-{i}", exporters[i].url or "", shard=(i, 2))
            for i in range(2)
        ]
        expected = [{p for p, s in shard_of.items() if s == i} for i in range(2)]
        wait_for_scrapes(servers, expected, 6)
        records = simulator_requests(simulator)
        counts = [scrapes(s) for s in servers]
    finally:
        for process in (*servers, *exporters):
            process.stop()
    # Each server scraped only its own shard, through its own exporter ...
    assert [set(c) for c in counts] == expected
    # ... and the provider saw each target probed at most once per interval overall.
    assert set(records) == set(TARGETS)
    assert_paid_once_per_interval(records)
