"""OpenAI chat-completions streaming (OpenAI, Groq, DeepSeek, OpenRouter, Ollama's /v1, vLLM).

Endpoint rule, matching what OpenAI SDK clients do with a base URL plus one exception:

* a path already ending in `/chat/completions` is used as is
  (`https://api.deepseek.com/chat/completions`);
* a bare host gets `/v1/chat/completions` (`http://127.0.0.1:11434` for Ollama, which
  only serves the OpenAI API under /v1; `https://api.deepseek.com`, which accepts both);
* any other path gets `/chat/completions` (`https://api.groq.com/openai/v1`,
  `https://openrouter.ai/api/v1`, `.../v1beta/openai`): the path already names the
  API version, and guessing another `/v1` would break such providers.
"""

from __future__ import annotations

from typing import Any

from perfgen.exporter.protocols.base import (
    CONTENT,
    END,
    TOKEN,
    StreamFacts,
    StreamFailure,
    WireRequest,
    error_text,
    event_error_text,
    parse_json,
    replace_path,
    shorten,
    streaming_request,
    url_path,
)
from perfgen.exporter.sse import Event

from perfgen.config import Module, Provider

_SUFFIX = "/chat/completions"


class OpenAIStream(StreamFacts):
    __slots__ = ()

    def feed(self, event: Event) -> int:
        data = event.data
        if data == "[DONE]":
            self.finished = True
            return END
        if event.event == "error":
            raise StreamFailure("error_event", event_error_text(data))
        if not data or data.isspace():
            return 0  # an empty `data:` line used as a keep-alive
        chunk = parse_json(data)
        try:
            return self._chunk(chunk)
        except (AttributeError, TypeError) as exc:
            # Valid JSON of the wrong shape (a list where an object belongs, ...).
            raise StreamFailure(
                "bad_stream", f"unexpected chunk shape ({exc}): {shorten(data)}"
            ) from None

    def _chunk(self, chunk: dict[str, Any]) -> int:
        error = chunk.get("error")
        if error:
            # OpenAI and OpenRouter report mid-stream failures as a chunk with "error".
            raise StreamFailure("error_event", error_text(chunk))
        flags = 0
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                delta = choice.get("delta")
                if delta:
                    flags |= self._delta(delta)
                if choice.get("finish_reason"):
                    self.finished = True
        usage = chunk.get("usage")
        if usage:
            self._usage(usage)
        elif "x_groq" in chunk:
            # Groq puts stream usage under x_groq; everyone else at the top level.
            usage = chunk["x_groq"].get("usage")
            if usage:
                self._usage(usage)
        if flags:
            self.token_events += 1
        return flags

    def _delta(self, delta: dict[str, Any]) -> int:
        flags = 0
        content = delta.get("content")
        if content:
            if not isinstance(content, str):
                # A few servers send a list of typed parts instead of a string.
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            if content:
                self.content_parts.append(content)
                flags = TOKEN | CONTENT
        # DeepSeek and vLLM say reasoning_content; OpenRouter and Ollama say reasoning.
        if delta.get("reasoning_content") or delta.get("reasoning"):
            self.reasoning_events += 1
            flags |= TOKEN
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for call in tool_calls:
                function = call.get("function")
                if function and (function.get("arguments") or function.get("name")):
                    flags |= TOKEN | CONTENT
        legacy = delta.get("function_call")
        if legacy and (legacy.get("arguments") or legacy.get("name")):
            flags |= TOKEN | CONTENT
        return flags

    def _usage(self, usage: dict[str, Any]) -> None:
        # Counts are cumulative when a server repeats them; the last one wins.
        completion = usage.get("completion_tokens")
        if isinstance(completion, int):
            self.output_tokens = completion
        prompt = usage.get("prompt_tokens")
        if isinstance(prompt, int):
            self.input_tokens = prompt
        details = usage.get("completion_tokens_details")
        if details:
            reasoning = details.get("reasoning_tokens")
            if isinstance(reasoning, int):
                self.reasoning_tokens = reasoning


class OpenAIProtocol:
    name = "openai"

    def endpoint(self, api_base_url: str) -> str:
        path = url_path(api_base_url)
        if path.endswith(_SUFFIX):
            return replace_path(api_base_url, path)
        if not path:
            return replace_path(api_base_url, "/v1" + _SUFFIX)
        return replace_path(api_base_url, path + _SUFFIX)

    def build_request(
        self,
        provider: Provider,
        model: str,
        module: Module,
        prompt: str,
        max_tokens: int,
        api_key: str,
    ) -> WireRequest:
        return streaming_request(
            provider.endpoint or self.endpoint(provider.api_base_url),
            model,
            module,
            prompt,
            max_tokens,
            {"Authorization": f"Bearer {api_key}"},
            # Without this OpenAI-style servers send no usage and tokens must be estimated.
            stream_options={"include_usage": True},
        )

    def new_stream(self) -> OpenAIStream:
        return OpenAIStream()


PROTOCOL = OpenAIProtocol()
