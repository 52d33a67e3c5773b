"""The reference tables in docs/ are what the code yields, and every relative link works."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perfgen import config_docs
from perfgen.docs import FIX_COMMAND, config_keys, sync
from perfgen.docs.links import broken_links, slug

ROOT = Path(__file__).resolve().parents[1]


def test_committed_docs_match_the_code() -> None:
    problems = sync(ROOT, write=False)
    assert not problems, (
        "the generated reference differs from the code:\n"
        + "\n".join(f"  {p}" for p in problems)
        + f"\nfix: cd {ROOT} && .venv/bin/{FIX_COMMAND}"
    )


def test_every_relative_link_resolves() -> None:
    problems = broken_links(ROOT)
    assert not problems, "broken links:\n" + "\n".join(f"  {p}" for p in problems)


@pytest.fixture
def copy_of_docs(tmp_path: Path) -> Path:
    for doc in ROOT.glob("*.md"):
        shutil.copy(doc, tmp_path / doc.name)
    for folder in ("docs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_an_edited_table_is_found_and_rewritten(copy_of_docs: Path) -> None:
    doc = copy_of_docs / "docs" / "configuration.md"
    original = doc.read_text(encoding="utf-8")
    doc.write_text(original.replace("| `max_chain` |", "| `max_chains` |"), encoding="utf-8")
    problems = sync(copy_of_docs, write=False)
    assert [(str(p.path), p.block) for p in problems] == [("docs/configuration.md", "config-keys")]
    assert sync(copy_of_docs, write=True) == []
    assert doc.read_text(encoding="utf-8") == original


def test_the_command_names_the_block_and_the_fix(copy_of_docs: Path) -> None:
    doc = copy_of_docs / "docs" / "metrics.md"
    doc.write_text(
        doc.read_text(encoding="utf-8").replace("llm_probe_success", "llm_probe_ok"),
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "perfgen.docs", "--check", "--root", str(copy_of_docs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "docs/metrics.md: generated:metrics-probe: differs" in run.stderr
    assert f"fix: {FIX_COMMAND}" in run.stderr


def test_a_key_without_a_meaning_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = config_docs.TABLES["performance.generator"]
    keys = {k: v for k, v in doc.keys.items() if k != "max_chain"}
    tables = {**config_docs.TABLES, "performance.generator": _with_keys(doc, keys)}
    monkeypatch.setattr(config_keys, "TABLES", tables)
    with pytest.raises(config_keys.IncompleteReference, match=r"performance\.generator\.max_chain"):
        config_keys.render(ROOT)


def test_a_meaning_for_a_key_the_parser_does_not_read_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = config_docs.TABLES["performance"]
    keys = {**doc.keys, "test_intervall_minutes": "A typo."}
    monkeypatch.setattr(
        config_keys, "TABLES", {**config_docs.TABLES, "performance": _with_keys(doc, keys)}
    )
    with pytest.raises(config_keys.IncompleteReference, match="test_intervall_minutes.*not read"):
        config_keys.render(ROOT)


def test_the_key_list_comes_from_the_parser() -> None:
    tables = config_keys.read_keys()
    stale = tables["performance.generator"]["stale_after"]
    assert (stale.kind, stale.default) == ("duration", None)
    weight = tables["performance.weights"]["latency"]
    assert weight.bounds == {"minimum": 0, "maximum": 1}
    assert tables["providers"]["models"].kind == "array of strings"


def test_a_broken_link_and_a_missing_anchor_are_found(copy_of_docs: Path) -> None:
    # Links into folders not copied are broken in the copy already: only new ones count.
    before = set(broken_links(copy_of_docs))
    doc = copy_of_docs / "docs" / "demo.md"
    doc.write_text(
        doc.read_text(encoding="utf-8")
        + "\n[gone](nowhere.md) [bad](metrics.md#no-such-heading) [ok](metrics.md#metrics)\n"
        + "`[in code](nowhere.md)`\n",
        encoding="utf-8",
    )
    assert [p for p in broken_links(copy_of_docs) if p not in before] == [
        "docs/demo.md: nowhere.md: no such file",
        "docs/demo.md: metrics.md#no-such-heading: no heading with that anchor",
    ]


def test_slugs_follow_github() -> None:
    assert slug("`[performance.exporter]` (exporter)") == "performanceexporter-exporter"
    assert (
        slug("The perfgen generator: `perfgen generate`")
        == "the-perfgen-generator-perfgen-generate"
    )


def _with_keys(doc: config_docs.TableDoc, keys: dict[str, str]) -> config_docs.TableDoc:
    from dataclasses import replace

    return replace(doc, keys=keys)


def _first_column(doc: Path, after: str) -> list[str]:
    """The backticked first cells of the first table after the line `after`."""
    lines = doc.read_text(encoding="utf-8").split("\n")
    rows: list[str] = []
    for line in lines[lines.index(after) + 1 :]:
        if line.startswith("| `"):
            rows.append(line.split("`")[1])
        elif rows:
            break
    return rows


def test_the_failure_reasons_table_lists_exactly_the_reasons() -> None:
    from perfgen.exporter.result import FAILURE_REASONS

    rows = _first_column(ROOT / "docs" / "exporter.md", "### Failure reasons")
    assert sorted(rows) == sorted(FAILURE_REASONS)


def test_the_alert_conditions_table_lists_exactly_the_alerts() -> None:
    import yaml

    from perfgen.config import load_config
    from perfgen.rules.render import render_rules

    performance = load_config(ROOT / "examples" / "config.example.toml").performance
    document = yaml.safe_load(render_rules(performance)["alerts.yml"])
    alerts = []
    for rule in (r for group in document["groups"] for r in group["rules"] if "alert" in r):
        labels = {k: v for k, v in rule["labels"].items() if k != "severity"}
        alerts.append(rule["alert"] + "".join(f'{{{k}="{v}"}}' for k, v in labels.items()))
    rows = _first_column(ROOT / "docs" / "rules-and-alerts.md", "## Alerts")
    assert rows == alerts


def test_a_table_or_key_missing_from_the_reference_config_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = config_keys.REFERENCE.read_text(encoding="utf-8")
    for removed, named in (
        ("[performance.generator]\n", r"add the table\(s\) performance\.generator"),
        ("temperature = 0.5\n", r"set performance\.modules\.custom\.temperature"),
    ):
        assert removed in reference
        partial = tmp_path / f"reference-{len(named)}.toml"
        partial.write_text(reference.replace(removed, ""), encoding="utf-8")
        monkeypatch.setattr(config_keys, "REFERENCE", partial)
        with pytest.raises(config_keys.IncompleteReference, match=named):
            config_keys.read_keys()
