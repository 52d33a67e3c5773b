"""The URL terraphim-llm-proxy calls upstream for a provider, chosen by the provider's name.

The proxy picks its client by `[[providers]] name` and each client builds its URL its
own way (docs/exporter.md, "Endpoints"); a prober measuring another URL measures
something the proxy never calls. Shared by the exporter and the proxy stand-in.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

CHAT = "/chat/completions"
DEEPSEEK_BASE = "https://api.deepseek.com"
# Names whose proxy client perfgen does not speak (Ollama's own API, Gemini, the Codex
# Responses API with OAuth): the probe's protocol rule or an override applies instead.
NO_RULE = frozenset({"ollama", "gemini", "openai-codex"})


def proxy_endpoint(name: str, api_base_url: str) -> str | None:
    """The proxy's upstream URL for provider `name` at `api_base_url`; None: no own rule."""
    kind = name.lower()
    base = api_base_url.rstrip("/")
    if kind in NO_RULE:
        return None
    if kind == "openrouter":
        return api_base_url + CHAT  # the proxy does not trim this one
    if kind == "groq":
        return base + CHAT if base.endswith("/openai/v1") else base + "/openai/v1" + CHAT
    if kind == "cerebras":
        return (base if base.endswith("/v1") else base + "/v1") + CHAT
    if kind == "deepseek":
        if "deepseek.com" not in urlsplit(base).netloc:
            base = DEEPSEEK_BASE
        return base + CHAT
    if kind in ("minimax", "kimi", "anthropic"):
        return messages_endpoint(base)
    # zai and every other name: OpenAI chat at the base as given.
    return base if base.endswith(CHAT) else base + CHAT


def messages_endpoint(base: str) -> str:
    """Anthropic Messages: `.../v1/messages`, or only `/messages` after a trailing `/v1`."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/messages"):
        path += "/messages" if path.endswith("/v1") else "/v1/messages"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
