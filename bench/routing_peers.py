"""The peers' routing rules, re-implemented on perfgen's probe results (bench/routing_quality.py).

Each takes the probe results seen so far (one list per model, oldest first) and returns
the models in route order. None has hysteresis: that is how they are documented.

* `proxy-score`: the proxy spec's in-process score
  `min(1, 1000/avg_ms)*w_l + min(1, tps/100)*w_t + success*w_r` with the configured
  weights, over the results of the last window (avg_ms: mean TTFT of the successful
  probes; tps: their mean decode rate; success: share of probes that succeeded).
* `litellm-mean10`: LiteLLM's lowest-latency routing: the mean of the last 10 samples of
  latency per output token (`response_ms / completion_tokens`); a failed request is
  recorded as a 1000 s sample, as LiteLLM records a timeout.
* `p50-window`: an OpenRouter-like sort by p50 TTFT over a fixed window; models whose
  success ratio over it is below the configured minimum go last.

Every rule reads the requests of the probes (a probe of a module with `runs` > 1 holds
several), as an in-process router sees each request. Models without any result in the
window keep their place after the ranked ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

from perfgen.config import Performance
from perfgen.exporter.result import ProbeResult, RequestResult

Results = Mapping[str, Sequence[ProbeResult]]  # model -> results, oldest first
PeerRule = Callable[[Results, float, Sequence[str]], list[str]]

LITELLM_SAMPLES = 10
LITELLM_FAILURE_SECONDS = 1000.0


def _in_window(results: Sequence[ProbeResult], at: float, window: float) -> list[RequestResult]:
    return [q for r in results if at - window < r.started_at <= at for q in r.requests]


def _order(values: dict[str, float], old: Sequence[str], higher_first: bool) -> list[str]:
    ranked = sorted(values, key=lambda m: (-values[m] if higher_first else values[m], old.index(m)))
    return ranked + [m for m in old if m not in values]


def proxy_score(performance: Performance, window: float) -> PeerRule:
    w = performance.weights

    def rule(results: Results, at: float, old: Sequence[str]) -> list[str]:
        scores: dict[str, float] = {}
        for model, seen in results.items():
            recent = _in_window(seen, at, window)
            ok = [r for r in recent if r.success]
            if not recent:
                continue
            success = len(ok) / len(recent)
            if ok:
                avg_ms = statistics.fmean(r.ttft_seconds or 0.0 for r in ok) * 1000
                tps = statistics.fmean(r.tokens_per_second or 0.0 for r in ok)
                latency = min(1.0, 1000 / avg_ms) if avg_ms > 0 else 1.0
                throughput = min(1.0, tps / 100)
            else:
                latency = throughput = 0.0
            scores[model] = (
                w.latency * latency + w.throughput * throughput + w.reliability * success
            )
        return _order(scores, old, higher_first=True)

    return rule


def litellm_mean10(results: Results, at: float, old: Sequence[str]) -> list[str]:
    means: dict[str, float] = {}
    for model, seen in results.items():
        last = [q for r in seen if r.started_at <= at for q in r.requests][-LITELLM_SAMPLES:]
        if not last:
            continue
        samples = [
            (r.duration_seconds or 0.0) / max(1, r.output_tokens or 1)
            if r.success
            else LITELLM_FAILURE_SECONDS
            for r in last
        ]
        means[model] = statistics.fmean(samples)
    return _order(means, old, higher_first=False)


def p50_window(performance: Performance, window: float) -> PeerRule:
    minimum = performance.thresholds.min_success_rate

    def rule(results: Results, at: float, old: Sequence[str]) -> list[str]:
        good: dict[str, float] = {}
        bad: dict[str, float] = {}
        for model, seen in results.items():
            recent = _in_window(seen, at, window)
            ok = [r.ttft_seconds for r in recent if r.success and r.ttft_seconds is not None]
            if not recent:
                continue
            p50 = statistics.median(ok) if ok else float("inf")
            (good if len(ok) / len(recent) >= minimum else bad)[model] = p50
        ranked = _order(good, old, higher_first=False)
        tail = [m for m in _order(bad, old, higher_first=False) if m in bad]
        return (
            [m for m in ranked if m in good]
            + tail
            + [m for m in old if m not in good and m not in bad]
        )

    return rule
