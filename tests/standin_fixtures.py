"""Shared by the stand-in and apply tests: a simulator and proxy configs pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from perfgen.stack.processes import ManagedProcess, project_root, start_perfgen

PROXY_KEY = "standin-client-key"
SECRET = "$MANAGEMENT_SECRET"  # literal: the proxy never expands it


def proxy_config(simulator: str, default: str, *, background: str = "", extra: str = "") -> str:
    """A config the proxy accepts, routing to the demo simulator's providers."""
    routes = f'default = "{default}"\n' + (f'background = "{background}"\n' if background else "")
    return f"""# kept by the generator
[proxy]
host = "127.0.0.1"
port = 3456
api_key = "{PROXY_KEY}"

[router]
{routes}strategy = "fill_first"

[management]
enabled = true
secret_key = "{SECRET}"

[[providers]]
name = "fastcloud"
api_base_url = "{simulator}/fastcloud/v1"
api_key = "demo-fastcloud-key"
models = ["swift-chat", "swift-bulk"]

[[providers]]
name = "anthropic"
api_base_url = "{simulator}/anthropic"
api_key = "demo-anthropic-key"
models = ["claude-sim-haiku"]
{extra}"""


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("simulator")
    config = project_root() / "stack" / "demo-simulator.toml"
    process: ManagedProcess = start_perfgen(
        ["simulate", "--config", str(config), "--listen", "127.0.0.1:0"],
        "simulator listening on ",
        workdir,
    )
    try:
        yield process.url or ""
    finally:
        process.stop()


def chat(proxy: str, model: str, *, stream: bool = False) -> requests.Response:
    return requests.post(
        f"{proxy}/v1/chat/completions",
        json={
            "model": model,
            "stream": stream,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"Authorization": f"Bearer {PROXY_KEY}"},
        timeout=30,
        stream=stream,
    )


def served(simulator: str, response: requests.Response) -> dict[str, Any]:
    """The simulator's own record of the request the stand-in forwarded (ground truth)."""
    records = requests.get(f"{simulator}/-/requests?limit=1", timeout=5).json()["requests"]
    assert records, "the simulator recorded no request"
    return dict(records[0])


def management(proxy: str, secret: str = SECRET) -> requests.Response:
    return requests.get(
        f"{proxy}/v0/management/config", headers={"X-Management-Key": secret}, timeout=5
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
