"""`perfgen validate`: every message names file and key; exit 0 valid, 1 invalid.

And `perfgen generate` runs the same check: it never writes a file the proxy refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_generator_plan import NOW, FakeRules, model, write_config
from test_generator_schema import BASE, ROOT, proxy_configs

from perfgen.cli import main
from perfgen.generator.run import EXIT_CHANGED, GenerateError, generate_once
from perfgen.generator.validate_cli import validate


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(validate, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_registered_in_the_perfgen_command():
    result = CliRunner().invoke(main, ["validate", "--help"])
    assert result.exit_code == 0 and "--config" in result.stdout


def test_every_config_in_the_repository_is_valid():
    args = [arg for path in proxy_configs() for arg in ("--config", str(ROOT / path))]
    code, out, err = run(*args)
    assert code == 0, err
    assert out.count(": valid: the proxy would start") == len(proxy_configs())


@pytest.mark.parametrize(
    "old, new, key, accepted",
    [
        (
            'strategy = "fill_first"',
            'strategy = "FillFirst"',
            "router.strategy",
            "accepts fill_first, round_robin, latency_optimized, cost_optimized",
        ),
        ('host = "127.0.0.1"', 'host = "localhost"', "proxy.host", "use e.g. '127.0.0.1'"),
        (
            'default = "groq,llama|',
            'default = "groq:llama|',
            "router.default",
            "write the primary as 'provider,model'",
        ),
    ],
)
def test_what_the_proxy_refuses(tmp_path, old, new, key, accepted):
    path = tmp_path / "config.toml"
    path.write_text(BASE.replace(old, new, 1))
    code, out, err = run("--config", str(path))
    assert code == 1
    line = next(line for line in err.splitlines() if f": {key}: " in line)
    assert line.startswith(f"{path}: {key}: the proxy refuses to start: ") and accepted in line
    assert f"{path}: invalid: the proxy would not start" in out


def test_no_proxy_table(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[router]" + BASE.split("[router]", 1)[1])
    code, _, err = run("--config", str(path))
    assert code == 1
    assert f"{path}: proxy: the proxy refuses to start: missing: the [proxy] table" in err


def test_dropped_entries_and_perfgen_errors_are_invalid_notes_are_not(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        BASE.replace("|ollama,qwen2.5-coder:latest", "|ollama,qwen2.5")
        + '[performance]\nmin_test_count = "many"\n'
    )
    code, out, err = run("--config", str(path))
    assert code == 1
    assert f"{path}: router.default: silently dropped at request time: model 'qwen2.5'" in err
    assert f"{path}: performance.min_test_count: perfgen: " in err
    assert "the proxy would start, but 1 route entr(ies) are silently dropped" in out

    path.write_text(BASE.replace('strategy = "fill_first"', 'think = "groq,llama"'))
    code, out, err = run("--config", str(path))
    assert code == 0, err
    assert f"{path}: router.think: note: the current proxy never routes" in out

    # A window whose sample count dips below min_test_count at every probe is a note.
    path.write_text(
        BASE + '[performance]\ntest_interval_minutes = 15\nwindow = "30m"\nmin_test_count = 3\n'
    )
    code, out, err = run("--config", str(path))
    assert code == 0, err
    assert f"{path}: performance.window: note: perfgen rules render warns: " in out
    assert "min_test_count to at most 2" in out


def test_check_env_reports_unset_keys(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text(BASE)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    monkeypatch.setenv("PROXY_API_KEY", "k")
    assert run("--config", str(path))[0] == 0
    code, _, err = run("--config", str(path), "--check-env")
    assert code == 1 and "providers[0].api_key: the proxy refuses to start: environment" in err


def test_unreadable_file(tmp_path):
    code, _, err = run("--config", str(tmp_path / "absent.toml"))
    assert code == 1 and "absent.toml: the proxy refuses to start: cannot read" in err


def test_snake_case_strategy_validates_and_generates(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    assert 'strategy = "fill_first"' in cfg.read_text()
    assert run("--config", str(cfg))[0] == 0
    result = generate_once(cfg, FakeRules({"a": model(0.5), "b": model(0.9)}), at=NOW)
    assert result.exit_code == EXIT_CHANGED and result.written == str(cfg)
    assert run("--config", str(cfg))[0] == 0


def test_generate_never_writes_a_file_the_proxy_refuses(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    cfg.write_text(cfg.read_text().replace('host = "127.0.0.1"', 'host = "localhost"'))
    before = cfg.read_bytes()
    with pytest.raises(GenerateError, match="proxy.host: 'localhost' is not an IP literal"):
        generate_once(cfg, FakeRules({"a": model(0.5), "b": model(0.9)}), at=NOW)
    assert cfg.read_bytes() == before and not Path(f"{cfg}.bak").exists()
