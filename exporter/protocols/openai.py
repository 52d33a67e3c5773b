"""OpenAI chat-completions streaming (OpenAI, Groq, DeepSeek, OpenRouter, Ollama's /v1, vLLM).

Endpoint rule, matching what OpenAI SDK clients do with a base URL plus one exception:

* a path already ending in `/chat/completions` is used as is
  (`https://api.deepseek.com/chat/completions`);
* a bare host gets `/v1/chat/completions` (`http://127.0.0.1:11434` for Ollama, which
  only serves the OpenAI API under /v1; `https://api.deepseek.com`, which accepts both);
* any other path gets `/chat/completions` (`https://api.groq.com/openai/v1`,
  `https://openrouter.ai/api/v1`, `.../v1beta/openai`): the path already names the
  API version, and guessing another `/v1` would break such providers.

Reasoning comes in five shapes, all of them reasoning tokens (TTFT, not first_content):
`delta.reasoning_content` (DeepSeek, older vLLM), `delta.reasoning` (OpenRouter, Groq,
Ollama, vLLM since its rename), `delta.reasoning_details[]` (OpenRouter's typed list),
inline `<think>...</think>` at the start of `content` (Together, Fireworks, Groq raw,
llama.cpp), and none at all: only `usage.completion_tokens_details.reasoning_tokens`
says it happened (OpenAI's reasoning models, Gemini's OpenAI endpoint).

Usage may come in any chunk (the finish chunk, a usage-only chunk, one followed by an
empty chunk as xAI does) or after `data: [DONE]` (llama.cpp): `wants_trailer` asks the
probe to read on after the terminator when none came before it.
"""

from __future__ import annotations

from typing import Any

from perfgen.capabilities import effort_for
from perfgen.config import Module, Provider
from perfgen.exporter.protocols.base import (
    CONTENT,
    END,
    TOKEN,
    StreamFacts,
    StreamFailure,
    WireRequest,
    event_error,
    parse_json,
    shorten,
    stream_error,
    streaming_request,
    suffix_endpoint,
)
from perfgen.exporter.sse import Event

_SUFFIX = "/chat/completions"
_OPEN, _CLOSE = "<think>", "</think>"
# Inline-think state of a stream: not yet known, inside <think>, no (more) think block.
_UNDECIDED, _THINKING, _ANSWER = 0, 1, 2


class OpenAIStream(StreamFacts):
    __slots__ = ("_think", "_held")

    def __init__(self) -> None:
        super().__init__()
        self._think = _UNDECIDED
        self._held = ""  # content that may still turn out to be (part of) a think tag

    @property
    def wants_trailer(self) -> bool:
        """No usage before the terminator: some servers send it after `[DONE]`."""
        return self.output_tokens is None

    def feed(self, event: Event) -> int:
        data = event.data
        if data == "[DONE]":
            self.finished = True
            return END
        if event.event == "error":
            raise event_error(data)
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
            raise stream_error(chunk)
        flags = 0
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                delta = choice.get("delta")
                if delta:
                    flags |= self._delta(delta)
                reason = choice.get("finish_reason")
                if reason:
                    self._finish(reason)
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

    def _finish(self, reason: str) -> None:
        self.finished = True
        if reason == "length":
            self.truncated = True
        elif reason == "content_filter":
            raise StreamFailure(
                "content_filter", "the provider's content filter stopped the answer"
            )

    def _delta(self, delta: dict[str, Any]) -> int:
        flags = 0
        content = delta.get("content")
        if content:
            if not isinstance(content, str):
                # A few servers send a list of typed parts instead of a string.
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            if content:
                if self._think == _ANSWER:
                    self.content_parts.append(content)
                    if len(delta) == 1:
                        return TOKEN | CONTENT  # the usual chunk: answer text and nothing else
                    flags = TOKEN | CONTENT
                else:
                    flags = self._content(content)  # maybe an inline <think> block
        # DeepSeek and old vLLM say reasoning_content; OpenRouter, Groq, Ollama and vLLM
        # say reasoning; OpenRouter also lists typed reasoning_details.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self.reasoning_parts.append(reasoning)
            self.reasoning_events += 1
            flags |= TOKEN
        elif delta.get("reasoning_details"):
            flags |= self._details(delta["reasoning_details"])
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for call in tool_calls:
                function = call.get("function")
                if function and (function.get("arguments") or function.get("name")):
                    self.tool_parts.append(function.get("arguments") or function["name"])
                    flags |= TOKEN | CONTENT
        legacy = delta.get("function_call")
        if legacy and (legacy.get("arguments") or legacy.get("name")):
            self.tool_parts.append(legacy.get("arguments") or legacy["name"])
            flags |= TOKEN | CONTENT
        return flags

    def _details(self, details: list[dict[str, Any]]) -> int:
        """OpenRouter's reasoning_details: text and summaries stream; encrypted ones are
        reasoning that happened out of sight."""
        texts = [d.get("text") or d.get("summary") for d in details if isinstance(d, dict)]
        text = "".join(t for t in texts if isinstance(t, str))
        if text:
            self.reasoning_parts.append(text)
            self.reasoning_events += 1
            return TOKEN
        if any(isinstance(d, dict) and d.get("type") == "reasoning.encrypted" for d in details):
            self.hidden_reasoning = True
        return 0

    def _content(self, text: str) -> int:
        """Content before the answer is known to have no inline think block."""
        if self._think == _THINKING:
            return self._thinking(text)
        held = self._held + text
        head = held.lstrip()
        if head.startswith(_OPEN):
            self._think, self._held = _THINKING, ""
            return self._thinking(head[len(_OPEN) :])
        if _OPEN.startswith(head):
            # "", whitespace or the start of "<think>": wait for the next delta.
            self._held = held
            return TOKEN if head else 0
        self._think, self._held = _ANSWER, ""
        self.content_parts.append(held)
        return TOKEN | CONTENT

    def _thinking(self, text: str) -> int:
        held = self._held + text
        end = held.find(_CLOSE)
        self.reasoning_events += 1
        if end < 0:
            # Keep a tail that may be the first half of a "</think>" split across deltas.
            keep = next(
                (
                    k
                    for k in range(min(len(_CLOSE) - 1, len(held)), 0, -1)
                    if _CLOSE.startswith(held[-k:])
                ),
                0,
            )
            if len(held) > keep:
                self.reasoning_parts.append(held[: len(held) - keep])
            self._held = held[len(held) - keep :]
            return TOKEN
        if end:
            self.reasoning_parts.append(held[:end])
        self._think, self._held = _ANSWER, ""
        answer = held[end + len(_CLOSE) :].lstrip()  # the line break after the tag is layout
        if answer:
            self.content_parts.append(answer)
            return TOKEN | CONTENT
        return TOKEN

    def _usage(self, usage: dict[str, Any]) -> None:
        # Counts are cumulative when a server repeats them; the last one wins.
        self.set_output_tokens(usage.get("completion_tokens"))
        prompt = usage.get("prompt_tokens")
        if isinstance(prompt, int):
            self.input_tokens = prompt
        details = usage.get("completion_tokens_details")
        if details:
            reasoning = details.get("reasoning_tokens")
            if isinstance(reasoning, int):
                self.reasoning_tokens = reasoning
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek
        if not isinstance(cached, int):
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if isinstance(cached, int):
            self.cached_input_tokens = cached


class OpenAIProtocol:
    name = "openai"

    def endpoint(self, api_base_url: str) -> str:
        return suffix_endpoint(api_base_url, _SUFFIX)

    def build_request(
        self,
        provider: Provider,
        model: str,
        module: Module,
        prompt: str,
        max_tokens: int,
        api_key: str,
    ) -> WireRequest:
        capabilities = provider.capabilities(model)
        extra: dict[str, Any] = {}
        if capabilities.stream_options:
            # Without this OpenAI-style servers send no usage and tokens must be estimated.
            extra["stream_options"] = {"include_usage": True}
        effort = effort_for(capabilities, module.reasoning_effort)
        if effort is not None:
            extra["reasoning_effort"] = effort
        return streaming_request(
            provider.endpoint or self.endpoint(provider.api_base_url),
            model,
            module,
            prompt,
            max_tokens,
            {"Authorization": f"Bearer {api_key}"},
            max_tokens_field=capabilities.max_tokens_field,
            **extra,
        )

    def new_stream(self) -> OpenAIStream:
        return OpenAIStream()


PROTOCOL = OpenAIProtocol()
