"""Start and stop the stack's local processes: Prometheus (server or agent), Alertmanager,
VictoriaMetrics, vmalert and perfgen commands.

Used by the demo, the integration and end-to-end tests. Every server listens on 127.0.0.1
only, keeps its files (config, data, log) in a work directory the caller owns, and is
stopped by the caller (`stop()` or `with`). A process still running when the interpreter
exits is stopped by an atexit hook, so a crashed test does not leave Prometheus behind.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "INSTALL_HINT",
    "VICTORIAMETRICS_INSTALL_HINT",
    "PERFGEN_MAIN",
    "BinaryMissing",
    "ManagedProcess",
    "ProcessFailed",
    "find_binary",
    "free_port",
    "http_get",
    "perfgen_command",
    "perfgen_env",
    "project_root",
    "start_alertmanager",
    "start_perfgen",
    "start_prometheus",
    "start_prometheus_agent",
    "start_victoriametrics",
    "start_vmalert",
]

INSTALL_HINT = "apt-get update && apt-get install -y prometheus prometheus-alertmanager"
# The optional scale-out backend (tests/test_victoriametrics.py); its own hint, so a
# missing VictoriaMetrics does not tell the user to install Prometheus.
VICTORIAMETRICS_INSTALL_HINT = "apt-get update && apt-get install -y victoria-metrics"

# Upstream names first; Debian renames alertmanager to avoid a clash with other packages.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "amtool": ("amtool",),
    # Debian's victoria-metrics package: the single-node server and the rule evaluator.
    "victoria-metrics": ("victoria-metrics", "victoria-metrics-prod"),
    "vmalert": ("vmalert", "vmalert-prod"),
}
# Debian installs into /usr/bin, but a PATH trimmed by sudo or a CI runner may miss
# /usr/sbin or /usr/local/bin; look there too before telling the user to install.
_EXTRA_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin")


class BinaryMissing(RuntimeError):
    """A required binary is not installed; the message says how to install it."""


class ProcessFailed(RuntimeError):
    """A process exited or did not become ready in time; the message ends with its log tail."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    """Absolute path of `prometheus`, `promtool`, `alertmanager`, `amtool`,
    `victoria-metrics` or `vmalert`.

    `PERFGEN_<NAME>_BINARY` (e.g. PERFGEN_PROMETHEUS_BINARY, PERFGEN_VICTORIA_METRICS_BINARY)
    overrides the lookup, for users with an upstream tarball somewhere outside PATH.
    """
    if name not in _CANDIDATES:
        raise ValueError(f"unknown binary {name!r} (known: {', '.join(_CANDIDATES)})")
    variable = f"PERFGEN_{name.upper().replace('-', '_')}_BINARY"
    override = os.environ.get(variable)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise BinaryMissing(f"{variable}={override} is not an executable file")
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    for candidate in _CANDIDATES[name]:
        found = shutil.which(candidate, path=search_path)
        if found:
            return found
    names = " or ".join(_CANDIDATES[name])
    if name in ("victoria-metrics", "vmalert"):
        what, hint = "VictoriaMetrics", VICTORIAMETRICS_INSTALL_HINT
    else:
        what, hint = "Prometheus and Alertmanager", INSTALL_HINT
    raise BinaryMissing(
        f"{names} not found on PATH. Install {what} with:\n"
        f"    {hint}\n"
        f"(or point {variable} at the binary)"
    )


def project_root() -> Path:
    """The folder of the installed perfgen parts (stack/, generator/, rules/, ...).

    In a source checkout (an editable install) that is the repository's root; installed,
    it is the `perfgen` package directory, where the same folders sit under their
    package names.
    """
    return Path(__file__).resolve().parent.parent


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a URL; (status, body), status 0 when nothing answered. Never raises on HTTP errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


# --------------------------------------------------------------------------- process

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for process in leftovers:
        process.stop(grace=3.0)


class ManagedProcess:
    """A child process with a name, the URL it serves, and a log file in its work directory."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> None:
        """`pipes`: stdin and stdout are pipes (`popen.stdin`, `popen.stdout`) for a caller
        that talks to the child line by line, and only stderr goes to the log; the caller
        closes them. By default stdin is /dev/null and stdout and stderr go to the log."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.url = url
        self.ready_line: str | None = None
        self.config_path: Path | None = None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Truncated: a ready line left by an earlier run in the same workdir must not count.
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        try:
            # A new session: Ctrl-C in the user's terminal reaches only our process, which
            # then stops the children in order (generator before Prometheus, ...).
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else self._log,
                stderr=self._log if pipes else subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> ProcessFailed:
        tail = self.log_tail()
        return ProcessFailed(
            f"{self.name} {what} (log {self.log_path}):\n{tail or '(log is empty)'}"
        )

    def wait_http_ready(self, path: str, timeout: float) -> None:
        """Poll GET url+path until it answers 200; raise ProcessFailed with the log tail."""
        assert self.url is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise self.failure(f"exited with code {self.popen.returncode} while starting")
            status, _ = http_get(self.url + path, timeout=1.0)
            if status == 200:
                return
            time.sleep(0.1)
        raise self.failure(f"not ready at {self.url}{path} after {timeout:g}s")

    def wait_log_line(self, prefix: str, timeout: float) -> str:
        """Wait for a log line starting with prefix and return it (stdout is the log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.log_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            for line in text.splitlines():
                if line.startswith(prefix):
                    return line
            if not self.alive():
                raise self.failure(f"exited with code {self.popen.returncode} while starting")
            time.sleep(0.05)
        raise self.failure(f"printed no line starting with {prefix!r} after {timeout:g}s")

    def post(self, path: str, timeout: float = 5.0) -> int:
        """POST an empty body to url+path (e.g. `/-/reload`); the HTTP status."""
        assert self.url is not None
        request = urllib.request.Request(self.url + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def reload(self) -> None:
        """Ask the server to re-read its config (Prometheus with --web.enable-lifecycle, AM)."""
        status = self.post("/-/reload")
        if status != 200:
            raise self.failure(f"refused /-/reload with HTTP {status}")

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code. Idempotent."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {self.url or ''} {state}>"


# --------------------------------------------------------------------------- starters

_ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)


def _start_http_server(
    name: str,
    workdir: Path,
    build_argv: Callable[[int], list[str]],
    port: int | None,
    ready_path: str,
    timeout: float,
) -> ManagedProcess:
    """Start a server on a port; with a kernel-chosen port, retry when another process won it.

    free_port() closes its socket before the server binds, so parallel tests can race
    for the same port: rare, and cheap to retry.
    """
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        process = ManagedProcess(
            name,
            build_argv(chosen),
            workdir / f"{name}.log",
            url=f"http://127.0.0.1:{chosen}",
        )
        try:
            process.wait_http_ready(ready_path, timeout)
            return process
        except ProcessFailed:
            process.stop(grace=2.0)
            if attempt + 1 < attempts and _ADDRESS_IN_USE.search(process.log_tail()):
                continue
            raise
        except BaseException:
            # Ctrl-C while waiting: the caller never got the process, so stop it here.
            process.stop(grace=2.0)
            raise
    raise AssertionError("unreachable")


def _write_files(workdir: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = workdir / relative
        if workdir.resolve() not in path.resolve().parents:
            raise ValueError(f"{relative!r} would be written outside {workdir}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def start_prometheus(
    workdir: str | os.PathLike[str],
    config_yaml: str,
    rule_files: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    retention: str = "30d",
    extra_args: Iterable[str] = (),
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run Prometheus with `config_yaml` as workdir/prometheus.yml.

    `rule_files` maps paths relative to workdir to their YAML; Prometheus resolves the
    config's `rule_files` relative to the config file, so the config names them the same
    way (e.g. `rules/perfgen.rules.yml`). Data goes to workdir/prometheus-data.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    binary = find_binary("prometheus")
    _write_files(root, {"prometheus.yml": config_yaml, **(rule_files or {})})
    extra = list(extra_args)

    def argv(chosen: int) -> list[str]:
        return [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'prometheus-data'}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{chosen}",
            "--web.enable-lifecycle",
            *extra,
        ]

    process = _start_http_server("prometheus", root, argv, port, "/-/ready", timeout)
    process.config_path = root / "prometheus.yml"
    return process


def start_alertmanager(
    workdir: str | os.PathLike[str],
    config_yaml: str,
    *,
    port: int | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run Alertmanager with `config_yaml` as workdir/alertmanager.yml, no clustering."""
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    binary = find_binary("alertmanager")
    _write_files(root, {"alertmanager.yml": config_yaml})
    extra = list(extra_args)

    def argv(chosen: int) -> list[str]:
        return [
            binary,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{chosen}",
            # Empty disables the gossip listener, which would otherwise bind 0.0.0.0:9094
            # and clash between parallel tests.
            "--cluster.listen-address=",
            *extra,
        ]

    process = _start_http_server("alertmanager", root, argv, port, "/-/ready", timeout)
    process.config_path = root / "alertmanager.yml"
    return process


def start_victoriametrics(
    workdir: str | os.PathLike[str],
    *,
    port: int | None = None,
    retention: str = "100y",
    fresh_reads: bool = True,
    extra_args: Iterable[str] = (),
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run single-node VictoriaMetrics; data goes to workdir/victoria-metrics-data.

    Its Prometheus-compatible API is at `url` (`/api/v1/query`, ...) and it takes samples
    at `/api/v1/import/prometheus` and by remote write at `/api/v1/write`. With
    `fresh_reads` (for tests and demos, where samples are read right after they are
    written): no response cache, and no 30 s latency offset that would hide the newest
    samples from an instant query at "now"; without it, VictoriaMetrics' defaults.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    binary = find_binary("victoria-metrics")
    extra = list(extra_args)

    def argv(chosen: int) -> list[str]:
        return [
            binary,
            f"-storageDataPath={root / 'victoria-metrics-data'}",
            f"-retentionPeriod={retention}",
            f"-httpListenAddr=127.0.0.1:{chosen}",
            *(["-search.disableCache", "-search.latencyOffset=0s"] if fresh_reads else []),
            *extra,
        ]

    return _start_http_server("victoria-metrics", root, argv, port, "/health", timeout)


def start_prometheus_agent(
    workdir: str | os.PathLike[str],
    config_yaml: str,
    *,
    port: int | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run Prometheus in agent mode (`--enable-feature=agent`, Prometheus >= 2.32).

    An agent scrapes and remote-writes (the config's `remote_write`), keeping only a
    write-ahead log in workdir/agent-data; it evaluates no rules and serves no queries.
    The server's `--storage.tsdb.*` flags are refused in agent mode, hence its own starter.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    binary = find_binary("prometheus")
    _write_files(root, {"prometheus.yml": config_yaml})
    extra = list(extra_args)

    def argv(chosen: int) -> list[str]:
        return [
            binary,
            "--enable-feature=agent",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.agent.path={root / 'agent-data'}",
            f"--web.listen-address=127.0.0.1:{chosen}",
            "--web.enable-lifecycle",
            *extra,
        ]

    process = _start_http_server("prometheus-agent", root, argv, port, "/-/ready", timeout)
    process.config_path = root / "prometheus.yml"
    return process


def start_vmalert(
    workdir: str | os.PathLike[str],
    rule_files: Mapping[str, str],
    *,
    datasource_url: str,
    remote_write_url: str | None = None,
    notifier_url: str | None = None,
    evaluation_interval: str = "15s",
    port: int | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run vmalert evaluating `rule_files` (paths relative to workdir -> YAML) live.

    Queries go to `datasource_url` (VictoriaMetrics' Prometheus API), recorded series and
    the `ALERTS` state back to `remote_write_url` (`/api/v1/write` is appended), alerts to
    the Alertmanager at `notifier_url`. Recorded samples are flushed every second, so the
    next evaluation and the generator see them without waiting for the 5 s default.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    binary = find_binary("vmalert")
    _write_files(root, dict(rule_files))
    paths = [root / relative for relative in rule_files]
    extra = list(extra_args)
    optional = []
    if remote_write_url:
        optional += [f"-remoteWrite.url={remote_write_url}", "-remoteWrite.flushInterval=1s"]
    if notifier_url:
        optional.append(f"-notifier.url={notifier_url}")

    def argv(chosen: int) -> list[str]:
        return [
            binary,
            *(f"-rule={path}" for path in paths),
            f"-datasource.url={datasource_url}",
            f"-evaluationInterval={evaluation_interval}",
            f"-httpListenAddr=127.0.0.1:{chosen}",
            *optional,
            *extra,
        ]

    return _start_http_server("vmalert", root, argv, port, "/health", timeout)


# `perfgen` without its console script: works from a source checkout and in any venv.
PERFGEN_MAIN = "from perfgen.cli import main; main(prog_name='perfgen')"
_URL_RE = re.compile(r"https?://[^\s'\"]+")


def perfgen_command(args: Sequence[str]) -> list[str]:
    """argv of `perfgen ARGS` run with this interpreter."""
    return [sys.executable, "-c", PERFGEN_MAIN, *args]


def perfgen_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a perfgen child, plus `env`.

    Unbuffered, so a ready line reaches the log (or pipe) at once. The child imports the
    perfgen package installed for this interpreter, as the caller does.
    """
    child_env = dict(os.environ)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    return child_env


def start_perfgen(
    args: Sequence[str],
    ready_prefix: str,
    workdir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run `perfgen ARGS` with this interpreter; ready when a line starts with ready_prefix.

    The first URL in the ready line (`exporter listening on http://127.0.0.1:PORT`)
    becomes the process's `url`. `env` is added to this process's environment.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    name = name or (args[0] if args else "perfgen")
    log_path = root / f"{name}.log"
    # The log file is the ready signal: perfgen_env() keeps Python from buffering it.
    process = ManagedProcess(name, perfgen_command(args), log_path, env=perfgen_env(env), cwd=root)
    try:
        line = process.wait_log_line(ready_prefix, timeout)
    except BaseException:
        # Not ready, or Ctrl-C while waiting: the caller never got the process.
        process.stop(grace=2.0)
        raise
    process.ready_line = line
    match = _URL_RE.search(line)
    process.url = match.group(0).rstrip("/.,") if match else None
    return process
