"""Fixtures shared across test files: real binaries, and the end-to-end demo stack.

Tests that need Prometheus or Alertmanager skip with the install command when the
binaries are missing, except under scripts/test.sh (PERFGEN_REQUIRE_BINARIES=1), where a
missing binary must fail the run rather than quietly skip the integration tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from perfgen.stack.processes import BinaryMissing, find_binary

if TYPE_CHECKING:
    from perfgen.stack.demo import DemoStack


def require_binaries(*names: str) -> dict[str, str]:
    """name -> path for each binary; skip (or fail under scripts/test.sh) when missing."""
    try:
        return {name: find_binary(name) for name in names}
    except BinaryMissing as exc:
        if os.environ.get("PERFGEN_REQUIRE_BINARIES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def prometheus_binaries() -> dict[str, str]:
    return require_binaries("prometheus", "promtool", "alertmanager", "amtool")


@pytest.fixture(scope="session")
def demo_stack(
    prometheus_binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoStack]:
    """The whole demo pipeline, running, shared by the end-to-end and dashboard tests.

    Started once per session and yielded once every default candidate is ranked (about
    half a minute), so `stack.prometheus_url` has data for every recording rule. The
    story's degradation is not applied here; tests/test_e2e.py applies it.
    """
    from perfgen.stack.demo import DemoStack

    workdir: Path = tmp_path_factory.mktemp("demo-stack")
    stack = DemoStack(workdir)
    try:
        stack.start()
        stack.wait_for_rankings(timeout=150)
        yield stack
    finally:
        stack.stop()
