"""`perfgen generate --apply`: the proxy (its stand-in) routes by the file, or exit 1.

The decisions come from canned rule numbers (test_generator_plan.FakeRules); the proxy
is the stand-in process (perfgen.stack.proxy_standin), restarted by a real command.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from standin_fixtures import SECRET, chat, management, proxy_config, served, simulator, write  # noqa: F401
from test_generator_plan import NOW, FakeRules, model

from perfgen.generator.apply import Applier, ApplyError, RestartBudget
from perfgen.generator.generate_cli import generate
from perfgen.generator.metrics import GeneratorMetrics
from perfgen.generator.promql import PrometheusConnection
from perfgen.generator.run import EXIT_CHANGED, EXIT_ERROR, EXIT_UNCHANGED, Runner, generate_once
from perfgen.stack.proxy_standin import start_standin

pytestmark = pytest.mark.integration

PERFORMANCE = """
[performance]
test_interval_minutes = 5
min_test_count = 5
window = "1h"

[performance.generator]
hysteresis_margin = 0.10
hysteresis_for = "15m"
max_chain = 3
"""
OLD = "fastcloud,swift-chat|fastcloud,swift-bulk"
NEW = "fastcloud,swift-bulk|fastcloud,swift-chat"
# swift-bulk now scores far better: the generator promotes it.
RULES = FakeRules({"swift-chat": model(0.5), "swift-bulk": model(0.9)}, provider="fastcloud")


def config(tmp_path: Path, simulator_url: str = "http://127.0.0.1:1") -> Path:
    return write(tmp_path / "config.toml", proxy_config(simulator_url, OLD, extra=PERFORMANCE))


def applier(proxy_url: str, command: str | list[str], **kwargs: object) -> Applier:
    return Applier(
        "restart",
        proxy_url,
        management_key=SECRET,
        restart_command=command,
        timeout=kwargs.pop("timeout", 15.0),  # type: ignore[arg-type]
        poll_interval=0.1,
        **kwargs,  # type: ignore[arg-type]
    )


def live_default(proxy_url: str) -> str:
    return str(management(proxy_url).json()["router"]["default"])


def test_restart_applies_and_the_new_primary_serves(tmp_path, simulator):  # noqa: F811
    cfg = config(tmp_path, simulator)
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        step = applier(url, ["kill", "-HUP", str(proxy.pid)])
        result = generate_once(cfg, RULES, at=NOW, applier=step)
        assert result.exit_code == EXIT_CHANGED, result.error
        assert result.applied is not None and result.applied.action == "restarted"
        assert result.applied.applied and live_default(url) == NEW
        response = chat(url, "gpt-client")
        assert response.headers["x-standin-route"] == "fastcloud,swift-bulk"
        assert served(simulator, response)["model"] == "swift-bulk"  # the simulator's record
        # Next run: nothing changed and the proxy already routes by the file: no restart.
        again = generate_once(cfg, RULES, at=NOW, applier=applier(url, ["false"]))
        assert again.exit_code == EXIT_UNCHANGED and again.applied.action == "none"


def test_failed_command_is_exit_1_with_a_metric(tmp_path):
    cfg = config(tmp_path)
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        result = generate_once(cfg, RULES, at=NOW, applier=applier(url, ["false"]))
        assert result.exit_code == EXIT_ERROR
        assert result.applied.reason == "command" and "exited 1" in (result.error or "")
        assert NEW in cfg.read_text() and live_default(url) == OLD
        metrics = GeneratorMetrics()
        metrics.record_apply(result.applied)
        assert sample(metrics, "perfgen_generator_apply_failures_total", reason="command") == 1
        assert sample(metrics, "perfgen_generator_routes_applied") == 0


def test_a_proxy_back_with_the_old_routes_is_a_mismatch(tmp_path):
    cfg = config(tmp_path)
    # The proxy runs from another copy (as with --out pointing elsewhere): a restart
    # brings it back with the routes it had.
    started = write(tmp_path / "running.toml", cfg.read_text())
    with start_standin(started, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        # Long enough for the re-executed stand-in to be back (about 1 s on a busy machine):
        # the answer must be "other routes", not "did not come back".
        step = applier(url, ["kill", "-HUP", str(proxy.pid)], timeout=6.0)
        result = generate_once(cfg, RULES, at=NOW, applier=step)
        assert result.exit_code == EXIT_ERROR
        assert result.applied.reason == "mismatch"
        assert f"router.default: live '{OLD}', file '{NEW}'" in (result.error or "")
        assert proxy.alive() and live_default(url) == OLD


def test_a_proxy_that_does_not_come_back(tmp_path):
    cfg = config(tmp_path)
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        result = generate_once(
            cfg, RULES, at=NOW, applier=applier(url, ["kill", "-TERM", str(proxy.pid)], timeout=2.0)
        )
        assert result.exit_code == EXIT_ERROR and result.applied.reason == "no_comeback"
        assert "did not answer GET /health" in (result.error or "")


def test_restarts_are_bounded_and_a_waiting_change_says_so(tmp_path):
    cfg = config(tmp_path)
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        step = applier(url, ["kill", "-HUP", str(proxy.pid)], budget=RestartBudget(0))
        result = generate_once(cfg, RULES, at=NOW, applier=step)
        # Written, not applied: not an error, but said in the outcome and the metrics.
        assert result.exit_code == EXIT_CHANGED and result.applied.action == "waiting"
        assert "route change waits: 0 restart(s) in the last hour" in result.applied.message
        assert live_default(url) == OLD
        metrics = GeneratorMetrics()
        metrics.record_apply(result.applied)
        assert sample(metrics, "perfgen_generator_apply_waiting") == 1


def test_budget_is_a_sliding_hour():
    now = [1000.0]
    budget = RestartBudget(2, clock=lambda: now[0])
    budget.spend()
    budget.spend()
    assert not budget.allows() and budget.next_allowed_in() == 3600
    now[0] += 3600
    assert budget.allows() and budget.used == 0


def test_budget_state_holds_across_one_shot_runs(tmp_path):
    now = [1000.0]
    state = tmp_path / "restarts.json"
    first = RestartBudget(1, clock=lambda: now[0], state=state)
    first.spend()
    # A later process (the next timer run) sees the restart of the first.
    assert not RestartBudget(1, clock=lambda: now[0] + 60, state=state).allows()
    assert RestartBudget(1, clock=lambda: now[0] + 3600, state=state).allows()
    state.write_text("not json")
    with pytest.raises(ApplyError, match="unreadable"):
        RestartBudget(1, state=state)


def test_every_mode_keeps_one_applier_and_heals_a_waiting_change(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    monkeypatch.setattr(PrometheusConnection, "client", lambda self: RULES)
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        url = proxy.url or ""
        now = [time.time()]
        budget = RestartBudget(1, clock=lambda: now[0])
        budget.spend()  # a restart an instant ago: this change must wait
        step = applier(url, ["kill", "-HUP", str(proxy.pid)], budget=budget)
        run = Runner(
            str(cfg),
            PrometheusConnection("http://unused"),
            dict(out=None, dry_run=False, applier=step),
            show_explain=False,
            quiet=True,
            looping=True,
        )
        run.metrics = GeneratorMetrics()
        assert run() == EXIT_CHANGED and live_default(url) == OLD
        assert sample(run.metrics, "perfgen_generator_apply_waiting") == 1
        now[0] += 3600  # an hour later: the file is unchanged, the proxy still differs
        assert run() == EXIT_UNCHANGED and live_default(url) == NEW
        assert sample(run.metrics, "perfgen_generator_routes_applied") == 1
        assert sample(run.metrics, "perfgen_generator_apply_waiting") == 0
        assert sample(run.metrics, "perfgen_generator_proxy_restarts_total") == 1


def test_reload_is_verified_and_warns_that_routing_is_unchanged(tmp_path, simulator):  # noqa: F811
    cfg = config(tmp_path, simulator)
    # The stand-in's cwd holds the file, so the reload re-reads what generate wrote.
    with start_standin(cfg, tmp_path) as proxy:
        url = proxy.url or ""
        step = Applier("reload", url, management_key=SECRET, timeout=5.0, poll_interval=0.1)
        result = generate_once(cfg, RULES, at=NOW, applier=step)
        assert result.exit_code == EXIT_CHANGED and result.applied.action == "reloaded"
        assert any("a reload changes nothing in routing" in w for w in result.applied.warnings)
        assert live_default(url) == NEW
        # What the warning is about: the stand-in, like the proxy, still routes the old way.
        assert chat(url, "gpt-client").headers["x-standin-route"] == "fastcloud,swift-chat"


def test_cli_checks_and_the_literal_secret(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    monkeypatch.delenv("PERFGEN_MANAGEMENT_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(generate, ["--config", str(cfg), "--prometheus", "http://x", *args])
        return result.exit_code, result.stderr

    code, err = invoke("--apply", "restart")
    assert code == 2 and "--apply restart needs --restart-command" in err
    code, err = invoke("--restart-command", "true")
    assert code == 2 and "need --apply" in err
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false"))
    code, err = invoke("--apply", "reload", "--proxy-url", "http://127.0.0.1:1")
    assert code == 1 and "management.enabled" in err
    cfg.write_text(cfg.read_text().replace("enabled = false", "enabled = true"))

    monkeypatch.setattr(PrometheusConnection, "client", lambda self: RULES)
    monkeypatch.setenv("MANAGEMENT_SECRET", "expanded-would-be-wrong")
    with start_standin(cfg, tmp_path / "proxy") as proxy:
        # No PERFGEN_MANAGEMENT_KEY: the file's secret_key is sent as written, "$..." and all.
        code, err = invoke(
            "--apply",
            "restart",
            "--restart-command",
            f"kill -HUP {proxy.pid}",
            "--proxy-url",
            proxy.url or "",
            "-q",
        )
        assert code == EXIT_CHANGED, err
        assert "proxy restarted; its live router routes equal the file's" in err
        assert "expanded-would-be-wrong" not in err


def sample(metrics: GeneratorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)
