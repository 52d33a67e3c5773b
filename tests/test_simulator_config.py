from __future__ import annotations

import random
from pathlib import Path

import pytest

from perfgen.simulator.config import (
    ConfigError,
    Profile,
    apply_profile_changes,
    load_simulator_config,
)
from perfgen.simulator.plan import draw_plan

EXAMPLE = Path(__file__).resolve().parent.parent / "simulator" / "example.toml"

VALID = """
[[providers]]
name = "p"
protocol = "openai"
  [[providers.models]]
  name = "m"
  ttft_ms = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return path


def test_example_config_has_the_documented_profiles() -> None:
    config = load_simulator_config(EXAMPLE)
    assert len(config.providers) == 3
    models = {m.name: m for p in config.providers for m in p.models}
    assert len(models) >= 6
    assert models["deep-think"].profile.reasoning_tokens > 0
    assert models["flaky-chat"].profile.error_rate > 0
    assert models["slow-chat"].profile.ttft_ms > 5 * models["fast-chat"].profile.ttft_ms
    assert (
        models["bulk-gen"].profile.tokens_per_second
        > 2 * models["fast-chat"].profile.tokens_per_second
    )
    assert any(p.protocol == "anthropic" for p in config.providers)


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("bogus = 1\n" + VALID, "bogus"),
        (
            VALID.replace('protocol = "openai"', 'protocol = "openai"\nurl = "x"'),
            "providers[0].url",
        ),
        (VALID + "  ttft_msx = 3\n", "providers[0].models[0].ttft_msx"),
        (VALID + "  faults = { http_418 = 1 }\n", "providers[0].models[0].faults.http_418"),
        (
            VALID + "  [[providers.models.phases]]\n  after_seconds = 1\n  set = { speed = 2 }\n",
            "providers[0].models[0].phases[0].set.speed",
        ),
        (
            VALID + "  [[providers.models.phases]]\n  after_second = 1\n  set = { ttft_ms = 2 }\n",
            "providers[0].models[0].phases[0].after_second",
        ),
    ],
)
def test_unknown_keys_are_errors_naming_file_and_key(
    tmp_path: Path, text: str, key_path: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_simulator_config(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: {key_path}:"), message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("replacement", "key_path"),
    [
        ("ttft_ms = -1", "providers[0].models[0].ttft_ms"),
        ('ttft_ms = "fast"', "providers[0].models[0].ttft_ms"),
        ("tokens_per_second = 0", "providers[0].models[0].tokens_per_second"),
        ("error_rate = 1.5", "providers[0].models[0].error_rate"),
        ('reasoning_shape = "thought"', "providers[0].models[0].reasoning_shape"),
        ('usage_position = "last"', "providers[0].models[0].usage_position"),
        ('max_tokens_field = "max_output"', "providers[0].models[0].max_tokens_field"),
        ('rejected_parameters = "temperature"', "providers[0].models[0].rejected_parameters"),
        ('prompt_cache = "on"', "providers[0].models[0].prompt_cache"),
        ("cache_ttft_factor = 0", "providers[0].models[0].cache_ttft_factor"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, replacement: str, key_path: str) -> None:
    path = write(tmp_path, VALID.replace("ttft_ms = 100", replacement))
    with pytest.raises(ConfigError) as excinfo:
        load_simulator_config(path)
    assert str(excinfo.value).startswith(f"{path}: {key_path}: must be")


def test_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="providers: at least one"):
        load_simulator_config(write(tmp_path, "seed = 1\n"))
    with pytest.raises(ConfigError, match=r"providers\[0\].protocol"):
        load_simulator_config(write(tmp_path, VALID.replace('"openai"', '"gemini"')))
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_simulator_config(write(tmp_path, "[[providers]\n"))
    with pytest.raises(ConfigError, match="duplicate"):
        load_simulator_config(write(tmp_path, VALID + VALID))
    with pytest.raises(ConfigError, match="cannot read"):
        load_simulator_config(tmp_path / "missing.toml")


def test_phase_values_are_validated_at_load(tmp_path: Path) -> None:
    text = (
        VALID + "  [[providers.models.phases]]\n  after_seconds = 5\n  set = { error_rate = 2 }\n"
    )
    with pytest.raises(ConfigError, match=r"phases\[0\]\.set\.error_rate"):
        load_simulator_config(write(tmp_path, text))


def test_profile_changes_are_validated() -> None:
    changed = apply_profile_changes(Profile(), {"ttft_ms": 10, "faults": {"hang": 1}})
    assert changed.ttft_ms == 10 and dict(changed.faults) == {"hang": 1.0}
    with pytest.raises(ConfigError, match="body.nope: unknown key"):
        apply_profile_changes(Profile(), {"nope": 1}, "body")
    with pytest.raises(ConfigError, match="include_usage"):
        apply_profile_changes(Profile(), {"include_usage": "yes"})


def test_plans_are_deterministic_per_seed_and_honour_max_tokens() -> None:
    profile = Profile(
        ttft_sigma=0.5, tps_jitter=0.2, error_rate=0.3, faults={"stall": 1, "hang": 1}
    )
    first = [draw_plan(profile, rng, None) for rng in [random.Random(7)] for _ in range(50)]
    second = [draw_plan(profile, rng, None) for rng in [random.Random(7)] for _ in range(50)]
    assert first == second
    assert len({plan.ttft_seconds for plan in first}) == 50
    assert {plan.fault for plan in first} == {None, "stall", "hang"}
    assert all(40 <= plan.tokens_per_second <= 60 for plan in first)

    reasoning = Profile(reasoning_tokens=10, output_tokens=20)
    cut = draw_plan(reasoning, random.Random(1), 15)
    assert (cut.reasoning_tokens, cut.answer_tokens, cut.truncated) == (10, 5, True)
    whole = draw_plan(reasoning, random.Random(1), 30)
    assert (whole.reasoning_tokens, whole.answer_tokens, whole.truncated) == (10, 20, False)


def test_wire_shape_keys_load_and_patch() -> None:
    changed = apply_profile_changes(
        Profile(),
        {
            "reasoning_shape": "think_tags",
            "usage_position": "after_done",
            "max_tokens_field": "max_completion_tokens",
            "rejected_parameters": ["temperature", "top_p"],
            "prompt_cache": True,
            "faults": {"http_529": 1, "quota": 1, "context_length": 1, "content_filter": 1},
        },
    )
    assert changed.reasoning_shape == "think_tags" and changed.usage_position == "after_done"
    assert changed.rejected_parameters == ("temperature", "top_p")
    assert changed.to_json()["rejected_parameters"] == ["temperature", "top_p"]
