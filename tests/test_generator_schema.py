"""generator.proxy_schema: what terraphim-llm-proxy would refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from perfgen.generator.proxy_schema import split_route, validate_text

ROOT = Path(__file__).resolve().parent.parent
BASE = """
[proxy]
port = 3456
[router]
default = "groq,llama|ollama,qwen2.5-coder:latest"
strategy = "FillFirst"
[[providers]]
name = "groq"
api_base_url = "https://api.groq.com/openai/v1"
api_key = "$GROQ_API_KEY"
models = ["llama", "vendor/model"]
[[providers]]
name = "ollama"
api_base_url = "http://127.0.0.1:11434"
api_key = "ollama"
models = ["qwen2.5-coder:latest"]
"""


@pytest.mark.parametrize("path", ["examples/config.example.toml", "stack/demo-proxy.toml"])
def test_shipped_configs_are_valid(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not present")
    assert validate_text((ROOT / path).read_text()) == []


def test_base_is_valid_and_routes_split_like_the_proxy():
    assert validate_text(BASE) == []
    assert split_route(" ollama : qwen2.5-coder:latest ") == ("ollama", "qwen2.5-coder:latest")
    assert split_route("openrouter,anthropic/claude-3.5-sonnet") == (
        "openrouter",
        "anthropic/claude-3.5-sonnet",
    )
    assert split_route("nomodel") is None


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('default = "groq,llama|ollama,qwen2.5-coder:latest"\n', "", "router.default: required"),
        ('"groq,llama|', '"nobody,llama|', "provider 'nobody' is not defined"),
        ('"groq,llama|', '"groq,ghost|', "model 'ghost' is not in provider 'groq'"),
        ('"groq,llama|', '"groq,llama||', "empty route"),
        ('"groq,llama|', '"groqllama|', "is not 'provider,model'"),
        ('strategy = "FillFirst"', 'strategy = "Fastest"', "router.strategy: must be one of"),
        ('strategy = "FillFirst"', "think = 3", "router.think: must be a string route"),
        ("port = 3456", "port = 70000", "proxy.port"),
        ('api_key = "ollama"', 'api_key = ""', "providers[1].api_key"),
        ('models = ["qwen2.5-coder:latest"]', "models = []", "providers[1].models"),
        ('name = "ollama"', 'name = "groq"', "defined twice"),
        ('strategy = "FillFirst"', "long_context_threshold = true", "long_context_threshold"),
        (
            'strategy = "FillFirst"',
            'strategy = "FillFirst"\n[[router.model_mappings]]\nfrom = "x*"\nto = "groq,nope"',
            "model_mappings[0].to: model 'nope'",
        ),
    ],
)
def test_each_rule_is_enforced(old, new, message):
    assert old in BASE
    errors = validate_text(BASE.replace(old, new, 1))
    assert any(message in error for error in errors), errors


def test_not_toml_and_missing_tables():
    assert validate_text("[router")[0].startswith("not valid TOML")
    errors = validate_text("x = 1\n")
    assert "providers: at least one [[providers]] entry is required" in errors
    assert "router: the [router] table is required" in errors
