"""Shared helpers for the benchmarks: processes on 127.0.0.1, ground truth, statistics, tables.

Processes are stack.processes' (`start_perfgen`, `ManagedProcess`: started in a session of
their own, ready line awaited, SIGTERM then SIGKILL, log tail in every failure), each with
its log in a temporary directory that goes when it stops. What is bench-only lives here:
pinning to CPUs, CPU time and RSS read from /proc, the prober workers' line protocol. Every
process is a context manager (leaving the `with` block, normally, by an exception or by
Ctrl-C, stops it), and all servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perfgen.stack.processes import (  # noqa: E402
    ManagedProcess,
    perfgen_command,
    perfgen_env,
    start_perfgen,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """nproc, CPU model, Python version, load: the line every result table starts with."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg": load,
    }


def print_machine() -> None:
    m = machine()
    print(
        f"# machine: nproc={m['nproc']} cpu={m['cpu']!r} python={m['python']} "
        f"loadavg={m['loadavg']}"
    )


# --------------------------------------------------------------------------- processes


def perfgen_argv(*args: str) -> list[str]:
    """`perfgen ARGS` without needing the package installed (runs from the work tree)."""
    return perfgen_command(args)


def repo_env(**extra: str) -> dict[str, str]:
    """This environment with the work tree on PYTHONPATH, unbuffered, plus `extra`."""
    return perfgen_env(extra)


def pin(pid: int, cpus: str | None) -> None:
    """Pin every thread of a running process to CPUS ("0", "1", "0-1"); None: leave it.

    Threads it starts later inherit the affinity of the thread that starts them."""
    if cpus is None:
        return
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), chosen)


def cpu_seconds(pid: int) -> float:
    """user+system CPU time of a process so far (from /proc, without its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * PAGE_SIZE


class Served:
    """`perfgen ARGS` serving on 127.0.0.1 (`--listen 127.0.0.1:0`: the kernel picks the
    port, the ready line names it) with its files in a temporary directory, optionally
    pinned to `cpus`: `with Served(...) as p: p.url ...`."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        ready_prefix: str,
        cpus: str | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix=f"bench-{name}-")
        try:
            for relative, text in (files or {}).items():
                (Path(self.dir.name) / relative).write_text(text)
            argv = [a.replace("{dir}", self.dir.name) for a in args]
            self.process = start_perfgen(
                [*argv, "--listen", "127.0.0.1:0"], ready_prefix, self.dir.name, name=name
            )
            try:
                pin(self.process.pid, cpus)
            except BaseException:
                self.process.stop(grace=2.0)
                raise
        except BaseException:
            self.dir.cleanup()
            raise
        assert self.process.url is not None, self.process.ready_line
        self.url: str = self.process.url
        self.port = int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()
        self.dir.cleanup()

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_get_bytes(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


# --------------------------------------------------------------------------- simulator


def simulator_toml(
    models: Iterable[dict[str, Any]], provider: str = "sim", protocol: str = "openai"
) -> str:
    """A one-provider simulator config; each model is a dict of profile keys plus `name`."""
    lines = ["seed = 1", "", "[[providers]]", f'name = "{provider}"', f'protocol = "{protocol}"']
    for model in models:
        lines += ["", "[[providers.models]]"]
        for key, value in model.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


class Simulator(Served):
    """`perfgen simulate` in its own process, optionally pinned to `cpus`."""

    def __init__(self, config_text: str, cpus: str | None = None) -> None:
        super().__init__(
            "simulator",
            ["simulate", "--config", "{dir}/sim.toml"],
            "simulator listening on",
            cpus,
            files={"sim.toml": config_text},
        )

    def records(self, limit: int = 10_000) -> dict[str, dict[str, Any]]:
        """Ground truth by request id: received, first_token_sent, last_token_sent, tokens_sent."""
        data = http_json(f"{self.url}/-/requests?limit={limit}")
        return {r["id"]: r for r in data["requests"]}


class CpuMeter:
    """CPU share of a process over a window: `with CpuMeter(proc) as m: ...; m.share`."""

    def __init__(self, proc: Served | Worker) -> None:
        self.pid = proc.pid
        self.share = math.nan

    def __enter__(self) -> CpuMeter:
        self._cpu0, self._t0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        self.share = (cpu_seconds(self.pid) - self._cpu0) / wall if wall > 0 else math.nan


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return math.nan
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


class Summary:
    """Median, min and max of one figure over repeated runs."""

    def __init__(self, values: Iterable[float]) -> None:
        self.values = [v for v in values if v is not None and not math.isnan(v)]
        self.n = len(self.values)
        self.median = percentile(self.values, 50)
        self.min = min(self.values) if self.values else math.nan
        self.max = max(self.values) if self.values else math.nan

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        if not self.values:
            return "n/a"
        return (
            f"{self.median * scale:.{digits}f} "
            f"[{self.min * scale:.{digits}f}..{self.max * scale:.{digits}f}]"
        )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Markdown table (pastes straight into docs/benchmarks.md)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


# --------------------------------------------------------------------------- prober workers


class Worker:
    """One prober (`bench/probers.py KIND`) in its own process, driven by JSON lines on its
    stdin and stdout (a ManagedProcess with pipes; stderr goes to its log)."""

    def __init__(
        self, kind: str, base_url: str, cpu: int | None = None, extra: Sequence[str] = ()
    ) -> None:
        argv = [
            sys.executable,
            str(REPO / "bench" / "probers.py"),
            kind,
            "--base-url",
            base_url,
            *(["--cpu", str(cpu)] if cpu is not None else []),
            *extra,
        ]
        self.kind = kind
        self.name = f"prober-{kind}"
        self.dir = tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-")
        try:
            self.process = ManagedProcess(
                self.name,
                argv,
                Path(self.dir.name) / "prober.log",
                env=repo_env(),
                cwd=REPO,
                pipes=True,
            )
        except BaseException:
            self.dir.cleanup()
            raise
        self.popen = self.process.popen
        try:
            hello = self._read()
        except BaseException:
            self.stop()
            raise
        assert hello.get("ready") == kind, hello

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """Everything the prober wrote to stderr so far."""
        return self.process.log_path.read_text(errors="replace")

    def _read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(5)
            raise self.process.failure(f"exited ({self.popen.returncode})")
        return json.loads(line)

    def run(self, **command: Any) -> dict[str, Any]:
        """Send one command (see probers.serve) and wait for its answer."""
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(command) + "\n").encode())
        self.popen.stdin.flush()
        return self._read()

    def stop(self) -> None:
        # EOF on stdin ends the prober's command loop; stop() then waits, SIGTERM, SIGKILL.
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.process.stop()
        self.dir.cleanup()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def match_truth(
    streams: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pair each successful client stream with the simulator's record of it."""
    pairs = []
    for stream in streams:
        record = truth.get(stream.get("rid") or "")
        if stream.get("ok") and record and record.get("first_token_sent") is not None:
            pairs.append((stream, record))
    return pairs


def true_ttft(record: dict[str, Any]) -> float:
    return float(record["first_token_sent"] - record["received"])


def true_tps(record: dict[str, Any]) -> float:
    span = record["last_token_sent"] - record["first_token_sent"]
    return (record["tokens_sent"] - 1) / span if span > 0 else math.nan


# --------------------------------------------------------------------------- profiling


IDLE_FRAMES = ("EpollSelector.select", "select (selectors.py")


class PySpy:
    """`with PySpy(pid, "out.txt"): ...` samples pid with py-spy (bench-only: pip install
    py-spy) into collapsed stacks; `top()` then lists where the on-CPU samples were."""

    def __init__(self, pid: int, out: str | Path, rate: int = 250) -> None:
        self.pid, self.out, self.rate = pid, Path(out), rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        self.proc = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def top(self, n: int = 15, inclusive: bool = False) -> list[tuple[float, str]]:
        counts: dict[str, int] = {}
        total = 0
        if not self.out.exists():
            return []
        for line in self.out.read_text().splitlines():
            stack, _, num = line.rpartition(" ")
            if not num.isdigit():
                continue
            frames = stack.split(";")
            if frames[-1].startswith(IDLE_FRAMES):
                continue  # waiting in epoll: wall time, not CPU (py-spy counts it as active)
            total += int(num)
            for frame in set(frames) if inclusive else frames[-1:]:
                counts[frame] = counts.get(frame, 0) + int(num)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return [(100.0 * c / total, f) for f, c in ranked]


def print_profile(spy: PySpy, title: str, n: int = 15) -> None:
    print()
    print(f"py-spy profile: {title} (share of samples outside epoll_wait)")
    print_table(["self %", "function (file:line)"], [[f"{p:.1f}", f] for p, f in spy.top(n)])
    print_table(
        ["incl %", "function (file:line)"], [[f"{p:.1f}", f] for p, f in spy.top(n, inclusive=True)]
    )
