"""A small Prometheus HTTP API client: instant and range queries, nothing else.

Works against Prometheus and API-compatible servers (Thanos, Mimir, VictoriaMetrics).
Every failure is a PromQLError whose message says what went wrong and where, and
never contains a credential: tokens and passwords live only in the session's auth
and headers, and error text built from responses is passed through `_redact`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from exporter.config import Route
from generator.ranking import ModelStats

# Retried: the server may be restarting or overloaded. Not retried: 400/422 (a bad query
# stays bad) and auth errors (retrying a wrong password only locks accounts).
_RETRY_STATUS = frozenset({429, 502, 503, 504})
# Long queries go in a POST body so proxies with URL limits do not cut them.
_MAX_GET_QUERY = 1500


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
        session.headers.update(self.headers)
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
        if kind == "scalar":
            return [Sample({}, _to_float(result[1]), float(result[0]))]
        if kind != "vector" or not isinstance(result, list):
            raise QueryError(f"query {query!r}: expected a vector, got {kind}")
        return [
            Sample(dict(item.get("metric", {})), _to_float(item["value"][1]),
                   float(item["value"][0]))
            for item in result
        ]

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at every `step` seconds from `start` to `end`."""
        if step <= 0 or end < start:
            raise ValueError("range query needs step > 0 and end >= start")
        params = {"query": query, "start": _fmt_time(start), "end": _fmt_time(end),
                  "step": f"{step:g}"}
        data = self._call("query_range", params, query)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise QueryError(f"query {query!r}: expected a matrix, got {data.get('resultType')}")
        return [
            Series(dict(item.get("metric", {})),
                   tuple((float(t), _to_float(v)) for t, v in item.get("values", [])))
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

    def _send(self, url: str, params: dict[str, str]) -> requests.Response:
        assert self.session is not None
        if len(params.get("query", "")) > _MAX_GET_QUERY:
            return self.session.post(url, data=params, timeout=self.timeout)
        return self.session.get(url, params=params, timeout=self.timeout)

    def _sleep(self, attempt: int, retry_after: str | None = None) -> int:
        delay = min(self.backoff * (2**attempt), 8.0)
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 30.0)
        time.sleep(delay)
        return attempt + 1

    def _decode(self, response: requests.Response, query: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            # 400 bad_data, 422 execution, 503 timeout/canceled: the query's own fault.
            raise QueryError(self._redact(
                f"query {query!r} failed ({body.get('errorType', 'error')}, "
                f"HTTP {response.status_code}): {body.get('error', '')}"
            ))
        if response.status_code != 200:
            hint = {401: " (check the credentials)", 403: " (check the credentials)",
                    404: " (is the URL the Prometheus root?)"}.get(response.status_code, "")
            raise PrometheusHTTPError(self._redact(
                f"Prometheus at {self.display_url} answered HTTP {response.status_code}{hint}: "
                f"{response.text[:200].strip()}"
            ), response.status_code)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PromQLError(f"Prometheus at {self.display_url} sent a response that is not the "
                              "Prometheus API (no status=success JSON)")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PromQLError(f"query {query!r}: response has no data object")
        return data

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text


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
        text = text[text.index("Caused by"):]
    return text[:300]


# ----------------------------------------------------------------------------------------
# perfgen's recording rules (docs/CONTRACTS.md) read into ranking.ModelStats.

Key = tuple[str, str]  # (provider, model)


def rule_names(window: str) -> dict[str, str]:
    """The recording-rule series the generator and `perfgen query` read, by role."""
    return {
        "score": f"provider_model:llm_performance_score:ratio_{window}",
        "meets": f"provider_model:llm_meets_thresholds:bool_{window}",
        "samples": f"provider_model:llm_requests:increase_{window}",
        "ttft_p95": f"provider_model:llm_ttft_seconds:p95_{window}",
        "decode": f"provider_model:llm_decode_tokens_per_second:mean_{window}",
        "success": f"provider_model:llm_request_success:ratio_{window}",
    }


def snapshot_queries(window: str, stale_after: str) -> dict[str, str]:
    """PromQL per role. `max by` folds duplicates (HA replicas behind Thanos, say)."""
    names = rule_names(window)
    queries = {
        role: f"max by (provider, model, scenario) ({names[role]})"
        for role in ("score", "meets")
    }
    queries.update({
        role: f"max by (provider, model) ({names[role]})"
        for role in ("samples", "ttft_p95", "decode", "success")
    })
    # The newest probe of any module within stale_after; an exporter that stopped
    # reporting still shows its last timestamp here until stale_after has passed.
    queries["last_probe"] = (
        f"max by (provider, model) (max_over_time(llm_probe_timestamp_seconds[{stale_after}]))"
    )
    return queries


@dataclass
class Snapshot:
    """Everything ranking needs, fetched at one evaluation time."""

    at: float
    window: str
    stale_after_seconds: float
    hold_seconds: float
    hold_step: float
    score: dict[Key, dict[str, float]] = field(default_factory=dict)  # key -> scenario -> v
    meets: dict[Key, dict[str, float]] = field(default_factory=dict)
    plain: dict[str, dict[Key, float]] = field(default_factory=dict)  # role -> key -> v
    last_probe: dict[Key, float] = field(default_factory=dict)
    history: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    hold_points: int = 0
    warnings: list[str] = field(default_factory=list)

    def keys(self) -> list[Key]:
        """Every provider+model any rule has data for, sorted."""
        found = set(self.score) | set(self.meets)
        for values in self.plain.values():
            found |= set(values)
        return sorted(found)


def fetch_snapshot(
    client: PromClient,
    window: str,
    *,
    hold_seconds: float,
    stale_after: str,
    stale_after_seconds: float,
    at: float | None = None,
) -> Snapshot:
    """Run the snapshot queries at one instant; any failed query fails the snapshot."""
    at = time.time() if at is None else at
    step = max(15.0, math.ceil(hold_seconds / 60))
    snap = Snapshot(at, window, stale_after_seconds, hold_seconds, step)
    queries = snapshot_queries(window, stale_after)
    for role, query in queries.items():
        samples = client.instant(query, at)
        for sample in samples:
            key = (sample.labels.get("provider", ""), sample.labels.get("model", ""))
            if not all(key):
                continue
            if role in ("score", "meets"):
                scenario = sample.labels.get("scenario", "default")
                getattr(snap, role).setdefault(key, {})[scenario] = sample.value
            elif role == "last_probe":
                snap.last_probe[key] = sample.value
            else:
                snap.plain.setdefault(role, {})[key] = sample.value
    if not snap.score:
        snap.warnings.append(
            f"no {rule_names(window)['score']} series at all: are perfgen's recording rules "
            f"loaded with window {window}, and is the exporter scraped?"
        )
    if snap.score and not snap.last_probe:
        snap.warnings.append(
            f"no llm_probe_timestamp_seconds in the last {stale_after}: "
            "freshness is judged by the recording rules alone"
        )
    if hold_seconds > 0 and snap.score:
        # Hysteresis: the score at every step of the hold time, from one range query.
        start = at - hold_seconds
        snap.hold_points = int(math.floor(hold_seconds / step + 1e-9)) + 1
        for series in client.range(queries["score"], start, at, step):
            labels = series.labels
            key3 = (labels.get("provider", ""), labels.get("model", ""),
                    labels.get("scenario", "default"))
            snap.history[key3] = [v for _, v in series.points]
    return snap


def model_stats(snap: Snapshot, scenario: str, route: Route) -> ModelStats:
    """ranking.ModelStats of one route for one scenario (scenario's own series first)."""
    key = (route.provider, route.model)
    scores = snap.score.get(key, {})
    label = scenario if scenario in scores else "default"
    score = scores.get(label)
    score = score if score is not None and math.isfinite(score) else None
    meets_by = snap.meets.get(key, {})
    meets_value = _finite(meets_by.get(scenario, meets_by.get("default")))
    fresh, stale_reason = True, ""
    if snap.last_probe:
        last = snap.last_probe.get(key)
        if last is None:
            fresh, stale_reason = False, "no probe within stale_after"
        elif snap.at - last > snap.stale_after_seconds:
            fresh = False
            stale_reason = f"last probe {_age(snap.at - last)} ago"
    hold_min = hold_max = None
    covered = False
    if snap.hold_seconds <= 0:
        hold_min = hold_max = score
        covered = score is not None
    else:
        values = snap.history.get((route.provider, route.model, label), [])
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            hold_min, hold_max = min(finite), max(finite)
        covered = len(finite) >= snap.hold_points > 0
    return ModelStats(
        route=route,
        score=score,
        meets_thresholds=None if meets_value is None else meets_value >= 0.5,
        samples=_finite(snap.plain.get("samples", {}).get(key)),
        fresh=fresh,
        stale_reason=stale_reason,
        ttft_p95_seconds=_finite(snap.plain.get("ttft_p95", {}).get(key)),
        decode_tokens_per_second=_finite(snap.plain.get("decode", {}).get(key)),
        success_ratio=_finite(snap.plain.get("success", {}).get(key)),
        score_scenario=label if score is not None else None,
        hold_min=hold_min,
        hold_max=hold_max,
        hold_covered=covered,
    )


def _age(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _finite(value: float | None) -> float | None:
    # NaN comes from divisions by zero in rules (no samples); treat it as no data.
    return None if value is None or math.isnan(value) else value
