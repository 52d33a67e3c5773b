"""Render prometheus.yml for a local perfgen stack (demo, end-to-end tests).

The probe job follows blackbox_exporter's pattern: targets come from the exporter's own
`/sd` (so the model list lives only in `[performance.test_models]`) and are relabelled
into `/probe?target=...&module=...` requests against the exporter. Job names are the
ones in docs/CONTRACTS.md, which the rules and dashboards select on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import yaml

PROBE_JOB = "llm_probe"
EXPORTER_JOB = "perfgen_exporter"
GENERATOR_JOB = "perfgen_generator"


def host_port(address: str) -> str:
    """`127.0.0.1:9115` from either that or `http://127.0.0.1:9115/...`."""
    if "://" not in address:
        return address.rstrip("/")
    parts = urlsplit(address)
    if not parts.netloc:
        raise ValueError(f"{address!r} has no host:port")
    return parts.netloc


def probe_relabel_configs(exporter: str) -> list[dict[str, Any]]:
    """Turn an /sd target into a /probe request against the exporter.

    The `(.+)` regexes make each step a no-op when its source label is absent, so /sd may
    give the module either as a `module` label or directly as `__param_module`.
    """
    return [
        {"source_labels": ["__address__"], "regex": "(.+)", "target_label": "__param_target"},
        {"source_labels": ["module"], "regex": "(.+)", "target_label": "__param_module"},
        # instance = what is probed, not the exporter (as with blackbox_exporter).
        {"source_labels": ["__param_target"], "regex": "(.+)", "target_label": "instance"},
        {"target_label": "__address__", "replacement": host_port(exporter)},
    ]


def region_relabel_configs(region: str | None) -> list[dict[str, Any]]:
    """Label every target of a job `region=NAME`; none without a region.

    A target label rather than an external label: a Prometheus server's own rules see
    target labels (external labels are only added to what leaves it), and an agent's
    remote write carries them as well. The exporter knows nothing of regions.
    """
    if region is None:
        return []
    return [{"target_label": "region", "replacement": region}]


def shard_relabel_configs(shard: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Keep shard `index` of `total` of the /sd targets, by a hash of target and module.

    Servers given shards 0..total-1 of the same /sd list probe every target+module
    exactly once between them, each through its own exporter: no probe is paid twice.
    """
    if shard is None:
        return []
    index, total = shard
    if not 0 <= index < total:
        raise ValueError(f"shard index {index} is not in 0..{total - 1}")
    return [
        {
            "source_labels": ["__address__", "module"],
            "modulus": total,
            "target_label": "__tmp_shard",
            "action": "hashmod",
        },
        {"source_labels": ["__tmp_shard"], "regex": str(index), "action": "keep"},
    ]


def render_prometheus_config(
    exporter: str,
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    probe_scrape_interval: str | None = None,
    probe_scrape_timeout: str | None = None,
    sd_refresh_interval: str = "30s",
    generator: str | None = None,
    alertmanager: str | None = None,
    rule_files: Sequence[str] = (),
    external_labels: Mapping[str, str] | None = None,
    extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
    region: str | None = None,
    shard: tuple[int, int] | None = None,
    remote_write: Sequence[str] = (),
    remote_write_deadline: str | None = None,
) -> str:
    """prometheus.yml scraping the exporter's /probe targets, its /metrics, the generator.

    Addresses are `host:port` or URLs. `probe_scrape_timeout` defaults to the probe
    interval: the exporter derives each probe's timeout from the scrape timeout header,
    so the longest allowed timeout gives slow models the most room.

    Scale-out (docs/scale-out.md): `region` labels every scraped series `region=NAME`
    (a target label, so the rules see it on a server and remote write carries it from an
    agent); `shard=(index, total)` keeps this server's share of the /sd targets
    (`region_relabel_configs`, `shard_relabel_configs`); `remote_write` URLs
    (`.../api/v1/write`) get every sample, sent at least every `remote_write_deadline`.
    For an agent (`--enable-feature=agent`) leave out rule_files and alertmanager.
    """
    probe_interval = probe_scrape_interval or scrape_interval
    global_section: dict[str, Any] = {
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "evaluation_interval": evaluation_interval,
    }
    if external_labels:
        global_section["external_labels"] = dict(external_labels)
    exporter_url = exporter if "://" in exporter else f"http://{exporter}"
    scrape_configs: list[dict[str, Any]] = [
        {
            "job_name": PROBE_JOB,
            "scrape_interval": probe_interval,
            "scrape_timeout": probe_scrape_timeout or probe_interval,
            "metrics_path": "/probe",
            # The exporter's provider/model/module labels are the truth; without this a
            # same-named target label would turn them into exported_provider etc.
            "honor_labels": True,
            "http_sd_configs": [
                {"url": exporter_url.rstrip("/") + "/sd", "refresh_interval": sd_refresh_interval}
            ],
            "relabel_configs": shard_relabel_configs(shard)
            + probe_relabel_configs(exporter)
            + region_relabel_configs(region),
        },
    ]
    static_jobs = [(EXPORTER_JOB, exporter)] + ([(GENERATOR_JOB, generator)] if generator else [])
    for name, address in static_jobs:
        job: dict[str, Any] = {
            "job_name": name,
            "static_configs": [{"targets": [host_port(address)]}],
        }
        if region is not None:
            job["relabel_configs"] = region_relabel_configs(region)
        scrape_configs.append(job)
    scrape_configs.extend(dict(extra) for extra in extra_scrape_configs)
    document: dict[str, Any] = {"global": global_section}
    if remote_write:
        queue = {"batch_send_deadline": remote_write_deadline} if remote_write_deadline else {}
        document["remote_write"] = [
            {"url": url, **({"queue_config": queue} if queue else {})} for url in remote_write
        ]
    if rule_files:
        document["rule_files"] = list(rule_files)
    if alertmanager:
        document["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [host_port(alertmanager)]}]}]
        }
    document["scrape_configs"] = scrape_configs
    header = "# Rendered by perfgen (stack/prometheus_config.py) for a local stack.\n"
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def render_alertmanager_config(
    webhook_url: str,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
    group_by: Sequence[str] = ("alertname", "provider", "model"),
) -> str:
    """alertmanager.yml sending every alert to one webhook (the demo's and tests' receiver).

    Grouped by provider and model so that one degraded model is one notification,
    naming it, rather than being folded into an unrelated group.
    """
    document = {
        "route": {
            "receiver": "perfgen-webhook",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "perfgen-webhook",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }
    header = "# Rendered by perfgen (stack/prometheus_config.py) for a local stack.\n"
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
