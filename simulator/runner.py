"""Run the simulator outside pytest-aiohttp: in a background thread or a subprocess.

A thread suits synchronous SDK clients in tests; a subprocess suits anything that wants
the timing-critical server on its own interpreter (benchmarks, cross-process ground truth).
Both bind port 0 by default and expose `base_url` once the server accepts connections.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from aiohttp import web

from perfgen.simulator.cli import READY_PREFIX
from perfgen.simulator.config import SimulatorConfig
from perfgen.simulator.server import create_app

_START_TIMEOUT_SECONDS = 15.0


class SimulatorThread:
    """`with SimulatorThread(config, seed=1) as sim: ... sim.base_url ...`"""

    def __init__(
        self, config: SimulatorConfig, seed: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self._config = config
        self._seed = seed
        self._host = host
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.base_url = ""

    def start(self) -> SimulatorThread:
        self._thread = threading.Thread(target=self._run, name="perfgen-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError("simulator thread did not start in time")
        if self._error is not None:
            raise RuntimeError(f"simulator thread failed: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_SECONDS)
            self._thread = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread, not lost
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(
            create_app(self._config, self._seed), access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, 0).start()
            self.base_url = f"http://{self._host}:{runner.addresses[0][1]}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


class SimulatorProcess:
    """`perfgen simulate` as a child process: `with SimulatorProcess(path) as sim: ...`"""

    def __init__(
        self,
        config_path: str | Path,
        seed: int | None = None,
        listen: str = "127.0.0.1:0",
        log_level: str = "warning",
    ) -> None:
        self._args = [
            sys.executable,
            "-c",
            "from perfgen.simulator.cli import simulate; simulate()",
            "--config",
            str(config_path),
            "--listen",
            listen,
            "--log-level",
            log_level,
        ]
        if seed is not None:
            self._args += ["--seed", str(seed)]
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> SimulatorProcess:
        # sys.executable has this very perfgen installed, wherever the caller runs from.
        self.process = subprocess.Popen(
            self._args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = _read_line(self.process, _START_TIMEOUT_SECONDS)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.base_url = line[len(READY_PREFIX) :].strip()
        return self

    def stop(self) -> int | None:
        """SIGTERM the child and wait; returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_START_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or its stderr if it exits or hangs first."""
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    if result and result[0]:
        return result[0]
    if process.poll() is None:
        process.kill()
    process.wait()
    return process.stderr.read() if process.stderr else ""
