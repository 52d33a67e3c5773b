"""The alerts' `for:` durations as rendered for the example and the demo configs.

The rules are rendered exactly as `perfgen rules render` does and the alerts read back
from the YAML. Which derivation a `for:` follows is found by rendering once more with
timings chosen so that every derived duration differs (rules/render.py `Timings`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from perfgen.config import Performance, load_config
from perfgen.docs.markdown import code, table
from perfgen.rules.render import Timings, render_rules, timings

EXAMPLE = Path("examples/config.example.toml")


def _demo_config() -> Path:
    from perfgen.stack.demo import DEMO_PROXY_CONFIG

    return DEMO_PROXY_CONFIG


def _configs(root: Path) -> dict[str, Performance]:
    return {
        "example": load_config(root / EXAMPLE).performance,
        "demo": load_config(_demo_config()).performance,
    }


def _derived(timing: Timings) -> dict[str, str]:
    """Timings field -> duration, for the fields with a documented derivation."""
    return {
        f.name: getattr(timing, f.name)
        for f in dataclasses.fields(Timings)
        if "derivation" in f.metadata
    }


def _alerts(performance: Performance) -> list[dict[str, Any]]:
    document = yaml.safe_load(render_rules(performance)["alerts.yml"])
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def _distinct(performance: Performance) -> Performance:
    # 30 min probes, a 50 min window, 20 min hysteresis: probe 45m, infra 2m, score 50m,
    # baseline 5h, stale 1h30m, flap range 1h20m; a `for:` equal to none of them is fixed.
    generator = dataclasses.replace(performance.generator, stale_after=None, hysteresis_for="20m")
    return dataclasses.replace(
        performance, test_interval_minutes=30.0, window="50m", generator=generator
    )


def _which(duration: str | None, derived: dict[str, str]) -> str:
    if duration is None:
        return "–"
    # `window` and `score_for` are equal by definition; a `for:` is named by its own field.
    names = [name for name, value in derived.items() if value == duration]
    names.sort(key=lambda name: not name.endswith("_for"))
    return code(names[0]) if names else "fixed"


def render_timings(root: Path) -> str:
    configs = _configs(root)
    derived = {name: _derived(timings(p)) for name, p in configs.items()}
    rows = []
    for f in dataclasses.fields(Timings):
        if "derivation" not in f.metadata:
            continue
        row = [code(f.name), f.metadata["derivation"]]
        row += [code(derived[name][f.name]) for name in configs]
        rows.append(row)
    header = ["duration", "derivation", *(f"{name} config" for name in configs)]
    return "\n".join(table(header, rows))


def _key(rule: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    # Two rules may share an alert name (warning and critical): the labels tell them apart.
    return rule["alert"], tuple(sorted(rule.get("labels", {}).items()))


def render_alerts(root: Path) -> str:
    configs = _configs(root)
    probe = _distinct(configs["example"])
    derived = _derived(timings(probe))
    kinds = {_key(rule): _which(rule.get("for"), derived) for rule in _alerts(probe)}
    per_config = {name: {_key(r): r for r in _alerts(p)} for name, p in configs.items()}
    rows = []
    for key, rule in per_config["example"].items():
        labels = {k: v for k, v in rule.get("labels", {}).items() if k != "severity"}
        name = rule["alert"] + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}")
        row = [code(name if labels else rule["alert"]), rule["labels"]["severity"], kinds[key]]
        for config in configs:
            duration = per_config[config].get(key, {}).get("for")
            row.append(code(duration) if duration else "–")
        rows.append(row)
    header = ["alert", "severity", "`for:`", *(f"{name} config" for name in configs)]
    return "\n".join(table(header, rows))
