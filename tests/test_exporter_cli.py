"""`perfgen exporter` and `perfgen probe` as users run them: real processes, real simulator."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from click.testing import CliRunner
from test_exporter_app import SIM_KEY, SIMULATOR, exporter_toml

from perfgen.exporter.cli import probe
from perfgen.simulator.config import parse_simulator_config
from perfgen.simulator.server import create_app as create_simulator

ROOT = Path(__file__).resolve().parents[1]
PERFGEN = [sys.executable, "-c", "from perfgen.cli import main; main()"]


@pytest.fixture
def cli_env(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("PERFGEN_TEST_SIM_KEY", SIM_KEY)
    monkeypatch.setenv("PERFGEN_TEST_ANTH_KEY", "sk-ant-unused-here")
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest_asyncio.fixture
async def config_file(aiohttp_server, tmp_path, cli_env) -> Path:
    sim = await aiohttp_server(create_simulator(parse_simulator_config(SIMULATOR)))
    path = tmp_path / "config.toml"
    path.write_text(exporter_toml(sim.port))
    return path


async def run_perfgen(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *PERFGEN,
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_probe_json_success(config_file, cli_env):
    code, out, err = await run_perfgen(
        cli_env,
        "probe",
        "--config",
        str(config_file),
        "--target",
        "sim:fast",
        "--module",
        "latency",
        "--format",
        "json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["success"] is True and result["failure_reason"] is None
    assert result["target"] == "sim:fast" and result["token_count_source"] == "usage"
    for key in (
        "provider",
        "model",
        "module",
        "ttft_seconds",
        "first_content_seconds",
        "duration_seconds",
        "output_tokens",
        "input_tokens",
        "tokens_per_second",
    ):
        assert key in result
    # Issue 10's fields: no reasoning in this model, nothing cached, a fresh connection.
    assert result["reasoning_tokens"] == 0 and result["reasoning_hidden"] is False
    assert result["decode_rate_basis"] == "output" and result["cached_input_tokens"] == 0
    assert result["prompt_cache_hit"] is False and result["connect_seconds"] >= 0
    assert result["spread"]["ttft_seconds"] == [result["ttft_seconds"]] * 2  # one request
    assert SIM_KEY not in out + err


@pytest.mark.asyncio
async def test_probe_text_is_the_probe_exposition(config_file, cli_env):
    code, out, err = await run_perfgen(
        cli_env, "probe", "--config", str(config_file), "--target", "sim:fast", "--module", "health"
    )
    assert code == 0, err
    assert 'llm_probe_success{model="fast",module="health",provider="sim"} 1.0' in out
    assert "llm_ttft_seconds_bucket" in out
    labels = '{model="fast",module="health",provider="sim"}'
    for name in ("llm_probe_ttft_min_seconds", "llm_probe_ttft_max_seconds"):
        assert f"{name}{labels}" in out, name
    # The decode rate's spread exists exactly when a rate was measured: on a busy machine
    # the six tokens (2.5 ms apart) can arrive in one read, leaving no decode time.
    rates = next(
        float(line.rsplit(" ", 1)[1])
        for line in out.splitlines()
        if line.startswith(f"llm_decode_tokens_per_second_count{labels}")
    )
    for name in ("llm_probe_tokens_per_second_min", "llm_probe_tokens_per_second_max"):
        assert (f"{name}{labels}" in out) == (rates > 0), name
    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=out.encode(), capture_output=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.asyncio
async def test_failed_probe_exits_1_and_still_prints(config_file, cli_env):
    code, out, err = await run_perfgen(
        cli_env,
        "probe",
        "--config",
        str(config_file),
        "--target",
        "sim:broken",
        "--module",
        "latency",
        "--format",
        "json",
    )
    assert code == 1
    assert json.loads(out)["failure_reason"] == "http_5xx"
    assert "probe failed: http_5xx" in err


@pytest.mark.asyncio
async def test_probe_with_an_unsendable_key_fails_cleanly(config_file, cli_env):
    env = {**cli_env, "PERFGEN_TEST_SIM_KEY": SIM_KEY + "\u2019"}
    code, out, err = await run_perfgen(
        env, "probe", "--config", str(config_file), "--target", "sim:fast", "--module", "latency"
    )
    assert code == 1
    assert (
        'llm_probe_failed{model="fast",module="latency",provider="sim",reason="no_api_key"} '
        "1.0" in out
    )
    assert "probe failed: no_api_key" in err and "$PERFGEN_TEST_SIM_KEY" in err
    assert "Traceback" not in err and SIM_KEY not in out + err


def test_probe_usage_errors_exit_2(tmp_path, cli_env):
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(1))
    runner = CliRunner()
    unknown_target = runner.invoke(
        probe, ["--config", str(config), "--target", "sim:nope", "--module", "latency"]
    )
    assert unknown_target.exit_code == 2 and "unknown target 'sim:nope'" in unknown_target.output
    unknown_module = runner.invoke(
        probe, ["--config", str(config), "--target", "sim:fast", "--module", "nope"]
    )
    assert unknown_module.exit_code == 2 and "unknown module 'nope'" in unknown_module.output


def test_probe_bad_config_exits_1(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(1, extra="nonsense = true"))
    result = CliRunner().invoke(
        probe, ["--config", str(config), "--target", "sim:fast", "--module", "latency"]
    )
    assert result.exit_code == 1
    assert "performance.exporter.nonsense" in result.output and str(config) in result.output


@pytest.mark.asyncio
async def test_exporter_serves_reloads_on_sighup_and_stops_on_sigterm(config_file, cli_env):
    process = await asyncio.create_subprocess_exec(
        *PERFGEN,
        "exporter",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        cwd=ROOT,
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("exporter listening on http://127.0.0.1:")
        base = line.split()[-1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/-/healthy") as response:
                assert response.status == 200
            async with http.get(
                f"{base}/probe", params={"target": "sim:fast", "module": "latency"}
            ) as response:
                assert response.status == 200
                assert (
                    'llm_probe_success{model="fast",module="latency",provider="sim"} 1.0'
                    in await response.text()
                )
            config_file.write_text(
                config_file.read_text().replace('"sim:fast", "anthropic:claude-sim"', '"sim:other"')
            )
            process.send_signal(signal.SIGHUP)
            for _ in range(100):
                async with http.get(f"{base}/sd") as response:
                    targets = {g["targets"][0] for g in await response.json()}
                if targets == {"sim:other"}:
                    break
                await asyncio.sleep(0.05)
            assert targets == {"sim:other"}
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    records = [json.loads(line) for line in err.decode().splitlines()]
    assert {"exporter started", "probe finished", "config reloaded"} <= {r["msg"] for r in records}
    assert SIM_KEY not in err.decode()
    # The exporter process (only it, not the library) tunes the cyclic GC: exporter/cli.py.
    started = next(r for r in records if r["msg"] == "exporter started")
    assert started["gc_threshold"] == "20000,20,100" and started["gc_frozen"] > 0


@pytest.mark.asyncio
async def test_sighup_with_a_bad_config_keeps_the_running_one(config_file, cli_env):
    process = await asyncio.create_subprocess_exec(
        *PERFGEN,
        "exporter",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        cwd=ROOT,
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        base = line.split()[-1]
        async with aiohttp.ClientSession() as http:

            async def reload_gauge() -> str:
                async with http.get(f"{base}/metrics") as response:
                    text = await response.text()
                return next(
                    row.split()[-1]
                    for row in text.splitlines()
                    if row.startswith("perfgen_exporter_config_last_reload_successful ")
                )

            assert float(await reload_gauge()) == 1
            # New targets and an unknown key: the whole file is refused.
            config_file.write_text(
                config_file.read_text().replace('"sim:fast", "anthropic:claude-sim"', '"sim:other"')
                + "unknown_knob = 1\n"
            )
            process.send_signal(signal.SIGHUP)
            for _ in range(100):
                if float(await reload_gauge()) == 0:
                    break
                await asyncio.sleep(0.05)
            assert float(await reload_gauge()) == 0
            async with http.get(f"{base}/sd") as response:
                targets = {g["targets"][0] for g in await response.json()}
            assert targets == {"sim:fast", "anthropic:claude-sim"}
            for target in targets:  # the old targets are still probed, for real
                async with http.get(
                    f"{base}/probe", params={"target": target, "module": "health"}
                ) as response:
                    text = await response.text()
                assert response.status == 200
                if target == "sim:fast":
                    assert (
                        'llm_probe_success{model="fast",module="health",provider="sim"} 1.0' in text
                    )
                assert "llm_probe_success{" in text and "llm_probe_cached{" in text
                assert [r for r in text.splitlines() if r.startswith("llm_probe_cached{")][
                    0
                ].endswith(" 0.0")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    records = [json.loads(line) for line in err.decode().splitlines()]
    failed = [r for r in records if r["msg"] == "config reload failed, running config kept"]
    assert failed and failed[0]["key"] == "performance.exporter.unknown_knob"
    assert "config reloaded" not in {r["msg"] for r in records}


@pytest.mark.asyncio
async def test_exporter_bad_config_and_bad_listen(tmp_path, cli_env):
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(1, extra="nonsense = true"))
    code, out, err = await run_perfgen(cli_env, "exporter", "--config", str(config))
    assert code == 1 and "performance.exporter.nonsense" in err and out == ""
    config.write_text(exporter_toml(1))
    code, _, err = await run_perfgen(
        cli_env, "exporter", "--config", str(config), "--listen", "nowhere"
    )
    assert code == 2 and "HOST:PORT" in err
