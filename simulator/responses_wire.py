"""OpenAI Responses API (`POST /v1/responses`) wire format, served next to chat
completions by every OpenAI-protocol provider.

The event sequence api.openai.com streams, each event with an `event:` line, a
`sequence_number` and the ids the official SDK's `responses.stream` accumulator checks:
response.created, response.in_progress, for reasoning models a `reasoning` output item
(with its summary streamed as response.reasoning_summary_text.delta, or nothing of it
when the reasoning is hidden), a `message` item whose text streams as
response.output_text.delta, then response.completed (or response.incomplete when the
cap or the content filter stopped it) carrying usage. There is no `[DONE]`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from perfgen.simulator.openai_wire import OpenAIWire, error_event_json
from perfgen.simulator.plan import RequestPlan
from perfgen.simulator.text import content_text, prompt_tokens, reply_with
from perfgen.simulator.wire import BadRequest, ChatRequest, optional_int


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class ResponsesStream:
    def __init__(self, serial: int, request: ChatRequest, plan: RequestPlan) -> None:
        self._request = request
        self._plan = plan
        self._id = f"resp_sim{serial:08d}"
        self._created = int(time.time())
        self._sequence = 0
        self._reasoning_id = f"rs_sim{serial:08d}"
        self._message_id = f"msg_sim{serial:08d}"
        self._summary: list[str] = []
        self._text: list[str] = []
        self._reasoning_open = plan.reasoning_tokens > 0
        self._message_open = False
        self._hidden = plan.reasoning_shape == "hidden"
        self._message_index = 1 if plan.reasoning_tokens > 0 else 0

    def _event(self, kind: str, **data: Any) -> str:
        payload = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return f"event: {kind}\ndata: {_compact(payload)}\n\n"

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "model": self._request.model,
            "output": extra.pop("output", []),
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": None,
            **extra,
        }

    def _reasoning_item(self) -> dict[str, Any]:
        summary = [] if self._hidden else [{"type": "summary_text", "text": "".join(self._summary)}]
        return {"id": self._reasoning_id, "type": "reasoning", "summary": summary}

    def _message_item(self, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": "".join(self._text), "annotations": []}]
        return {
            "id": self._message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content if status == "completed" else [],
        }

    def preamble(self) -> bytes:
        out = self._event("response.created", response=self._response("in_progress"))
        out += self._event("response.in_progress", response=self._response("in_progress"))
        if self._reasoning_open:
            item = {"id": self._reasoning_id, "type": "reasoning", "summary": []}
            out += self._event("response.output_item.added", output_index=0, item=item)
            if not self._hidden:
                out += self._event(
                    "response.reasoning_summary_part.added",
                    item_id=self._reasoning_id,
                    output_index=0,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
        return out.encode()

    def reasoning(self, tokens: list[str]) -> bytes:
        if self._hidden:
            return b""
        text = "".join(tokens)
        self._summary.append(text)
        return self._event(
            "response.reasoning_summary_text.delta",
            item_id=self._reasoning_id,
            output_index=0,
            summary_index=0,
            delta=text,
        ).encode()

    def _close_reasoning(self) -> str:
        if not self._reasoning_open:
            return ""
        self._reasoning_open = False
        out = ""
        if not self._hidden:
            text = "".join(self._summary)
            out += self._event(
                "response.reasoning_summary_text.done",
                item_id=self._reasoning_id,
                output_index=0,
                summary_index=0,
                text=text,
            )
            out += self._event(
                "response.reasoning_summary_part.done",
                item_id=self._reasoning_id,
                output_index=0,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            )
        return out + self._event(
            "response.output_item.done", output_index=0, item=self._reasoning_item()
        )

    def answer(self, tokens: list[str]) -> bytes:
        out = self._close_reasoning()
        index = self._message_index
        if not self._message_open:
            self._message_open = True
            out += self._event(
                "response.output_item.added",
                output_index=index,
                item=self._message_item("in_progress"),
            )
            out += self._event(
                "response.content_part.added",
                item_id=self._message_id,
                output_index=index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        text = "".join(tokens)
        self._text.append(text)
        out += self._event(
            "response.output_text.delta",
            item_id=self._message_id,
            output_index=index,
            content_index=0,
            delta=text,
            logprobs=[],
        )
        return out.encode()

    def finish(self) -> bytes:
        plan = self._plan
        out = self._close_reasoning()
        output: list[dict[str, Any]] = []
        if plan.reasoning_tokens > 0:
            output.append(self._reasoning_item())
        if self._message_open:
            index, text = self._message_index, "".join(self._text)
            out += self._event(
                "response.output_text.done",
                item_id=self._message_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            out += self._event(
                "response.content_part.done",
                item_id=self._message_id,
                output_index=index,
                content_index=0,
                part={"type": "output_text", "text": text, "annotations": []},
            )
            item = self._message_item("completed")
            out += self._event("response.output_item.done", output_index=index, item=item)
            output.append(item)
        usage = responses_usage(self._request, plan) if plan.include_usage else None
        if plan.fault == "content_filter" or plan.truncated:
            reason = "content_filter" if plan.fault == "content_filter" else "max_output_tokens"
            response = self._response(
                "incomplete", output=output, incomplete_details={"reason": reason}
            )
            response["usage"] = usage
            return (out + self._event("response.incomplete", response=response)).encode()
        response = self._response("completed", output=output)
        response["usage"] = usage
        return (out + self._event("response.completed", response=response)).encode()

    def malformed(self) -> bytes:
        return b'event: response.output_text.delta\ndata: {"type":"response.output_text.de\n\n'

    def error_event(self) -> bytes:
        error = error_event_json()["error"]
        payload = {
            "type": "error",
            "sequence_number": self._sequence,
            "code": error["type"],
            "message": error["message"],
            "param": None,
        }
        return f"event: error\ndata: {_compact(payload)}\n\n".encode()


class ResponsesWire(OpenAIWire):
    """Errors, faults and models as chat completions words them; its own requests and streams."""

    protocol = "openai-responses"

    def parse(self, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        raw = body.get("input")
        if isinstance(raw, str) and raw:
            messages: list[Any] = [{"role": "user", "content": raw}]
        elif isinstance(raw, list) and raw:
            messages = raw
        else:
            raise BadRequest("'input' must be a non-empty string or array")
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        texts.append(content_text(body.get("instructions")))
        return ChatRequest(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=optional_int(body, "max_output_tokens"),
            wants_usage=True,
            prompt_tokens=prompt_tokens(texts),
            reply_with=reply_with(messages),
            cap_field="max_output_tokens" if "max_output_tokens" in body else None,
            fields=frozenset(body),
            prompt_text="\n".join(texts),
        )

    def encoder(  # type: ignore[override]
        self, serial: int, request: ChatRequest, plan: RequestPlan
    ) -> ResponsesStream:
        return ResponsesStream(serial, request, plan)

    def complete_body(
        self,
        serial: int,
        request: ChatRequest,
        plan: RequestPlan,
        reasoning: list[str],
        answer: list[str],
    ) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if reasoning:
            summary = [] if plan.reasoning_shape == "hidden" else ["".join(reasoning)]
            output.append(
                {
                    "id": f"rs_sim{serial:08d}",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": t} for t in summary],
                }
            )
        text = {"type": "output_text", "text": "".join(answer), "annotations": []}
        output.append(
            {
                "id": f"msg_sim{serial:08d}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [text],
            }
        )
        return {
            "id": f"resp_sim{serial:08d}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if plan.truncated else "completed",
            "model": request.model,
            "output": output,
            "usage": responses_usage(request, plan) if plan.include_usage else None,
        }


def responses_usage(request: ChatRequest, plan: RequestPlan) -> dict[str, Any]:
    return {
        "input_tokens": request.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.total_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": request.prompt_tokens + plan.total_tokens,
    }
