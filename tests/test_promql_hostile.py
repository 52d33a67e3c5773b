"""The generator's Prometheus client against a hostile Prometheus (tests/hostile_prometheus.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_prometheus import HostilePrometheus

from perfgen.generator.promql import (
    PromClient,
    PrometheusHTTPError,
    PrometheusUnreachable,
    PromQLError,
)

TENANT_SECRET = "tenant-secret-0123456789"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[HostilePrometheus]:
    with HostilePrometheus() as server:
        yield server


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def client(url: str, **options: object) -> PromClient:
    return PromClient(url, retries=0, headers={"X-Scope-OrgID": TENANT_SECRET}, **options)


def test_the_honest_mode_works(prometheus: HostilePrometheus) -> None:
    assert client(prometheus.url("ok")).instant("up") == []


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_a_drip_fed_answer_ends_at_the_total_deadline(
    prometheus: HostilePrometheus, mode: str
) -> None:
    began = time.monotonic()
    with pytest.raises(PrometheusUnreachable, match="timed out.*within 1s"):
        client(prometheus.url(mode), timeout=1.0).instant("up")
    # 1 s deadline; 0.5 s slack for the timer thread and a busy machine.
    assert time.monotonic() - began < 1.5
    assert prometheus.sent[mode] < 10  # it never got to the end (65 bytes or more)


def test_the_client_still_works_after_a_deadline(prometheus: HostilePrometheus) -> None:
    same = client(prometheus.url("drip"), timeout=0.5)
    with pytest.raises(PrometheusUnreachable):
        same.instant("up")
    same.base_url = prometheus.url("ok")  # the shut-down connection is not reused
    assert same.instant("up") == []


@pytest.mark.parametrize("mode", ["huge", "huge-chunked"])
def test_a_huge_answer_is_cut_at_the_cap(prometheus: HostilePrometheus, mode: str) -> None:
    before = rss_bytes()
    with pytest.raises(PromQLError, match=r"over the 16777216-byte cap \(max_response_bytes\)"):
        client(prometheus.url(mode), timeout=30).instant("up")
    # Reading 100 MB whole cost 1.24 GB; the cap allows 16 MB plus the pieces' list.
    assert rss_bytes() - before < 48 << 20


def test_the_cap_is_configurable(prometheus: HostilePrometheus) -> None:
    with pytest.raises(PromQLError, match="over the 1024-byte cap"):
        client(prometheus.url("huge-chunked"), max_response_bytes=1024).instant("up")


def test_a_redirect_is_not_followed_with_credentials(prometheus: HostilePrometheus) -> None:
    prometheus.requests.clear()
    with pytest.raises(PrometheusHTTPError) as caught:
        client(prometheus.url("redirect")).instant("up")
    assert caught.value.status == 302
    assert "redirects are not followed" in str(caught.value)
    assert "http://127.0.0.2:" in str(caught.value)
    assert [seen.host for seen in prometheus.requests] == ["127.0.0.1"]
    assert TENANT_SECRET not in str(caught.value)


def test_a_gzip_answer_is_refused(prometheus: HostilePrometheus) -> None:
    prometheus.requests.clear()
    with pytest.raises(PromQLError, match="Content-Encoding: gzip although identity"):
        client(prometheus.url("gzip")).instant("up")
    assert prometheus.requests[0].headers["Accept-Encoding"] == "identity"
