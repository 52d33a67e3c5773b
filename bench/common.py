"""Shared helpers for the benchmarks: processes on 127.0.0.1, ground truth, statistics, tables.

Every process a benchmark starts goes through `Proc`, which is a context manager: leaving
the `with` block (normally, by an exception, or by Ctrl-C) terminates it and waits for it.
All servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
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
    print(f"# machine: nproc={m['nproc']} cpu={m['cpu']!r} python={m['python']} "
          f"loadavg={m['loadavg']}")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def perfgen_argv(*args: str) -> list[str]:
    """`perfgen ARGS` without needing the package installed (runs from the work tree)."""
    return [sys.executable, "-c", "from generator.cli import main; main()", *args]


def repo_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env.update(extra)
    return env


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """Prefix argv with `taskset -c CPUS` when pinning is asked for and possible."""
    if cpus is None or not Path("/usr/bin/taskset").exists():
        return argv
    return ["/usr/bin/taskset", "-c", cpus, *argv]


class Proc:
    """A child process that is always stopped: `with Proc(argv) as p: ...`."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self.popen = subprocess.Popen(
            argv,
            cwd=str(cwd or REPO),
            env=env or repo_env(),
            stdin=stdin,
            stdout=stdout if stdout is not None else self.log,
            stderr=self.log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """user+system CPU time of the process so far (from /proc, without its children)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self) -> int:
        try:
            pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except OSError:
            return 0
        return pages * PAGE_SIZE

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                # Our own child, in its own session: signal only that process group.
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_http(url: str, proc: Proc | None = None, timeout: float = 20.0) -> None:
    """Poll url until it answers 2xx; fail early (with its log) if proc dies."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                               f"{proc.output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.05)
    log = proc.output()[-3000:] if proc else ""
    raise RuntimeError(f"{url} not ready after {timeout}s ({last})\n{log}")


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_get_bytes(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


# --------------------------------------------------------------------------- simulator


def simulator_toml(models: Iterable[dict[str, Any]], provider: str = "sim",
                   protocol: str = "openai") -> str:
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


class Simulator(Proc):
    """`perfgen simulate` in its own process, optionally pinned to `cpus`."""

    def __init__(self, config_text: str, cpus: str | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="bench-sim-")
        config = Path(self.dir.name) / "sim.toml"
        config.write_text(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = perfgen_argv("simulate", "--config", str(config),
                            "--listen", f"127.0.0.1:{self.port}")
        super().__init__(pinned(argv, cpus), name="simulator")
        try:
            wait_http(self.url + "/-/healthy", self)
        except BaseException:
            self.stop()
            raise

    def records(self, limit: int = 10_000) -> dict[str, dict[str, Any]]:
        """Ground truth by request id: received, first_token_sent, last_token_sent, tokens_sent."""
        data = http_json(f"{self.url}/-/requests?limit={limit}")
        return {r["id"]: r for r in data["requests"]}

    def stop(self) -> None:
        super().stop()
        self.dir.cleanup()


class CpuMeter:
    """CPU share of a process over a window: `with CpuMeter(proc) as m: ...; m.share`."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.share = math.nan

    def __enter__(self) -> CpuMeter:
        self._cpu0, self._t0 = self.proc.cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        self.share = (self.proc.cpu_seconds() - self._cpu0) / wall if wall > 0 else math.nan


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
        return (f"{self.median * scale:.{digits}f} "
                f"[{self.min * scale:.{digits}f}..{self.max * scale:.{digits}f}]")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Markdown table (pastes straight into docs/benchmarks.md)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


# --------------------------------------------------------------------------- prober workers


class Worker(Proc):
    """One prober (`bench/probers.py KIND`) in its own process, driven by JSON lines."""

    def __init__(self, kind: str, base_url: str, cpu: int | None = None,
                 extra: Sequence[str] = ()) -> None:
        argv = [sys.executable, str(REPO / "bench" / "probers.py"), kind, "--base-url", base_url,
                *(["--cpu", str(cpu)] if cpu is not None else []), *extra]
        super().__init__(argv, name=f"prober-{kind}", stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
        self.kind = kind
        try:
            hello = self._read()
        except BaseException:
            self.stop()
            raise
        assert hello.get("ready") == kind, hello

    def _read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(5)
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n"
                               f"{self.output()[-4000:]}")
        return json.loads(line)

    def run(self, **command: Any) -> dict[str, Any]:
        """Send one command (see probers.serve) and wait for its answer."""
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(command) + "\n").encode())
        self.popen.stdin.flush()
        return self._read()

    def stop(self) -> None:
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        super().stop()


def match_truth(streams: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
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
            ["py-spy", "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format",
             "raw", "--nonblocking", "-o", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    print_table(["self %", "function (file:line)"],
                [[f"{p:.1f}", f] for p, f in spy.top(n)])
    print_table(["incl %", "function (file:line)"],
                [[f"{p:.1f}", f] for p, f in spy.top(n, inclusive=True)])
