"""A small Prometheus HTTP API client: instant and range queries, nothing else.

Works against Prometheus and API-compatible servers (Thanos, Mimir, VictoriaMetrics).
Every failure is a PromQLError whose message says what went wrong and where, and
never contains a credential: tokens and passwords live only in the session's auth
and headers, and error text built from responses is passed through `_redact`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from perfgen.config import redact_urls
from perfgen.generator.deadline import deadline, watch_session

# Retried: the server may be restarting or overloaded. Not retried: 400/422 (a bad query
# stays bad) and auth errors (retrying a wrong password only locks accounts).
_RETRY_STATUS = frozenset({429, 502, 503, 504})
# Long queries go in a POST body so proxies with URL limits do not cut them.
_MAX_GET_QUERY = 1500
# The generator's answers are small (a vector per model, a few kB each): 1000 models are
# well under 1 MB. A larger answer is a misconfigured or hostile server; reading it whole
# cost 12x its size in RSS (a 100 MB body: 1.24 GB), so the read stops at the cap.
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
_READ_BYTES = 64 << 10


class PromQLError(RuntimeError):
    """Any failure to get a usable answer from Prometheus."""


class PrometheusUnreachable(PromQLError):
    """Connection refused, DNS failure, timeout or TLS failure."""


class PrometheusHTTPError(PromQLError):
    """Prometheus answered with a non-200 status that is not a PromQL error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class QueryError(PromQLError):
    """Prometheus rejected or failed the query itself (bad_data, execution, timeout)."""


class EmptyResult(PromQLError):
    """The query matched no series where the caller needs at least one."""


class NaNResult(PromQLError):
    """The query returned NaN where the caller needs a number."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One series of a range-query matrix; points are (unix time, value), oldest first."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Auth:
    """Where credentials come from; the values are read when the client is built.

    Files are re-read on every client construction, so a rotated token file works
    for the next `--every` run without a restart.
    """

    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    basic_user: str | None = None
    basic_password_env: str | None = None
    basic_password_file: str | None = None

    def resolve(self) -> tuple[str | None, tuple[str, str] | None]:
        """(bearer token, (user, password)); raises PromQLError naming the source, not the value."""
        token = _read_secret(self.bearer_token_env, self.bearer_token_file, "bearer token")
        password = _read_secret(
            self.basic_password_env, self.basic_password_file, "basic-auth password"
        )
        if token and self.basic_user:
            raise PromQLError("choose either bearer-token or basic-auth, not both")
        if password is not None and not self.basic_user:
            raise PromQLError("a basic-auth password needs --basic-auth-user")
        basic = (self.basic_user, password or "") if self.basic_user else None
        return token, basic


def _read_secret(env: str | None, path: str | None, what: str) -> str | None:
    if env and path:
        raise PromQLError(f"{what}: give either an environment variable or a file, not both")
    if env:
        value = os.environ.get(env)
        if not value:
            raise PromQLError(f"{what}: environment variable {env} is not set")
        return value.strip()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PromQLError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    return None


@dataclass
class PromClient:
    """Prometheus HTTP API v1 client with timeouts, retries and auth.

    `base_url` is the server root (`http://prometheus:9090`) or a prefix such as
    `https://mimir/prometheus`; `/api/v1/...` is appended.
    """

    base_url: str
    timeout: float = 10.0
    retries: int = 2  # extra attempts after the first
    backoff: float = 0.5  # seconds before the first retry, doubled each time, capped at 8 s
    auth: Auth = field(default_factory=Auth)
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True  # False: skip TLS verification; a string: CA bundle path
    session: requests.Session | None = None
    # `timeout` bounds each attempt as a whole (connect, headers and body), not one read.
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise PromQLError(
                f"Prometheus URL must start with http:// or https://: {self.base_url}"
            )
        token, basic = self.auth.resolve()
        self._secrets = [s for s in (token, basic[1] if basic else None) if s]
        # http://user:pass@host works with requests, but must not reach a message.
        parts = urlsplit(self.base_url)
        if parts.password:
            self._secrets.append(parts.password)
        self.display_url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        self._secrets.extend(v for v in self.headers.values() if len(v) >= 8)
        session = self.session or requests.Session()
        watch_session(session)  # for the total deadline of each attempt
        session.headers.update(self.headers)
        # Our own bounded read counts the bytes as sent: no transparent inflation of a
        # gzip body past the cap (Prometheus honours identity).
        session.headers["Accept-Encoding"] = "identity"
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        if basic:
            session.auth = basic
        session.verify = self.verify
        self.session = session

    # ------------------------------------------------------------------ public API

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        """Evaluate `query` at `at` (unix seconds; None = the server's now)."""
        params: dict[str, str] = {"query": query}
        if at is not None:
            params["time"] = _fmt_time(at)
        data = self._call("query", params, query)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return [Sample({}, _to_float(result[1]), float(result[0]))]
        if kind != "vector" or not isinstance(result, list):
            raise QueryError(f"query {query!r}: expected a vector, got {kind}")
        return [
            Sample(
                dict(item.get("metric", {})), _to_float(item["value"][1]), float(item["value"][0])
            )
            for item in result
        ]

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at every `step` seconds from `start` to `end`."""
        if step <= 0 or end < start:
            raise ValueError("range query needs step > 0 and end >= start")
        params = {
            "query": query,
            "start": _fmt_time(start),
            "end": _fmt_time(end),
            "step": f"{step:g}",
        }
        data = self._call("query_range", params, query)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise QueryError(f"query {query!r}: expected a matrix, got {data.get('resultType')}")
        return [
            Series(
                dict(item.get("metric", {})),
                tuple((float(t), _to_float(v)) for t, v in item.get("values", [])),
            )
            for item in data["result"]
        ]

    def scalar(self, query: str, at: float | None = None) -> float:
        """A query that must yield exactly one number; EmptyResult/NaNResult otherwise."""
        samples = self.instant(query, at)
        if not samples:
            raise EmptyResult(f"query {query!r} returned no series")
        if len(samples) > 1:
            raise QueryError(f"query {query!r} returned {len(samples)} series, expected one")
        if math.isnan(samples[0].value):
            raise NaNResult(f"query {query!r} returned NaN")
        return samples[0].value

    # ------------------------------------------------------------------ transport

    def _call(self, endpoint: str, params: dict[str, str], query: str) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/{endpoint}"
        attempt = 0
        while True:
            try:
                response = self._send(url, params)
            except requests.exceptions.SSLError as exc:
                # A certificate problem does not fix itself; fail at once.
                raise PrometheusUnreachable(
                    self._redact(f"TLS error talking to {self.display_url}: {exc}")
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self.retries:
                    attempt = self._sleep(attempt)
                    continue
                kind = "timed out" if isinstance(exc, requests.Timeout) else "unreachable"
                raise PrometheusUnreachable(
                    f"Prometheus at {self.display_url} is {kind} "
                    f"(after {attempt + 1} attempt{'s' if attempt else ''}): "
                    + self._redact(_short(exc))
                ) from None
            if response.status_code in _RETRY_STATUS and attempt < self.retries:
                attempt = self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            return self._decode(response, query)

    def _send(self, url: str, params: dict[str, str]) -> _Answer:
        """One attempt, all of it within `timeout`; redirects are answers, not followed."""
        with deadline(self.timeout) as expired:
            try:
                return self._attempt(url, params)
            except (requests.RequestException, OSError, Urllib3Error):
                if expired.is_set():
                    raise _Deadline(f"no complete answer within {self.timeout:g}s") from None
                raise

    def _attempt(self, url: str, params: dict[str, str]) -> _Answer:
        assert self.session is not None
        # A redirect would carry our Authorization header or --header secrets to wherever
        # it points (requests strips only Authorization, and only across hosts).
        options: dict[str, Any] = {
            "timeout": self.timeout,
            "stream": True,
            "allow_redirects": False,
        }
        if len(params.get("query", "")) > _MAX_GET_QUERY:
            response = self.session.post(url, data=params, **options)
        else:
            response = self.session.get(url, params=params, **options)
        try:
            if response.is_redirect:
                where = _without_query(response.headers.get("Location", "?"))
                raise PrometheusHTTPError(
                    f"Prometheus at {self.display_url} answered HTTP {response.status_code} "
                    f"redirecting to {where}; redirects are not followed (credentials must "
                    "not travel to another address): give the final URL",
                    response.status_code,
                )
            encoding = response.headers.get("Content-Encoding", "identity").lower()
            if encoding not in ("", "identity"):
                raise PromQLError(
                    f"Prometheus at {self.display_url} answered with Content-Encoding: "
                    f"{encoding[:40]} although identity was asked; not decoded"
                )
            body = self._read_body(response)
        finally:
            response.close()
        return _Answer(response.status_code, response.headers.get("Retry-After"), body)

    def _read_body(self, response: requests.Response) -> bytes:
        """The body, read in pieces as they arrive, at most max_response_bytes of it.

        Not response.content: that reads the whole body first, whatever its size.
        """
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(f"announces {int(declared)} bytes")
        raw = response.raw
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                part = raw.read1(_READ_BYTES, decode_content=False)
            except (OSError, Urllib3Error) as exc:
                raise requests.ConnectionError(str(exc)) from None
            if not part:
                return b"".join(parts)
            size += len(part)
            if size > cap:
                raise self._too_large(f"sent more than {cap} bytes")
            parts.append(part)

    def _too_large(self, what: str) -> PromQLError:
        return PromQLError(
            f"Prometheus at {self.display_url} {what}, over the {self.max_response_bytes}-byte "
            "cap (max_response_bytes); the answer was not read"
        )

    def _sleep(self, attempt: int, retry_after: str | None = None) -> int:
        delay = min(self.backoff * (2**attempt), 8.0)
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 30.0)
        time.sleep(delay)
        return attempt + 1

    def _decode(self, response: _Answer, query: str) -> dict[str, Any]:
        try:
            body = json.loads(response.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            # 400 bad_data, 422 execution, 503 timeout/canceled: the query's own fault.
            raise QueryError(
                self._redact(
                    f"query {query!r} failed ({body.get('errorType', 'error')}, "
                    f"HTTP {response.status_code}): {body.get('error', '')}"
                )
            )
        if response.status_code != 200:
            hint = {
                401: " (check the credentials)",
                403: " (check the credentials)",
                404: " (is the URL the Prometheus root?)",
            }.get(response.status_code, "")
            raise PrometheusHTTPError(
                self._redact(
                    f"Prometheus at {self.display_url} answered HTTP {response.status_code}{hint}: "
                    f"{response.body[:200].decode('utf-8', 'replace').strip()}"
                ),
                response.status_code,
            )
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PromQLError(
                f"Prometheus at {self.display_url} sent a response that is not the "
                "Prometheus API (no status=success JSON)"
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise PromQLError(f"query {query!r}: response has no data object")
        return data

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        # A token in the URL's query or user info (`?token=`, `user:pass@`) goes too.
        return redact_urls(text)


@dataclass(frozen=True)
class _Answer:
    """What one attempt got: the status, its Retry-After, and the body, read in full."""

    status_code: int
    retry_after: str | None
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}


class _Deadline(requests.Timeout):
    """The attempt's total time ran out (retried and reported like any timeout)."""


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl() + (
        "?..." if parts.query else ""
    )


@dataclass(frozen=True)
class PrometheusConnection:
    """Where and how to reach Prometheus: everything `generate` and `query` share.

    Holds the sources of secrets (env names, files, `$VAR` headers), never their
    values: `client()` resolves them each time, so a rotated token file or a changed
    variable takes effect at the next `--every` run. A tenant is a header
    (`X-Scope-OrgID: team1` for Mimir/Cortex, `AccountID` for VictoriaMetrics).
    """

    url: str
    timeout: float = 10.0
    retries: int = 2
    auth: Auth = field(default_factory=Auth)
    headers: tuple[str, ...] = ()  # 'Name: value' items; a value '$VAR' is read at client()
    verify: bool | str = True  # False: skip TLS verification; a string: CA bundle path

    def client(self) -> PromClient:
        """A PromClient for one run; raises PromQLError or ValueError."""
        return PromClient(
            self.url,
            timeout=self.timeout,
            retries=self.retries,
            auth=self.auth,
            headers=parse_headers(self.headers),
            verify=self.verify,
        )


def parse_headers(items: Sequence[str]) -> dict[str, str]:
    """`Name: value` strings (repeatable CLI option) to a dict; `Name: $VAR` reads VAR."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ValueError(f"header {name or item!r} is not 'Name: value'")
        if value.startswith("$"):
            # Lets tenants' keys come from the environment instead of the command line.
            env_value = os.environ.get(value[1:])
            if not env_value:
                raise ValueError(f"header {name}: environment variable {value[1:]} is not set")
            value = env_value
        headers[name] = value
    return headers


def _to_float(text: Any) -> float:
    # Prometheus encodes NaN and infinities as the strings "NaN", "+Inf", "-Inf".
    return float(text)


def _fmt_time(at: float) -> str:
    return f"{at:.3f}"


def _short(exc: BaseException) -> str:
    text = str(exc)
    # urllib3's messages repeat the pool object; the tail names the real cause.
    if "Caused by" in text:
        text = text[text.index("Caused by") :]
    return text[:300]
