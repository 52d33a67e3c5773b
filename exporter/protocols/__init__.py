"""Wire formats the probe speaks, by the protocol name a Provider carries."""

from __future__ import annotations

from perfgen.exporter.protocols import anthropic, openai, openai_responses
from perfgen.exporter.protocols.base import (
    CONTENT,
    END,
    TOKEN,
    StreamFacts,
    StreamFailure,
    WireProtocol,
    WireRequest,
)

PROTOCOLS: dict[str, WireProtocol] = {
    openai.PROTOCOL.name: openai.PROTOCOL,
    anthropic.PROTOCOL.name: anthropic.PROTOCOL,
    openai_responses.PROTOCOL.name: openai_responses.PROTOCOL,
}


def get_protocol(name: str) -> WireProtocol:
    """The implementation of a protocol name; KeyError names the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})") from None


__all__ = [
    "CONTENT",
    "END",
    "PROTOCOLS",
    "TOKEN",
    "StreamFacts",
    "StreamFailure",
    "WireProtocol",
    "WireRequest",
    "get_protocol",
]
