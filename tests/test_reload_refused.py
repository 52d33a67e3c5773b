"""Every refused reload keeps the running config: each bad file, through SIGHUP and the API.

One real exporter process; the good file names one target, each bad file names another,
so /sd shows which config is running. No probe is paid for: only /sd and /metrics are read.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from perfgen.stack.processes import ManagedProcess, free_port, http_get, start_perfgen

GOOD = """
[[providers]]
name = "local"
api_base_url = "http://127.0.0.1:{port}/v1"
api_key = "$PERFGEN_TEST_RELOAD_KEY"
models = ["{model}"]
"""

# Each is refused for another reason; all of them used to be accepted or to crash a reload.
BAD: dict[str, bytes] = {
    "nan": (GOOD + "[performance]\ntest_interval_minutes = nan\n").encode(),
    "infinity": (GOOD + "[performance]\ntest_timeout_seconds = inf\n").encode(),
    "not_utf8": (GOOD + "# caf\xe9\n").encode("latin-1"),
    "bad_url": GOOD.replace("http://127.0.0.1:{port}/v1", "http://[::1/v1").encode(),
    "bad_port": GOOD.replace("127.0.0.1:{port}", "127.0.0.1:99999").encode(),
    "not_toml": (GOOD + "[performance\n").encode(),
    "unknown_key": (GOOD + "[performance]\nunknown_knob = 1\n").encode(),
}


def write(path: Path, template: bytes, model: str) -> None:
    path.write_bytes(template.replace(b"{port}", b"9").replace(b"{model}", model.encode()))


def targets(url: str) -> set[str]:
    status, body = http_get(f"{url}/sd")
    assert status == 200
    return {group["targets"][0] for group in json.loads(body)}


def reload_gauge(url: str) -> float:
    _, body = http_get(f"{url}/metrics")
    for row in body.decode().splitlines():
        if row.startswith("perfgen_exporter_config_last_reload_successful "):
            return float(row.split()[-1])
    raise AssertionError("no reload gauge on /metrics")


def wait_gauge(url: str, value: float) -> None:
    deadline = time.monotonic() + 10
    while reload_gauge(url) != value:
        assert time.monotonic() < deadline, f"reload gauge never became {value}"
        time.sleep(0.05)


def post_reload(url: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/-/reload", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> ManagedProcess:
    workdir = tmp_path_factory.mktemp("reload")
    config = workdir / "config.toml"
    write(config, GOOD.encode(), "good")
    process = start_perfgen(
        ["exporter", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"],
        "exporter listening on",
        workdir,
        {"PERFGEN_TEST_RELOAD_KEY": "sk-reload-test-key-0123"},
    )
    process.config_path = config
    yield process
    process.stop()


@pytest.mark.parametrize("how", ["sighup", "post"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_refused_reload_keeps_the_running_config(
    exporter: ManagedProcess, bad: str, how: str
) -> None:
    url, config = exporter.url, exporter.config_path
    assert url is not None and config is not None
    assert targets(url) == {"local:good"}
    write(config, BAD[bad], "bad")
    if how == "sighup":
        exporter.popen.send_signal(signal.SIGHUP)
        wait_gauge(url, 0)
    else:
        status, text = post_reload(url)
        assert status == 500, text
        assert text.startswith(f"reload failed, running config kept: {config}")
        assert reload_gauge(url) == 0
    assert exporter.alive()
    assert targets(url) == {"local:good"}
    # Back to the good file: the next case starts from a successful reload.
    write(config, GOOD.encode(), "good")
    assert post_reload(url)[0] == 200
    wait_gauge(url, 1)
    assert "Traceback" not in exporter.log_tail(400)
