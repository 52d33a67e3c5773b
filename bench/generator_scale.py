"""Generator at scale: `perfgen generate --dry-run` and `perfgen query` wall time with 1000
models over 7 scenarios, against a real Prometheus.

The series the generator reads (the recording-rule names of docs/CONTRACTS.md, window 1h,
plus llm_probe_timestamp_seconds) are backfilled with `promtool tsdb create-blocks-from
openmetrics` for 1000 models (10 providers x 100), 7 scenarios, one sample a minute over
the last --history minutes (enough for the 15 min hysteresis range query), then
Prometheus (/usr/bin/prometheus, 127.0.0.1, temp storage; stack.processes.start_prometheus)
serves them. Every scenario's candidates are all 1000 models.

Each command runs as a user runs it: a fresh `python -c 'from perfgen.cli import main;
main()'` process; wall time includes interpreter start and imports (shown separately as
`perfgen --help`). Figures: median [min..max] over --runs runs.

    python bench/generator_scale.py      # about 1 minute (the backfill takes most of it)
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    PySpy,
    Summary,
    http_json,
    perfgen_argv,
    print_machine,
    print_profile,
    print_table,
    repo_env,
)

SCENARIOS = (
    "default",
    "background",
    "think",
    "plan_implementation",
    "long_context",
    "web_search",
    "image",
)
PROVIDERS = 10
MODELS_PER_PROVIDER = 100
WINDOW = "1h"


def models() -> list[tuple[str, str]]:
    return [
        (f"p{p}", f"model-{m:03d}") for p in range(PROVIDERS) for m in range(MODELS_PER_PROVIDER)
    ]


def proxy_config() -> str:
    every = models()
    lines = ["[proxy]", 'host = "127.0.0.1"', "port = 3456", 'api_key = "sk-proxy"', "", "[router]"]
    for i, scenario in enumerate(SCENARIOS):
        chain = "|".join(f"{p},{m}" for p, m in every[i * 3 : i * 3 + 3])
        lines.append(f'{scenario} = "{chain}"')
    lines.append("")
    names = ", ".join(f'"model-{m:03d}"' for m in range(MODELS_PER_PROVIDER))
    for p in range(PROVIDERS):
        lines += [
            "[[providers]]",
            f'name = "p{p}"',
            f'api_base_url = "http://127.0.0.1:9/p{p}/v1"',
            'api_key = "sk-bench"',
            f"models = [{names}]",
            "",
        ]
    lines += ["[performance]", f'window = "{WINDOW}"', ""]
    candidates = ", ".join(f'"{p},{m}"' for p, m in every)
    for scenario in SCENARIOS:
        lines += [f"[performance.scenarios.{scenario}]", f"candidates = [{candidates}]", ""]
    return "\n".join(lines)


def openmetrics(history_minutes: int, now: float) -> str:
    """One sample a minute of every series the generator reads, ending at `now`."""
    rng = random.Random(7)
    start = int(now) - history_minutes * 60
    times = list(range(start, int(now) + 1, 60))
    out: list[str] = []
    for provider, model in models():
        base = f'model="{model}",provider="{provider}"'
        scores = {s: rng.uniform(0.3, 0.95) for s in SCENARIOS}
        plain = {
            f"provider_model:llm_requests:increase_{WINDOW}": 60.0,
            f"provider_model:llm_ttft_seconds:p95_{WINDOW}": rng.uniform(0.1, 2.0),
            f"provider_model:llm_decode_tokens_per_second:mean_{WINDOW}": rng.uniform(20, 200),
            f"provider_model:llm_request_success:ratio_{WINDOW}": 1.0,
        }
        for t in times:
            for scenario, score in scores.items():
                labels = f'{{{base},scenario="{scenario}"}}'
                out.append(
                    f"provider_model:llm_performance_score:ratio_{WINDOW}{labels} {score:.4f} {t}"
                )
                out.append(f"provider_model:llm_meets_thresholds:bool_{WINDOW}{labels} 1 {t}")
            for name, value in plain.items():
                out.append(f"{name}{{{base}}} {value:.4f} {t}")
            out.append(f'llm_probe_timestamp_seconds{{{base},module="latency"}} {t - 30} {t}')
    out.append("# EOF")
    return "\n".join(out) + "\n"


def timed(argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{argv[3:]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--history", type=int, default=20, help="minutes of backfilled samples")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, run generate once under py-spy and print where its time goes",
    )
    args = parser.parse_args()
    from perfgen.stack.processes import find_binary, start_prometheus

    print_machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-generator-") as tmp:
        root = Path(tmp)
        spy: PySpy | None = None
        config = root / "config.toml"
        config.write_text(proxy_config())
        data = root / "prometheus" / "prometheus-data"
        data.mkdir(parents=True)
        om = root / "series.om"
        t0 = time.monotonic()
        om.write_text(openmetrics(args.history, time.time()))
        subprocess.run(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(om),
                str(data),
            ],
            check=True,
            capture_output=True,
            timeout=170,
        )
        backfill_s = time.monotonic() - t0
        om.unlink()
        prometheus = start_prometheus(
            root / "prometheus", "global:\n  scrape_interval: 1m\n", retention="1d"
        )
        try:
            url = prometheus.url
            assert url, "start_prometheus gave no URL"
            count = http_json(
                f"{url}/api/v1/query?query=count("
                f"provider_model:llm_performance_score:ratio_{WINDOW})"
            )
            series = count["data"]["result"][0]["value"][1] if count["data"]["result"] else "0"
            print(
                f"# {len(models())} models x {len(SCENARIOS)} scenarios; {series} score "
                f"series in Prometheus; backfill {backfill_s:.1f} s"
            )
            help_t: list[float] = []
            gen_t: list[float] = []
            query_t: list[float] = []
            last_gen = last_query = ""
            for _ in range(args.runs):
                help_t.append(timed(perfgen_argv("--help"))[0])
                elapsed, last_gen = timed(
                    perfgen_argv(
                        "generate", "--config", str(config), "--prometheus", url, "--dry-run"
                    ),
                    ok_codes=(0, 3),
                )
                gen_t.append(elapsed)
                elapsed, last_query = timed(
                    perfgen_argv("query", "--prometheus", url, "--config", str(config))
                )
                query_t.append(elapsed)
            if args.profile:
                out = root / "generate.txt"
                subprocess.run(
                    [
                        "py-spy",
                        "record",
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "-o",
                        str(out),
                        "--",
                        *perfgen_argv(
                            "generate", "--config", str(config), "--prometheus", url, "--dry-run"
                        ),
                    ],
                    env=repo_env(),
                    capture_output=True,
                    timeout=170,
                )
                spy = PySpy(0, out)
        finally:
            prometheus.stop()
        if spy is not None:
            print_profile(spy, "perfgen generate --dry-run (whole process)", 25)
    print()
    print_table(
        ["command (1000 models, 7 scenarios)", "wall s, median [min..max]", "goal"],
        [
            ["perfgen --help (interpreter + CLI start)", Summary(help_t).fmt(1, 3), "-"],
            ["perfgen generate --dry-run", Summary(gen_t).fmt(1, 3), "< 2 s"],
            ["perfgen query (scenario default, table)", Summary(query_t).fmt(1, 3), "< 2 s"],
        ],
    )
    print()
    print(f"generate said: {last_gen.strip().splitlines()[-1] if last_gen.strip() else '-'}")
    print(f"query printed {len(last_query.splitlines())} lines")
    print(f"# wall {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
