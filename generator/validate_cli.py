"""`perfgen validate`: would terraphim-llm-proxy start with this file, and use all of it?

The check an operator runs before a deploy, and the one `perfgen generate` runs on
every file before it writes it (generator/proxy_schema.py). Each line names the file and
the dotted key, and says in the proxy's terms what happens:

    FILE: KEY: the proxy refuses to start: ...      (it exits 1 with this file)
    FILE: KEY: silently dropped at request time: ... (the proxy starts, never uses it)
    FILE: KEY: perfgen: ...                          (perfgen's own [performance] error)
    FILE: KEY: note: ...                             (true and worth knowing, not wrong,
                                                      such as a window that would never
                                                      score a model)

Exit 0 when there is nothing of the first three kinds, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from perfgen.config import ConfigError, parse_config
from perfgen.generator.proxy_schema import DROPS, NOTE, REFUSES, Finding, check_text
from perfgen.rules.render import render_warnings

PERFGEN = "perfgen"
_LABELS = {
    REFUSES: "the proxy refuses to start",
    DROPS: "silently dropped at request time",
    PERFGEN: "perfgen",
    NOTE: "note",
}


@dataclass(frozen=True)
class Report:
    path: str
    findings: tuple[Finding, ...]

    @property
    def valid(self) -> bool:
        return all(f.level == NOTE for f in self.findings)

    @property
    def proxy_starts(self) -> bool:
        return not any(f.level == REFUSES for f in self.findings)

    def lines(self) -> list[str]:
        out = []
        for finding in self.findings:
            key = f"{finding.key}: " if finding.key else ""
            out.append(f"{self.path}: {key}{_LABELS[finding.level]}: {finding.message}")
        return out

    def summary(self) -> str:
        counts = {level: sum(f.level == level for f in self.findings) for level in _LABELS}
        if not self.proxy_starts:
            verdict = f"invalid: the proxy would not start ({counts[REFUSES]} error(s))"
        elif not self.valid:
            verdict = (
                f"invalid: the proxy would start, but {counts[DROPS]} route entr(ies) are "
                f"silently dropped and {counts[PERFGEN]} perfgen error(s)"
            )
        else:
            verdict = "valid: the proxy would start with this file and use every route"
        notes = f" ({counts[NOTE]} note(s))" if counts[NOTE] else ""
        return f"{self.path}: {verdict}{notes}"


def validate_file(path: str, *, check_env: bool = False) -> Report:
    """Everything `perfgen validate` says about one file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return Report(path, (Finding(REFUSES, "", f"cannot read: {reason}"),))
    return validate_text_of(path, text, check_env=check_env)


def validate_text_of(path: str, text: str, *, check_env: bool = False) -> Report:
    findings = check_text(text, dict(os.environ) if check_env else None)
    if not any(f.key == "" for f in findings):  # TOML parsed: perfgen's own reading too
        try:
            config = parse_config(text, path)
        except ConfigError as exc:
            findings.append(Finding(PERFGEN, exc.key, exc.message))
        else:
            # Valid, but the rules it renders would never score a model, or lose every
            # score at every probe: worth knowing before a deploy, not an error.
            for warning in render_warnings(config.performance):
                key = warning.split(" ", 1)[0] if warning.startswith("performance.") else ""
                findings.append(Finding(NOTE, key, f"perfgen rules render warns: {warning}"))
    order = {REFUSES: 0, DROPS: 1, PERFGEN: 2, NOTE: 3}
    findings.sort(key=lambda f: order[f.level])
    return Report(path, tuple(findings))


@click.command()
@click.option(
    "--config",
    "config_paths",
    required=True,
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The proxy's config.toml (repeatable).",
)
@click.option(
    "--check-env",
    is_flag=True,
    help="Also require every $NAME api_key to be set here, as the proxy does at start "
    "(run it where the proxy runs).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only problems, no notes or summary.")
def validate(config_paths: tuple[str, ...], check_env: bool, quiet: bool) -> None:
    """Check a config.toml the way terraphim-llm-proxy loads and routes with it.

    \b
    Says, each with file and key: whether the proxy would start with this file
    (and if not, why, in the proxy's terms); which route entries it would silently
    skip or never use; and perfgen's own [performance] errors.
    Exit codes: 0 valid, 1 invalid, 2 usage error.
    """
    valid = True
    for path in config_paths:
        report = validate_file(path, check_env=check_env)
        valid = valid and report.valid
        for line, finding in zip(report.lines(), report.findings, strict=True):
            if not (quiet and finding.level == NOTE):
                click.echo(line, err=finding.level != NOTE)
        if not quiet:
            click.echo(report.summary())
    sys.exit(0 if valid else 1)
