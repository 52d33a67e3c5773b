"""generator.proxy_schema: what terraphim-llm-proxy refuses, and what it silently drops.

The rules are the proxy's loader and router as docs/configuration.md describes them; each
test here is one rule, in both directions where the old check and the proxy disagreed.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from perfgen.generator.proxy_schema import (
    DROPS,
    NOTE,
    REFUSES,
    check_text,
    split_route,
    validate_text,
)

ROOT = Path(__file__).resolve().parent.parent
BASE = """
[proxy]
host = "127.0.0.1"
port = 3456
api_key = "$PROXY_API_KEY"
[router]
default = "groq,llama|ollama,qwen2.5-coder:latest"
strategy = "fill_first"
[management]
enabled = true
secret_key = "s3cret"
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


def proxy_configs() -> list[str]:
    """Every TOML file in the repository that the proxy would load (a [router] or [proxy])."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "*.toml"], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        document = tomllib.loads((ROOT / name).read_text(encoding="utf-8"))
        if "router" in document or "proxy" in document:
            found.append(name)
    return found


def test_the_repository_has_proxy_configs():
    # The parametrised test below must not pass by finding nothing.
    assert {"examples/config.example.toml", "stack/demo-proxy.toml"} <= set(proxy_configs())


@pytest.mark.parametrize("path", proxy_configs())
def test_every_shipped_config_loads_in_the_proxy(path):
    assert validate_text((ROOT / path).read_text(encoding="utf-8")) == [], path


def levels(text: str) -> dict[str, str]:
    return {str(f): f.level for f in check_text(text)}


def find(text: str, piece: str) -> str:
    found = [(message, level) for message, level in levels(text).items() if piece in message]
    assert found, levels(text)
    return found[0][1]


def test_base_is_valid_and_routes_split_like_the_proxy():
    assert validate_text(BASE) == []
    assert split_route(" ollama : qwen2.5-coder:latest ") == ("ollama", "qwen2.5-coder:latest")
    assert split_route("openrouter,anthropic/claude-3.5-sonnet") == (
        "openrouter",
        "anthropic/claude-3.5-sonnet",
    )
    assert split_route("nomodel") is None


@pytest.mark.parametrize(
    "old, new, piece",
    [
        # Start-up: the proxy exits 1.
        ('strategy = "fill_first"', 'strategy = "FillFirst"', "router.strategy: 'FillFirst'"),
        ('strategy = "fill_first"', 'strategy = "Fastest"', "accepts fill_first, round_robin"),
        ('host = "127.0.0.1"', 'host = "localhost"', "proxy.host: 'localhost' is not an IP"),
        ('host = "127.0.0.1"', 'host = "fe80::1%eth0"', "is not an IP literal"),
        ('host = "127.0.0.1"\n', "", "proxy.host: required"),
        ('api_key = "$PROXY_API_KEY"', 'api_key = ""', "proxy.api_key: required"),
        ('api_key = "$PROXY_API_KEY"', 'api_key = "${PROXY_API_KEY}"', "no ${NAME} form"),
        ('api_key = "$PROXY_API_KEY"\n', "", "proxy.api_key: required"),
        ("port = 3456", "port = 70000", "proxy.port"),
        ('"groq,llama|', '"groq:llama|', "router.default: 'groq:llama|ollama'"),
        ('"groq,llama|', '" groq,llama|', "router.default: ' groq'"),
        ('"groq,llama|', '"groq ,llama|', "router.default: 'groq '"),
        ('"groq,llama|', '"nobody,llama|', "router.default: 'nobody'"),
        ('default = "groq,llama|ollama,qwen2.5-coder:latest"\n', "", "router.default: required"),
        ('strategy = "fill_first"', "think = 3", "router.think: must be a string"),
        ('strategy = "fill_first"', "long_context_threshold = true", "long_context_threshold"),
        ("enabled = true", 'enabled = "yes"', "management.enabled: must be true or false"),
        ('api_key = "ollama"', "api_key = 3", "providers[1].api_key: required, a string"),
        ('models = ["qwen2.5-coder:latest"]', "models = []", "providers[1].models"),
        (
            'secret_key = "s3cret"',
            'secret_key = "s3cret"\n[security.rate_limiting]\nrequests_per_minute = "60"',
            "security.rate_limiting.requests_per_minute: must be an integer",
        ),
        # Request time: the proxy starts and silently skips the entry (perfgen's promises).
        ("|ollama,qwen", "|nobody,qwen", "provider 'nobody' of fallback 1"),
        ("|ollama,qwen2.5-coder:latest", "|ollama,qwen2.5-coder", "a fallback not listed exactly"),
        ('"groq,llama|', '"groq,ghost|', "model 'ghost' of the primary"),
        ('"groq,llama|', '"groq,llama||', "empty entry"),
        ('"groq,llama|', '"groq, llama|', "has spaces"),
        (
            'strategy = "fill_first"',
            'background = "ollama,qwen2.5-coder:latest|ollama ,qwen2.5-coder:latest"',
            "fallback 1 'ollama ,qwen2.5-coder:latest' has spaces",
        ),
    ],
)
def test_each_rule_is_enforced(old, new, piece):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    level = find(text, piece)
    # The first block of cases are start-up refusals, the rest request-time drops.
    expected = (
        DROPS
        if any(
            w in piece for w in ("of fallback", "of the primary", "listed", "empty entry", "spaces")
        )
        else REFUSES
    )
    assert level == expected, levels(text)
    assert validate_text(text) != []


@pytest.mark.parametrize(
    "old, new",
    [
        # What the old check refused but the proxy accepts.
        ('name = "ollama"', 'name = "groq"'),  # duplicate providers: the first wins
        ('host = "127.0.0.1"', 'host = "::1"'),
        ('host = "127.0.0.1"', 'host = "0.0.0.0"'),
        ('api_key = "ollama"', 'api_key = ""'),  # only proxy.api_key must be non-empty
        (
            'strategy = "fill_first"',
            '[[router.model_mappings]]\nfrom = "claude-*"\nto = "anthropic/claude-3.5-sonnet"',
        ),
        ('strategy = "fill_first"', 'strategy = "cost_optimized"'),
        ('strategy = "fill_first"\n', ""),
        ('strategy = "fill_first"', 'think = "nobody,x"'),  # unchecked at load, dropped later
    ],
)
def test_accepted_by_the_proxy(old, new):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    refused = [str(f) for f in check_text(text) if f.level == REFUSES]
    assert refused == []


def test_notes_say_what_carries_no_traffic():
    text = BASE.replace(
        'strategy = "fill_first"',
        'think = "groq,llama"\nplan_implementation = "groq,llama"\n'
        '[[router.model_mappings]]\nfrom = "c*"\nto = "groq,llama"',
    ).replace('secret_key = "s3cret"', 'secret_key = "$MANAGEMENT_SECRET"')
    notes = {str(f) for f in check_text(text) if f.level == NOTE}
    assert "router.think: the current proxy never routes requests to this scenario" in notes
    assert any(n.startswith("router.plan_implementation: the current proxy never") for n in notes)
    assert any("bypassing [router]" in n for n in notes)
    assert any("literal secret" in n for n in notes)
    assert validate_text(text) == []


def test_environment_references_are_checked_when_asked():
    env_ok = {"PROXY_API_KEY": "k", "GROQ_API_KEY": "g"}
    assert [f for f in check_text(BASE, env_ok) if f.level == REFUSES] == []
    missing = [str(f) for f in check_text(BASE, {"PROXY_API_KEY": "k"}) if f.level == REFUSES]
    assert missing == [
        "providers[0].api_key: environment variable GROQ_API_KEY is not set (the proxy exits 1)"
    ]
    empty = [str(f) for f in check_text(BASE, {**env_ok, "PROXY_API_KEY": ""})]
    assert any("proxy.api_key: environment variable PROXY_API_KEY is empty" in e for e in empty)


def test_not_toml_and_missing_tables():
    assert validate_text("[router")[0].startswith("not valid TOML")
    errors = validate_text("x = 1\n")
    assert any(e.startswith("providers: missing") for e in errors)
    assert any(e.startswith("router: missing") for e in errors)
    assert any(e.startswith("proxy: missing: the [proxy] table is required") for e in errors)
