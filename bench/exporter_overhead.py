"""Exporter overhead: /probe latency minus the upstream's own time; /metrics and /sd with
1000 targets; the exporter's resident memory.

Starts the simulator (10 providers x 100 models, 20 ms TTFT, 16 tokens at 1000 tok/s) and
`perfgen exporter` with those 1000 models as targets, each in its own process. Cost
control is opened up for the benchmark (`test_interval_minutes` = 0.0001, no token budget,
64 concurrent probes) so every /probe pays for a fresh probe.

1. Populate: one /probe (module `latency`) of each of the 1000 targets, 50 at a time, so
   the exporter holds per-target state as it would in production.
2. /probe overhead: --probes sequential scrapes of one target per run; overhead =
   scrape wall time (bench client, keep-alive) - (simulator `finished` - `received`)
   of the upstream request it caused.
3. /metrics and /sd: --gets sequential GETs each per run.
RSS is read from /proc before and after populating. Figures: median [min..max] over runs.

    python bench/exporter_overhead.py     # about 1 minute
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CpuMeter,
    PySpy,
    Served,
    Simulator,
    Summary,
    cpu_seconds,
    http_get_bytes,
    http_json,
    percentile,
    print_machine,
    print_profile,
    print_table,
    rss_bytes,
)

PROVIDERS = 10
MODELS_PER_PROVIDER = 100


def model_name(i: int) -> str:
    return f"model-{i:03d}"


def simulator_config() -> str:
    lines = ["seed = 1"]
    for p in range(PROVIDERS):
        lines += ["", "[[providers]]", f'name = "p{p}"', 'protocol = "openai"']
        for m in range(MODELS_PER_PROVIDER):
            lines += [
                "[[providers.models]]",
                f'name = "{model_name(m)}"',
                "ttft_ms = 20",
                "tokens_per_second = 1000",
                "output_tokens = 16",
            ]
    return "\n".join(lines) + "\n"


def exporter_config(sim_url: str) -> str:
    lines = []
    models = ", ".join(f'"{model_name(m)}"' for m in range(MODELS_PER_PROVIDER))
    for p in range(PROVIDERS):
        lines += [
            "[[providers]]",
            f'name = "p{p}"',
            f'api_base_url = "{sim_url}/p{p}/v1"',
            'api_key = "sk-bench"',
            f"models = [{models}]",
            "",
        ]
    lines += [
        "[performance]",
        "test_interval_minutes = 0.0001",
        "max_concurrent_tests = 64",
        "test_timeout_seconds = 30",
        "",
        "[performance.budget]",
        "max_output_tokens_per_hour = 0",
        "",
    ]
    return "\n".join(lines)


def render_times(runs: int = 5, calls: int = 200) -> list[float]:
    """Per run, the median time of exporter.metrics.render_probe for a 1-request result
    with its cumulative histograms: the body of every /probe answer."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from perfgen.exporter.metrics import CumulativeStore, render_probe
    from perfgen.exporter.result import ProbeResult, RequestResult

    request = RequestResult(
        success=True,
        http_status=200,
        ttft_seconds=0.02,
        first_content_seconds=0.02,
        duration_seconds=0.035,
        output_tokens=16,
        input_tokens=12,
        tokens_per_second=1000.0,
        token_count_source="usage",
    )
    result = ProbeResult("p0", "model-000", "latency", time.time(), 0.04, (request,))
    store = CumulativeStore()
    store.observe(result)
    key = ("p0", "model-000", "latency")
    medians = []
    for _ in range(runs):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            render_probe(store, key, result, cached=False)
            times.append(time.perf_counter() - t0)
        medians.append(percentile(times, 50))
    return medians


def gc_collections(metrics: bytes) -> list[int]:
    """python_gc_collections_total per generation, from the exporter's /metrics."""
    counts = {}
    for line in metrics.decode().splitlines():
        if line.startswith("python_gc_collections_total{"):
            generation = line.split('generation="', 1)[1].split('"', 1)[0]
            counts[int(generation)] = int(float(line.rsplit(" ", 1)[1]))
    return [counts[g] for g in sorted(counts)]


class Client:
    """One keep-alive HTTP/1.1 connection to the exporter; times each GET."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        return elapsed, body

    def close(self) -> None:
        self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--probes", type=int, default=20, help="sequential /probe per run")
    parser.add_argument("--gets", type=int, default=20, help="GETs of /metrics and /sd per run")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile the exporter with py-spy over sequential "
        "/probe scrapes and print where its CPU goes",
    )
    args = parser.parse_args()
    ncpu = os.cpu_count() or 1
    pin = not args.no_pin and ncpu >= 2
    print_machine()
    print(
        f"# exporter_overhead: {PROVIDERS * MODELS_PER_PROVIDER} targets, pinned={pin} "
        f"(simulator cpu {ncpu - 1 if pin else '-'}, exporter cpu {0 if pin else '-'})"
    )
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp,
        Simulator(simulator_config(), cpus=str(ncpu - 1) if pin else None) as sim,
        Served(
            "exporter",
            ["exporter", "--config", "{dir}/config.toml"],
            "exporter listening on",
            "0" if pin else None,
            files={"config.toml": exporter_config(sim.url)},
        ) as exporter,
    ):
        port = exporter.port
        rss_start = rss_bytes(exporter.pid)
        gc_start = gc_collections(http_get_bytes(exporter.url + "/metrics"))

        # 1. populate every target once.
        targets = [
            (f"p{p}", model_name(m)) for p in range(PROVIDERS) for m in range(MODELS_PER_PROVIDER)
        ]

        def scrape(target: tuple[str, str]) -> bool:
            client = Client(port)
            try:
                _, body = client.get(f"/probe?target={target[0]}:{target[1]}&module=latency")
            finally:
                client.close()
            return b"llm_probe_success{" in body and b"} 1.0" in body

        t0 = time.monotonic()
        with ThreadPoolExecutor(50) as pool:
            ok = sum(pool.map(scrape, targets))
        populate_s = time.monotonic() - t0
        rss_full = rss_bytes(exporter.pid)

        overhead50: list[float] = []
        overhead99: list[float] = []
        probe50: list[float] = []
        metrics_t: list[float] = []
        sd_t: list[float] = []
        sizes: dict[str, int] = {}
        exporter_share: list[float] = []
        probe_cpu: list[float] = []
        client = Client(port)
        try:
            for _ in range(args.runs):
                # 2. /probe overhead on one target, sequentially.
                overheads, walls = [], []
                cpu0 = cpu_seconds(exporter.pid)
                for i in range(args.probes):
                    provider, model = targets[i % len(targets)]
                    wall, body = client.get(f"/probe?target={provider}:{model}&module=latency")
                    record = http_json(
                        f"{sim.url}/-/requests?limit=1&provider={provider}&model={model}"
                    )["requests"][0]
                    upstream = record["finished"] - record["received"]
                    overheads.append(wall - upstream)
                    walls.append(wall)
                    sizes["probe"] = len(body)
                    time.sleep(0.01)  # past test_interval_minutes: the next one is fresh
                probe_cpu.append((cpu_seconds(exporter.pid) - cpu0) / args.probes)
                overhead50.append(percentile(overheads, 50))
                overhead99.append(percentile(overheads, 99))
                probe50.append(percentile(walls, 50))
                # 3. /metrics and /sd.
                with CpuMeter(exporter) as meter:
                    times = []
                    for _ in range(args.gets):
                        elapsed, body = client.get("/metrics")
                        times.append(elapsed)
                        sizes["metrics"] = len(body)
                metrics_t.append(percentile(times, 50))
                exporter_share.append(meter.share)
                times = []
                for _ in range(args.gets):
                    elapsed, body = client.get("/sd")
                    times.append(elapsed)
                    sizes["sd"] = len(body)
                    sizes["sd_groups"] = len(json.loads(body))
                sd_t.append(percentile(times, 50))
        finally:
            client.close()
        rss_end = rss_bytes(exporter.pid)
        gc_end = gc_collections(http_get_bytes(exporter.url + "/metrics"))
        if args.profile:
            spy = PySpy(exporter.pid, Path(tmp) / "exporter-probe.txt")
            client = Client(port)
            try:
                with spy:
                    for i in range(100):
                        provider, model = targets[i]
                        client.get(f"/probe?target={provider}:{model}&module=latency")
            finally:
                client.close()
            print_profile(spy, "exporter during 100 sequential /probe scrapes", 25)

    ms = 1000.0
    print()
    print(
        f"populate: {ok}/{len(targets)} targets probed successfully in {populate_s:.1f} s "
        "(50 concurrent scrapes)"
    )
    print_table(
        ["figure", "median [min..max] over runs", "goal"],
        [
            ["/probe overhead p50 (ms)", Summary(overhead50).fmt(ms), "-"],
            ["/probe overhead p99 (ms)", Summary(overhead99).fmt(ms), "-"],
            ["/probe wall p50 (ms)", Summary(probe50).fmt(ms), "-"],
            ["exporter CPU per /probe scrape (ms)", Summary(probe_cpu).fmt(ms), "-"],
            ["render_probe in-process p50 (ms)", Summary(render_times()).fmt(ms), "-"],
            ["/metrics p50 (ms), 1000 targets", Summary(metrics_t).fmt(ms), "< 100 ms"],
            ["/sd p50 (ms), 1000 targets", Summary(sd_t).fmt(ms), "-"],
        ],
    )
    print()
    print_table(
        ["figure", "value"],
        [
            ["/probe body (bytes)", sizes.get("probe")],
            ["/metrics body (bytes)", sizes.get("metrics")],
            ["/sd body (bytes), groups", f"{sizes.get('sd')}, {sizes.get('sd_groups')}"],
            ["exporter RSS at start (MiB)", f"{rss_start / 2**20:.1f}"],
            ["exporter RSS after 1000 targets probed (MiB)", f"{rss_full / 2**20:.1f}"],
            ["exporter RSS at the end (MiB)", f"{rss_end / 2**20:.1f}"],
            [
                "exporter GC collections during the benchmark, gen 0 / 1 / 2",
                " / ".join(str(e - s) for s, e in zip(gc_start, gc_end, strict=True)),
            ],
            ["exporter CPU share during /metrics GETs", Summary(exporter_share).fmt(1)],
        ],
    )
    print(f"# wall {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
