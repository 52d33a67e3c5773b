"""The proxy stand-in behaves as terraphim-llm-proxy where perfgen touches it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from standin_fixtures import (
    PROXY_KEY,
    chat,
    management,
    proxy_config,
    served,
    simulator,  # noqa: F401 - a fixture
    write,
)

from perfgen.stack.processes import ProcessFailed
from perfgen.stack.proxy_standin import start_standin

pytestmark = pytest.mark.integration


def test_refuses_to_start_on_what_the_proxy_refuses(tmp_path):
    path = write(tmp_path / "bad.toml", proxy_config("http://127.0.0.1:1", "fastcloud,swift-chat"))
    path.write_text(path.read_text().replace("fill_first", "FillFirst"))
    done = subprocess.run(
        [sys.executable, "-m", "perfgen.stack.proxy_standin", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and "router.strategy: 'FillFirst'" in done.stderr
    with pytest.raises(ProcessFailed, match="exited with code 1"):
        start_standin(path, tmp_path / "run")


def test_health_config_and_management_auth(tmp_path):
    path = write(tmp_path / "c.toml", proxy_config("http://127.0.0.1:1", "fastcloud,swift-chat"))
    with start_standin(path, tmp_path) as proxy:
        url = proxy.url or ""
        assert requests.get(f"{url}/health", timeout=5).json()["status"] == "healthy"
        assert management(url, "wrong").status_code == 401
        assert requests.get(f"{url}/v0/management/config", timeout=5).status_code == 401
        body = management(url).json()  # the literal "$MANAGEMENT_SECRET"
        assert body["router"]["default"] == "fastcloud,swift-chat"
        assert body["router"]["think"] is None and body["router"]["strategy"] == "fill_first"
        assert body["proxy"]["api_key"] == "[REDACTED]"
        assert {p["api_key"] for p in body["providers"]} == {"[REDACTED]"}
        assert PROXY_KEY not in str(body) and "demo-fastcloud-key" not in str(body)


def test_forwards_to_the_scenario_primary_and_reload_changes_no_routing(tmp_path, simulator):  # noqa: F811
    started = write(
        tmp_path / "started.toml",
        proxy_config(
            simulator,
            "fastcloud,swift-chat|fastcloud,swift-bulk",
            background="fastcloud,swift-bulk",
        ),
    )
    with start_standin(started, tmp_path) as proxy:
        url = proxy.url or ""
        response = chat(url, "gpt-whatever")
        assert response.status_code == 200, response.text
        assert response.headers["x-standin-route"] == "fastcloud,swift-chat"
        assert served(simulator, response)["model"] == "swift-chat"
        # A client model containing "haiku" is the background scenario.
        assert chat(url, "claude-3-haiku").headers["x-standin-route"] == "fastcloud,swift-bulk"
        # Streaming is passed through: the SSE terminator arrives through the stand-in.
        streamed = chat(url, "gpt-whatever", stream=True)
        lines = [line for line in streamed.iter_lines() if line]
        assert lines[-1] == b"data: [DONE]" and served(simulator, streamed)["stream"]

        # Reload: ./config.toml of the stand-in's cwd is read and shown, not routed by.
        write(tmp_path / "config.toml", proxy_config(simulator, "fastcloud,swift-bulk"))
        reload = requests.post(
            f"{url}/v0/management/config/reload",
            headers={"X-Management-Key": "$MANAGEMENT_SECRET"},
            timeout=5,
        )
        assert reload.status_code == 200
        assert management(url).json()["router"]["default"] == "fastcloud,swift-bulk"
        assert chat(url, "gpt-whatever").headers["x-standin-route"] == "fastcloud,swift-chat"

        # A wrong client key is refused before anything is forwarded.
        denied = requests.post(f"{url}/v1/chat/completions", json={"model": "x"}, timeout=5)
        assert denied.status_code == 401
