"""What every story stack shares (`DemoStack`, `ScaleOutStack`): its processes and pager,
starting and stopping them, and waiting for a stage of the story."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from perfgen.stack.processes import ManagedProcess, find_binary
from perfgen.stack.webhook import WebhookReceiver

Log = Callable[[str], None]


def quiet(message: str) -> None:
    pass


class StoryTimeout(RuntimeError):
    """A stage of the story did not happen in time; the message says which and why."""


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


@dataclass
class RunningStack(ABC):
    """Processes on loopback in one work directory; `start()`, then `stop()` (also on
    error, idempotent). Subclasses start their processes in `_start_all`."""

    workdir: Path
    log: Log = quiet
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    receiver: WebhookReceiver = field(default_factory=WebhookReceiver)
    rule_files: dict[str, str] = field(default_factory=dict)
    # Called about once a second while a story step waits (the demo prints new alerts).
    tick: Callable[[], None] = lambda: None
    # Looked up before anything starts, so a missing one fails fast (BinaryMissing says
    # how to install it).
    binaries: ClassVar[tuple[str, ...]] = ("prometheus", "alertmanager")

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    def start(self) -> None:
        """Start everything, in dependency order; on any failure stop what started."""
        for binary in self.binaries:
            find_binary(binary)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise

    @abstractmethod
    def _start_all(self) -> None:
        """Start the receiver and every process, recording them in `processes`."""

    def stop(self) -> None:
        """Stop every process, the newest first (generators before what they read)."""
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()
        self.receiver.stop()

    def check_alive(self) -> None:
        """Raise ProcessFailed, with its log tail, when a process of the stack has died."""
        for process in self.processes.values():
            if not process.alive():
                raise process.failure(f"exited unexpectedly with code {process.popen.returncode}")

    def _url(self, name: str) -> str:
        process = self.processes.get(name)
        if process is None or process.url is None:
            raise RuntimeError(f"{name} is not running")
        return process.url

    def _wait(
        self,
        check: Callable[[], Any],
        timeout: float,
        what: str,
        status: Callable[[], str],
        progress: Log,
        every: float = 10.0,
    ) -> Any:
        """Poll `check` once a second until it returns something true; StoryTimeout after
        `timeout`, naming `what` and `status()`. Reports progress every `every` seconds."""
        started = time.monotonic()
        last_report = started
        while True:
            self.check_alive()
            self.tick()
            result = check()
            if result:
                return result
            now = time.monotonic()
            if now - started >= timeout:
                raise StoryTimeout(
                    f"gave up waiting for {what} after {timeout:.0f}s "
                    f"({status()}); logs are in {self.workdir}"
                )
            if now - last_report >= every:
                last_report = now
                progress(f"... waiting for {what} ({now - started:.0f}s): {status()}")
            time.sleep(1.0)
