"""What each config key means: the prose of docs/configuration.md, kept beside config.py.

Types, defaults and bounds are not written here: `python -m perfgen.docs` takes them from
the parser itself, by reading perfgen/docs/reference.toml with a recording `_Reader`. Only
the meaning must be written by a person, and it is checked both ways: a key the parser
reads without an entry here, or an entry for a key the parser no longer reads, fails
`python -m perfgen.docs --check` (and tests/test_docs.py), naming the key.

Tables are keyed by their dotted path as the parser's reader names them, with `NAME`
standing for a user-chosen part (a module, scenario or provider name); `providers` is the
proxy's `[[providers]]` array. The order here is the order of the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TableDoc:
    title: str  # the heading, as a TOML table header
    keys: Mapping[str, str]  # key -> meaning, in the order the reference lists them
    read_by: str = ""  # which parts read the table, when not all of them
    intro: str = ""  # prose before the table
    note: str = ""  # prose after the table
    default: str | None = None  # one default for every key (e.g. inherited from elsewhere)
    show_defaults: bool = True


# What a probe request looks like, per provider and per model glob (perfgen/capabilities.py).
_CAPABILITY_KEYS = {
    "max_tokens_field": "The output-cap field: `max_tokens`, `max_completion_tokens` or "
    "`max_output_tokens` (default from the capability table).",
    "stream_options": "Send `stream_options.include_usage` (OpenAI chat completions); false "
    "for servers that refuse it.",
    "reasoning_effort": "An effort sent on every probe of these models (default: none, the "
    "provider's default).",
    "lowest_effort": 'What a module\'s `reasoning_effort = "lowest"` becomes for these models.',
    "thinking_budget_tokens": "Anthropic extended thinking budget (at least 1024); off unless set.",
}

TABLES: dict[str, TableDoc] = {
    "providers": TableDoc(
        "[[providers]]",
        read_by="the proxy's table",
        default="required",
        keys={
            "name": "Provider name; the target is `name:model`. The wire format is inferred "
            "from it: `anthropic`, `minimax`, `kimi` → Anthropic Messages; `gemini` is refused "
            "unless overridden; everything else → OpenAI chat completions.",
            "api_base_url": "http(s) base URL of the provider. The probe calls the URL the proxy "
            "builds from it for this provider name "
            "([exporter.md](exporter.md#endpoint-urls-from-api_base_url)).",
            "api_key": "`$ENV_NAME` (read at probe time) or a literal key.",
            "models": "Models this provider serves; only these can be probed.",
        },
        note="Other keys (`transformers`, ...) belong to the proxy and are ignored.",
    ),
    "performance": TableDoc(
        "[performance]",
        keys={
            "enabled": "`false`: `/probe` answers 503 and `/sd` is empty.",
            "test_interval_minutes": "Least time between two paid probes of one target+module; "
            "with adaptive probing, the longest.",
            "test_timeout_seconds": "Upper bound of every module's `timeout_seconds`.",
            "max_concurrent_tests": "Probes running at once, exporter-wide.",
            "min_test_count": "Samples a model needs before the generator ranks it "
            "(rules, generator).",
            "window": "Range the recording rules aggregate over (rules).",
            "success_rate_confidence": "`0` (default): `min_success_rate` is judged by the "
            "success ratio. Between 0.5 and 1 (not 1): by the ratio's one-sided upper "
            "Wilson bound at this level, so one failure among the few requests of a window "
            "does not exclude a model (rules; "
            "[rules-and-alerts.md](rules-and-alerts.md#judging-min_success_rate-on-few-requests)). "
            "The score and alerts keep the ratio.",
        },
    ),
    "performance.budget": TableDoc(
        "[performance.budget]",
        keys={
            "max_output_tokens_per_hour": "Rolling-hour output-token budget for all probes; "
            "`0` = unlimited.",
            "max_dollars_per_hour": "Rolling-hour budget in dollars, by `[performance.prices]` "
            "(models without a price cost 0); `0` = unlimited. Both budgets hold.",
        },
    ),
    "performance.prices.NAME": TableDoc(
        '[performance.prices."PROVIDER:MODEL"]',
        intro="Optional; the key names a configured `provider:model` (quoted, as it contains `:`).",
        keys={
            "input_per_million": "Dollars per million input tokens.",
            "output_per_million": "Dollars per million output tokens.",
        },
        note="The exporter counts what each probe cost (`perfgen_exporter_probe_cost_dollars_"
        "total`) and `perfgen query --config FILE --cost` prints what the configuration costs "
        "per day.",
    ),
    "performance.adaptive": TableDoc(
        "[performance.adaptive]",
        read_by="exporter",
        keys={
            "enabled": "Choose each target+module's interval between `min_interval_minutes` "
            "and `test_interval_minutes` from its own recent results "
            "([exporter.md](exporter.md#adaptive-probing)).",
            "min_interval_minutes": "The shortest interval (at most `test_interval_minutes`); "
            "more than `test_interval_minutes` is an error. The cheapest baseline module, if "
            "it costs at most half of another probed one, watches every target at this "
            "interval, and `stale_after` is then derived from it.",
            "confirm_after_seconds": "When the watch's result first looks degraded (TTFT 2x "
            "its window median, or decode rate half), probe it again this soon, once, and "
            "take that probe from the next interval (which waits twice the minimum less "
            "this); at most `min_interval_minutes`. 0: off.",
        },
    ),
    "performance.score": TableDoc(
        "[performance.score]",
        read_by="rules, adaptive probing",
        intro="What the score's components are relative to, apart "
        "from the pass/fail thresholds "
        "([rules-and-alerts.md](rules-and-alerts.md#the-performance-score)), and their "
        "form. In the `ratio` form each component is 0.5 at its reference and changes "
        "fastest around it, so a reference near the models' own figures makes a real "
        "slowdown a large score change, while thresholds far outside them leave good "
        "models scoring within the hysteresis margin of each other. Alerts and "
        "`meets_thresholds` keep using the thresholds.",
        keys={
            "form": "How the latency and throughput components follow their figure. "
            "`ratio` (default): `R / (R + p95)` and `decode / (decode + R)`, 0.5 at the "
            "reference. `capped` (the proxy spec's in-process form): `min(1, R / p95)` and "
            "`min(1, decode / R)`, 1 at or past the reference, so models past a reference "
            "tie on it and the other component ranks them, and sampling noise does not move "
            "a component that is capped. Reliability keeps its ratio in both.",
            "latency_statistic": "The TTFT figure of the window the latency component "
            "reads: `p95` (default) or `mean`. The p95 of a small window is about its "
            "slowest sample, so one slow first token lowers the component at once and keeps "
            "it low until that sample leaves the window; the mean moves by each sample's "
            "share, so a model recovers as its slow samples age out, and it is what users "
            "wait on average. The thresholds (`max_latency_ms`) and the alerts keep the p95.",
            "latency_reference_ms": "TTFT (the `latency_statistic` figure) at which the "
            "latency component is 0.5 (`capped`: at and under which it is 1; greater than "
            "0). Unset: the scenario's `max_latency_ms`.",
            "throughput_reference_tokens_per_sec": "Mean decode rate at which the throughput "
            "component is 0.5 (`capped`: at and over which it is 1; greater than 0). Unset: "
            "the scenario's `min_throughput_tokens_per_sec` (at least 1).",
            "failure_ratio_reference": "Failure ratio at which the reliability component "
            "is 0.5 (greater than 0, at most 1). Unset: `1 - min_success_rate`, so with "
            "0.95 one failure among ten requests in the window halves the component; "
            "0.25-0.5 lets a single failure in a small window weigh less than a real "
            "slowdown (the example config: 0.5).",
        },
        note="One pair applies to every scenario. The example config sets the `capped` "
        "form on the mean TTFT at 1000 ms and 100 tokens/s: above the mean TTFT of healthy "
        "fast chat models, under a queueing provider's, and the decode rate of fast ones "
        "(where the proxy spec's in-process score saturates); for thinking or long-answer "
        "models set them near those models' figures. Measured in "
        "[benchmarks.md](benchmarks.md#5-routing-quality-per-probe-token-benchrouting_qualitypy).",
    ),
    "performance.exporter": TableDoc(
        "[performance.exporter]",
        read_by="exporter",
        keys={
            "scrape_timeout_offset_seconds": "Subtracted from Prometheus' scrape timeout to "
            "leave time to answer.",
            "log_format": "`logfmt` or `json` (overridden by `--log-format`).",
            "backoff_initial_seconds": "First retry delay of a failed target; doubles per "
            "consecutive failure; a longer `Retry-After` (429) wins; capped at the interval. "
            "Also the least time between two manual tests of one target+module "
            "(`POST /performance/test`).",
            "max_sse_line_bytes": "Longest SSE line a probe accepts; a longer one fails the "
            "request `bad_stream` ([security](security.md)).",
            "max_sse_event_bytes": "Largest SSE event (its `data:` lines together); a larger "
            "one fails the request `bad_stream`.",
            "max_answer_bytes": "Streamed text kept per request, each of answer, reasoning and "
            "tool-call text: for `expected_response` and for the token estimate when no usage "
            "comes (extrapolated past the cap).",
            "management_token": '`"$ENV_NAME"`: the environment variable holding the bearer '
            "token of the management API's POST and DELETE (read per request, at least 16 "
            "characters). Only a `$ENV_NAME` reference is accepted; a literal token in the "
            "file is an error. Unset: POST and DELETE answer 403.",
        },
    ),
    "performance.test_models": TableDoc(
        "[performance.test_models]",
        keys={
            "providers": "Providers to test. A listed provider without any model in `models` "
            "is tested on all its models; a model in `models` must belong to a listed "
            "provider when this list is given.",
            "models": '`"provider:model"` targets (first `:` splits).',
            "modules": "Modules `/sd` pairs with every target.",
        },
        note="Without a `[performance.test_models]` table every configured model is a target.",
    ),
    "performance.modules.NAME": TableDoc(
        "[performance.modules.NAME]",
        intro="A table with a built-in name changes only the keys it sets; a new name "
        "(lower_snake_case) starts from `latency`'s settings. The built-in modules are listed "
        "below the table.",
        show_defaults=False,
        keys={
            "prompts": "Prompts, rotated per probe so provider caches do not flatter a model.",
            "expected_response": "Regex the answer must match, else the probe fails with "
            "`validation`.",
            "max_tokens": (
                "Output tokens requested per stream (and the budget reservation). A"
                " throughput probe measures the decode rate best when decoding them takes"
                " about a second at the model's rate: shorter, chunk jitter shows."
            ),
            "timeout_seconds": "Whole-probe timeout (capped by `test_timeout_seconds`).",
            "runs": "Sequential rounds per probe.",
            "concurrency": "Parallel streams per round.",
            "input_tokens": "Pad the prompt to about this many tokens (0 = no padding).",
            "temperature": "Sampling temperature. Not sent unless set: reasoning models refuse it.",
            "reasoning_effort": "`lowest` (the model family's lowest effort, from the "
            "capability table) or `none`/`minimal`/`low`/`medium`/`high`/`xhigh`; sent only to "
            "families that take an effort ([capability table](exporter.md#capability-table)).",
        },
    ),
    "performance.providers.NAME": TableDoc(
        "[performance.providers.NAME]",
        intro="`NAME` is a `[[providers]]` name; perfgen's own settings for that provider.",
        keys={
            "protocol": "`openai`, `anthropic` or `openai-responses` (the Responses API), "
            "overriding the inference from the name.",
            "probe_api_key": "A separate key (`$ENV_NAME`) for probing, to keep probe spend apart.",
            "api_base_url": "Probe a different endpoint than the proxy uses (the per-name URL "
            "rule is then off).",
            **{key: meaning for key, meaning in _CAPABILITY_KEYS.items()},
            "models": 'Tables `models."GLOB"` of the same capability keys for the models '
            "matching the glob (below).",
        },
        note="An unsupported-parameter failure names the field and the key to change; see "
        "[Unsupported parameters](exporter.md#unsupported-parameters).",
    ),
    "performance.providers.NAME.models.NAME": TableDoc(
        '[performance.providers.NAME.models."GLOB"]',
        intro="The capability keys of `[performance.providers.NAME]` for the models matching "
        "`GLOB` (fnmatch, case-sensitive), applied after the provider-wide keys.",
        default="the provider-wide value",
        keys=_CAPABILITY_KEYS,
    ),
    "performance.thresholds": TableDoc(
        "[performance.thresholds]",
        read_by="rules, alerts, generator",
        keys={
            "max_latency_ms": "p95 time to first token a model may have and still meet "
            "thresholds; also the latency reference of the score (the latency component is 0.5 "
            "there).",
            "min_throughput_tokens_per_sec": "Mean decode rate a model must reach; the "
            "throughput component's reference.",
            "min_success_rate": "Share of requests that must succeed; the reliability "
            "component's reference.",
        },
    ),
    "performance.weights": TableDoc(
        "[performance.weights]",
        read_by="rules",
        keys={
            "latency": "Weight of the latency component in the score.",
            "throughput": "Weight of the throughput component.",
            "reliability": "Weight of the reliability component.",
        },
        note="The three must sum to 1. The defaults hold without a `[performance.weights]` "
        "table; a weight left out of a table that sets others is 0.",
    ),
    "performance.scenarios.NAME": TableDoc(
        "[performance.scenarios.NAME]",
        read_by="rules, generator",
        intro="`NAME` is one of the proxy's routing scenarios: {scenarios}.",
        keys={
            "weights": "The scenario's own weights (same keys as `[performance.weights]`, sum "
            "to 1); gives it its own `scenario` score series. Default: the global weights.",
            "thresholds": "The scenario's own thresholds (same keys as "
            "`[performance.thresholds]`; unset keys inherit). Default: the global thresholds.",
            "candidates": '`"provider,model"` routes that may serve the scenario; each must be '
            "a configured model. Empty: the routes already in the scenario's chain. A scenario "
            "absent from `[router]` is added only when it has candidates.",
        },
    ),
    "performance.scenarios.NAME.weights": TableDoc(
        "[performance.scenarios.NAME.weights]",
        intro="Without this table the scenario uses the global weights.",
        keys={
            "latency": "As `[performance.weights]`; a weight left out of this table is 0.",
            "throughput": "As `[performance.weights]`.",
            "reliability": "As `[performance.weights]`.",
        },
    ),
    "performance.scenarios.NAME.thresholds": TableDoc(
        "[performance.scenarios.NAME.thresholds]",
        default="the global value",
        keys={
            "max_latency_ms": "As `[performance.thresholds]`, for this scenario's ranking.",
            "min_throughput_tokens_per_sec": "As `[performance.thresholds]`.",
            "min_success_rate": "As `[performance.thresholds]`.",
        },
    ),
    "performance.generator": TableDoc(
        "[performance.generator]",
        read_by="generator",
        keys={
            "hysteresis_margin": "A challenger must beat the route's current holder by this "
            "fraction of its score ...",
            "hysteresis_for": "... continuously for this long before it takes the place.",
            "switch_confidence": "How sure the generator must be that a challenger's score "
            "is truly higher before it takes a place: besides the margin, its lead must exceed "
            "this one-sided confidence's normal quantile times the standard error of the "
            "difference, from the windows' sample spread (recorded as "
            "`provider_model:llm_*:stderr_<window>`). 0: the margin alone; otherwise at least "
            '0.5 and below 1. Needs `[performance.score] latency_statistic = "mean"`.',
            "max_chain": "Routes kept in a fallback chain.",
            "stale_after": "A model without a probe this recent has no fresh data: it keeps "
            "its old place after the ranked models. Unset: three probe cadences, 3 × "
            "max(`test_interval_minutes`, 15 s). The alerting rules (`PerfgenProbeDataStale`, "
            "`PerfgenGeneratorNotSucceeding`) use the same value, derived once in "
            "`perfgen/timing.py` (probes follow scrapes, rarely more often than every 15 s).",
        },
    ),
}
