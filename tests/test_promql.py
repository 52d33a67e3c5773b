"""generator.promql: the HTTP client against a scripted fake Prometheus API."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from perfgen.generator.promql import (
    Auth,
    EmptyResult,
    NaNResult,
    PromClient,
    PrometheusHTTPError,
    PrometheusUnreachable,
    PromQLError,
    QueryError,
    parse_headers,
)
from perfgen.stack.processes import free_port


class FakePrometheus:
    """Answers each request with the next scripted (status, body); records requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object]] = []
        self.requests: list[dict[str, object]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                url = urlparse(self.path)
                params = parse_qs(body if self.command == "POST" else url.query)
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "params": params,
                        "headers": dict(self.headers),
                    }
                )
                status, payload = fake.script.pop(0) if fake.script else (200, _vector([]))
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


def _vector(items: list[tuple[dict[str, str], str]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": labels, "value": [1700000000.0, value]} for labels, value in items
            ],
        },
    }


@pytest.fixture()
def fake():
    server = FakePrometheus()
    yield server
    server.server.shutdown()
    server.server.server_close()


def client(url: str, **kwargs) -> PromClient:
    kwargs.setdefault("backoff", 0.01)
    return PromClient(url, **kwargs)


def test_instant_vector_and_nan(fake):
    fake.script.append(
        (
            200,
            _vector(
                [({"provider": "p", "model": "m"}, "0.5"), ({"provider": "p", "model": "n"}, "NaN")]
            ),
        )
    )
    samples = client(fake.url).instant("up", at=1700000000)
    assert samples[0].labels == {"provider": "p", "model": "m"} and samples[0].value == 0.5
    assert math.isnan(samples[1].value)
    assert fake.requests[0]["params"]["time"] == ["1700000000.000"]
    assert fake.requests[0]["path"] == "/api/v1/query"


def test_scalar_raises_clear_errors_for_empty_and_nan(fake):
    fake.script += [
        (200, _vector([])),
        (200, _vector([({}, "NaN")])),
        (200, _vector([({}, "+Inf")])),
    ]
    c = client(fake.url)
    with pytest.raises(EmptyResult, match="returned no series"):
        c.scalar("nothing")
    with pytest.raises(NaNResult, match="returned NaN"):
        c.scalar("0/0")
    assert c.scalar("1/0") == math.inf


def test_range_query(fake):
    fake.script.append(
        (
            200,
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {"a": "b"}, "values": [[10, "1"], [25, "2"]]}],
                },
            },
        )
    )
    series = client(fake.url).range("x", 10, 25, 15)
    assert series[0].points == ((10.0, 1.0), (25.0, 2.0))
    assert fake.requests[0]["params"]["step"] == ["15"]


def test_promql_error_is_not_retried_and_says_why(fake):
    fake.script.append(
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error: unexpected <EOF>"},
        )
    )
    with pytest.raises(QueryError, match="bad_data.*unexpected <EOF>"):
        client(fake.url, retries=3).instant("sum(")
    assert len(fake.requests) == 1


def test_retries_with_backoff_on_503_then_succeeds(fake):
    fake.script += [(503, "busy"), (502, "bad gateway"), (200, _vector([({}, "1")]))]
    assert client(fake.url, retries=2).instant("up")[0].value == 1.0
    assert len(fake.requests) == 3


def test_non_200_after_retries_is_an_http_error(fake):
    fake.script += [(503, "busy")] * 2
    with pytest.raises(PrometheusHTTPError, match="HTTP 503") as info:
        client(fake.url, retries=1).instant("up")
    assert info.value.status == 503
    fake.script.append((404, "not found"))
    with pytest.raises(PrometheusHTTPError, match="Prometheus root"):
        client(fake.url).instant("up")


def test_not_prometheus_is_reported(fake):
    fake.script.append((200, "<html>login</html>"))
    with pytest.raises(PromQLError, match="not the Prometheus API"):
        client(fake.url).instant("up")


def test_unreachable_names_the_url_after_retries():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnreachable, match=f"{url} is unreachable.*2 attempts"):
        client(url, retries=1, timeout=1).instant("up")


def test_bearer_token_and_headers_are_sent_and_never_printed(fake, monkeypatch):
    monkeypatch.setenv("PROM_TOKEN", "s3cret-token-value")
    monkeypatch.setenv("ORG", "tenant-a")
    fake.script.append((401, "bad token s3cret-token-value"))
    c = client(
        fake.url,
        auth=Auth(bearer_token_env="PROM_TOKEN"),
        headers=parse_headers(["X-Scope-OrgID: $ORG", "X-Extra: 1"]),
    )
    with pytest.raises(PrometheusHTTPError) as info:
        c.instant("up")
    headers = fake.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer s3cret-token-value"
    assert headers["X-Scope-OrgID"] == "tenant-a" and headers["X-Extra"] == "1"
    assert "s3cret" not in str(info.value) and "check the credentials" in str(info.value)


def test_basic_auth_from_file(fake, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    client(fake.url, auth=Auth(basic_user="me", basic_password_file=str(secret))).instant("up")
    assert fake.requests[0]["headers"]["Authorization"].startswith("Basic ")


def test_auth_mistakes_name_the_source_not_the_value(monkeypatch, tmp_path):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(PromQLError, match="environment variable NOPE is not set"):
        PromClient("http://x", auth=Auth(bearer_token_env="NOPE"))
    with pytest.raises(PromQLError, match="cannot read"):
        PromClient("http://x", auth=Auth(bearer_token_file=str(tmp_path / "missing")))
    with pytest.raises(PromQLError, match="needs --basic-auth-user"):
        PromClient("http://x", auth=Auth(basic_password_file=__file__))
    with pytest.raises(PromQLError, match="http:// or https://"):
        PromClient("localhost:9090")
    with pytest.raises(ValueError, match="not 'Name: value'"):
        parse_headers(["novalue"])


def test_tls_switch_and_long_queries_use_post(fake):
    assert PromClient("https://x", verify=False).session.verify is False
    assert PromClient("https://x", verify="/ca.pem").session.verify == "/ca.pem"
    long_query = "up or " * 400 + "up"
    client(fake.url).instant(long_query)
    assert fake.requests[0]["method"] == "POST"
    assert fake.requests[0]["params"]["query"] == [long_query]


def test_password_in_url_is_not_printed():
    url = f"http://user:hunter22@127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnreachable) as info:
        client(url, retries=0, timeout=1).instant("up")
    assert "hunter22" not in str(info.value) and "http://127.0.0.1:" in str(info.value)
