"""`perfgen query`'s output formats, from rows alone (no Prometheus: the integration
tests in test_generator_integration.py read the same rows from a real one)."""

from __future__ import annotations

from perfgen.config import Route
from perfgen.generator.query_cli import COLUMNS, Row, render
from perfgen.generator.ranking import FAILS, MEETS, ModelStats


def stats(provider: str, score: float, meets: bool, bound: float | None) -> ModelStats:
    return ModelStats(
        Route(provider, "chat"),
        score=score,
        meets_thresholds=meets,
        samples=5,
        ttft_p95_seconds=0.75,
        decode_tokens_per_second=90.0,
        success_ratio=0.8 if meets else 0.6,
        success_upper_bound=bound,
    )


def rows(bound: float | None) -> list[Row]:
    # Only the failing model has a recorded bound (the other's series is absent).
    return [
        Row(1, stats("groq", 0.61, True, None), MEETS, ""),
        Row(2, stats("deepseek", 0.4, False, bound), FAILS, "upper bound 0.905 < 0.95"),
    ]


def test_the_table_shows_the_upper_bound_only_where_it_is_recorded() -> None:
    plain = render(rows(None), "table", "default", "30m", 0.0).splitlines()
    assert "UPPER" not in plain[1]
    assert "SUCCESS  SAMPLES" in plain[1]
    bounded = render(rows(0.905), "table", "default", "30m", 0.0).splitlines()
    column = bounded[1].index("SUCCESS UPPER")
    cells = [line[column : column + len("SUCCESS UPPER")].strip() for line in bounded[2:]]
    # Unrecorded for one model (it had no bound series): a dash, never a made-up 1.
    assert cells == ["-", "0.905"]


def test_csv_and_json_keep_one_column_set_with_or_without_the_bound() -> None:
    for bound in (None, 0.905):
        header, first, second = render(rows(bound), "csv", "default", "30m", 0.0).splitlines()
        assert header == ",".join(COLUMNS)
        at = COLUMNS.index("success_upper_bound")
        assert first.split(",")[at] == ""
        assert second.split(",")[at] == ("" if bound is None else "0.905")
    json_text = render(rows(0.905), "json", "default", "30m", 0.0)
    assert '"success_upper_bound": null' in json_text
    assert '"success_upper_bound": 0.905' in json_text
