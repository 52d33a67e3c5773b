"""perfgen.endpoints: the probe calls the URL the proxy calls, one rule per provider name."""

from __future__ import annotations

import pytest

from perfgen.config import parse_config
from perfgen.endpoints import proxy_endpoint
from perfgen.exporter.protocols import get_protocol


@pytest.mark.parametrize(
    "name, base, url",
    [
        # openrouter: {base}/chat/completions, no trimming.
        (
            "openrouter",
            "https://openrouter.ai/api/v1",
            "https://openrouter.ai/api/v1/chat/completions",
        ),
        (
            "openrouter",
            "https://openrouter.ai/api/v1/",
            "https://openrouter.ai/api/v1//chat/completions",
        ),
        # groq: /chat/completions after a base ending /openai/v1, else /openai/v1/chat/completions.
        (
            "groq",
            "https://api.groq.com/openai/v1",
            "https://api.groq.com/openai/v1/chat/completions",
        ),
        ("groq", "https://api.groq.com", "https://api.groq.com/openai/v1/chat/completions"),
        # cerebras: adds /v1 if missing.
        ("cerebras", "https://api.cerebras.ai", "https://api.cerebras.ai/v1/chat/completions"),
        ("cerebras", "https://api.cerebras.ai/v1", "https://api.cerebras.ai/v1/chat/completions"),
        # zai: /chat/completions.
        ("zai", "https://api.z.ai/api/paas/v4", "https://api.z.ai/api/paas/v4/chat/completions"),
        # minimax and kimi: Anthropic Messages, /messages after a trailing /v1.
        (
            "minimax",
            "https://api.minimax.io/anthropic",
            "https://api.minimax.io/anthropic/v1/messages",
        ),
        (
            "kimi",
            "https://api.moonshot.ai/anthropic/v1",
            "https://api.moonshot.ai/anthropic/v1/messages",
        ),
        # deepseek: a base without deepseek.com is replaced.
        ("deepseek", "https://api.deepseek.com", "https://api.deepseek.com/chat/completions"),
        ("deepseek", "http://127.0.0.1:9/ds", "https://api.deepseek.com/chat/completions"),
        # anthropic: Anthropic Messages.
        ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        # any other name: OpenAI chat, base as given (no /v1 guessed).
        (
            "fastcloud",
            "http://127.0.0.1:8700/fastcloud/v1",
            "http://127.0.0.1:8700/fastcloud/v1/chat/completions",
        ),
        ("vllm", "http://10.0.0.5:8000", "http://10.0.0.5:8000/chat/completions"),
    ],
)
def test_each_provider_name_rule(name, base, url):
    assert proxy_endpoint(name, base) == url


@pytest.mark.parametrize("name", ["ollama", "gemini", "openai-codex"])
def test_clients_perfgen_does_not_speak_keep_the_protocol_rule(name):
    assert proxy_endpoint(name, "http://127.0.0.1:11434") is None


def config(extra: str = "") -> str:
    return f"""
[[providers]]
name = "deepseek"
api_base_url = "http://127.0.0.1:8700/deepseek"
api_key = "k"
models = ["deepseek-chat"]
[[providers]]
name = "ollama"
api_base_url = "http://127.0.0.1:11434"
api_key = "ollama"
models = ["q"]
{extra}"""


def endpoint_of(text: str, name: str) -> str:
    provider = parse_config(text).providers[name]
    model = provider.models[0]
    module = parse_config(text).performance.modules["latency"]
    wire = get_protocol(provider.protocol).build_request(provider, model, module, "hi", 8, "k")
    return wire.url


def test_the_exporter_probes_the_proxy_endpoint():
    assert endpoint_of(config(), "deepseek") == "https://api.deepseek.com/chat/completions"
    assert endpoint_of(config(), "ollama") == "http://127.0.0.1:11434/v1/chat/completions"


def test_the_override_still_wins():
    # A probe pointed elsewhere on purpose (a simulator, a regional gateway) is not rewritten.
    text = config(
        '[performance.providers.deepseek]\napi_base_url = "http://127.0.0.1:8700/ds/v1"\n'
    )
    assert endpoint_of(text, "deepseek") == "http://127.0.0.1:8700/ds/v1/chat/completions"
