"""`perfgen simulate` as a process, and the thread runner other tests can use."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
from click.testing import CliRunner
from simulator_fixtures import OPENAI_KEY, make_config

from perfgen.simulator.cli import simulate
from perfgen.simulator.runner import SimulatorProcess, SimulatorThread

EXAMPLE = Path(__file__).resolve().parent.parent / "simulator" / "example.toml"


def test_process_prints_ready_line_serves_and_stops_cleanly_on_sigterm() -> None:
    with SimulatorProcess(EXAMPLE, seed=1) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(
            base_url=f"{sim.base_url}/fastai/v1", api_key="sim-fast-key", max_retries=0
        )
        reply = client.chat.completions.create(
            model="fast-chat",
            messages=[{"role": "user", "content": "Reply with: OK"}],
            max_tokens=3,
        )
        assert reply.choices[0].message.content.startswith("OK ")
        # A request hung forever must not hold up shutdown.
        hung = threading.Thread(target=_hang_request, args=(sim.base_url,), daemon=True)
        hung.start()
        time.sleep(0.2)
        started = time.monotonic()
        assert sim.stop() == 0
        assert time.monotonic() - started < 3


def _hang_request(base_url: str) -> None:
    # An unknown model answers at once; a PATCHed hang fault does not answer at all.
    patch = urllib.request.Request(
        f"{base_url}/-/profiles/slowcloud/slow-chat",
        data=b'{"error_rate": 1, "faults": {"hang": 1}}',
        method="PATCH",
    )
    urllib.request.urlopen(patch, timeout=5).close()
    body = b'{"model": "slow-chat", "messages": [{"role": "user", "content": "x"}]}'
    request = urllib.request.Request(f"{base_url}/slowcloud/v1/chat/completions", data=body)
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except (urllib.error.URLError, OSError):
        pass


def test_bad_config_exits_with_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[providers]]\nname = "p"\nprotocl = "openai"\n')
    result = CliRunner().invoke(simulate, ["--config", str(path)])
    assert result.exit_code == 1
    assert f"{path}: providers[0].protocl: unknown key" in result.output
    result = CliRunner().invoke(simulate, ["--config", str(path), "--listen", "nope"])
    assert result.exit_code == 2
    assert "'nope' is not HOST:PORT" in result.output


def test_subprocess_entry_point_help() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from perfgen.simulator.cli import simulate; simulate()", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    ).stdout
    assert "--listen" in out and "127.0.0.1:8700" in out


def test_thread_runner_serves_sync_sdk_clients() -> None:
    config = make_config({"m": {"ttft_ms": 5, "tokens_per_second": 500, "output_tokens": 4}})
    with SimulatorThread(config, seed=3) as sim:
        client = openai.OpenAI(base_url=f"{sim.base_url}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        assert text == "the quick brown fox "
        with urllib.request.urlopen(f"{sim.base_url}/-/requests", timeout=5) as response:
            records = json.load(response)["requests"]
        assert [r["tokens_sent"] for r in records] == [4]
