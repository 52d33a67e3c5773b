"""Dashboard-level pieces over grafana-foundation-sdk: variables, annotations, assembly.

Two things the SDK's models for Grafana 10.4 cannot say are kept here as small typed
extensions of the SDK's own classes (see PrometheusAnnotation); everything else is the
SDK's builders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Self

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from .panels import DATASOURCE, PanelBuilder

# The Grafana image docker-compose.yml pins (10.4.2) and the SDK build for it
# (grafana-foundation-sdk `...!10.4.0`); schema 39 is what Grafana 10.4 saves.
SCHEMA_VERSION = 39
TAG = "perfgen"
# The windows recording rules are rendered for: the example config's 20m (rules/rendered)
# first, then the code default 1h. Render rules for more windows and list them here to
# offer them in the `window` picker.
WINDOWS: tuple[str, ...] = ("20m", "1h")
# `region` is a target label set where the exporter is scraped (docs/scale-out.md), so a
# single-region deployment has none. The All value `.*` matches an absent label too
# (PromQL: a missing label is the empty string), so every query filtered by
# `region=~"$region"` finds the same series with or without regions.
REGION_ALL = ".*"
REGION_MATCHER = 'region=~"$region"'


# --------------------------------------------------------------------------- variables


def datasource_variable() -> sdk.DatasourceVariable:
    return (
        sdk.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .regex("")
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
    )


def window_variable() -> sdk.CustomVariable:
    options = [model.VariableOption(selected=w == WINDOWS[0], text=w, value=w) for w in WINDOWS]
    return (
        sdk.CustomVariable("window")
        .label("Window")
        .description(
            "Range the recording rules aggregate over ([performance] window); "
            "a window is offered only when its rules are rendered."
        )
        .values(",".join(WINDOWS))
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
        .current(model.VariableOption(selected=True, text=WINDOWS[0], value=WINDOWS[0]))
        .options(options)
    )


def query_variable(
    name: str, label: str, query: str, *, description: str, default: str | None = None
) -> sdk.QueryVariable:
    """A `label_values(...)` variable, refreshed when the time range changes."""
    variable = (
        sdk.QueryVariable(name)
        .label(label)
        .description(description)
        # The plain-string query form: every Grafana version reads it (newer ones migrate
        # it to their structured editor on load).
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .regex("")
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
        .options([])
    )
    if default:
        variable.current(model.VariableOption(selected=True, text=default, value=default))
    return variable


def region_variable(query: str) -> sdk.QueryVariable:
    """Regions present in `query`'s series; All (the default) also matches no region."""
    return (
        query_variable(
            "region",
            "Region",
            f"label_values({query}, region)",
            description="Where the exporter is scraped (a target label). All also "
            "shows series without a region, so a single-region setup needs none.",
        )
        .include_all(True)
        .all_value(REGION_ALL)
        .multi(True)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


# --------------------------------------------------------------------------- annotations


class PrometheusAnnotationQuery(model.AnnotationQuery):
    """The SDK's AnnotationQuery plus the Prometheus data source's own fields.

    Grafana 10.4's Prometheus data source reads `step`, `titleFormat`, `textFormat`,
    `tagKeys` and `useValueForTime` from the annotation object itself; the SDK's
    dashboard schema for 10.4 has no place for them, so this subclass adds them to the
    JSON the SDK's encoder writes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step = "60s"
        self.title_format = ""
        self.text_format = ""
        self.tag_keys = ""
        self.use_value_for_time = False

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "step": self.step,
            "titleFormat": self.title_format,
            "textFormat": self.text_format,
            "tagKeys": self.tag_keys,
            "useValueForTime": self.use_value_for_time,
        }


class PrometheusAnnotation(sdk.AnnotationQuery):
    """A builder for PrometheusAnnotationQuery, in the SDK's own builder style."""

    _internal: PrometheusAnnotationQuery

    def __init__(self) -> None:
        self._internal = PrometheusAnnotationQuery()

    def build(self) -> PrometheusAnnotationQuery:
        return self._internal

    def step(self, step: str) -> Self:
        self._internal.step = step
        return self

    def title_format(self, title_format: str) -> Self:
        self._internal.title_format = title_format
        return self

    def text_format(self, text_format: str) -> Self:
        self._internal.text_format = text_format
        return self

    def tag_keys(self, tag_keys: Sequence[str]) -> Self:
        self._internal.tag_keys = ",".join(tag_keys)
        return self


def builtin_annotation() -> sdk.AnnotationQuery:
    return (
        sdk.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )


def prometheus_annotation(
    name: str, expr: str, *, title: str, text: str, color: str
) -> PrometheusAnnotation:
    return (
        PrometheusAnnotation()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .hide(False)
        .icon_color(color)
        .expr(expr)
        .step("60s")
        .title_format(title)
        .text_format(text)
        .tag_keys(["scenario", "provider", "model", "alertname", "region"])
    )


# --------------------------------------------------------------------------- assembly


Item = PanelBuilder | sdk.Row


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[cogbuilder.Builder[model.VariableModel]],
    panels: Sequence[Item],
    *,
    annotations: Sequence[cogbuilder.Builder[model.AnnotationQuery]] = (),
    time_from: str = "now-6h",
) -> model.Dashboard:
    board = (
        sdk.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)  # latency and failures line up
        .refresh("1m")
        .version(1)
        .time(time_from, "now")
        .timepicker(sdk.TimePicker())
        .timezone("browser")
        .fiscal_year_start_month(0)
        .live_now(False)
        .week_start("")
        .link(
            sdk.DashboardLink("perfgen")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(True)
            .icon("external link")
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        .annotations([builtin_annotation(), *annotations])
        .variables(list(variables))
    )
    # The SDK lays panels out left to right, wrapping at 24 columns, and starts a new
    # line at each row.
    for item in panels:
        if isinstance(item, sdk.Row):
            board.with_row(item)
        else:
            board.with_panel(item)
    built = board.build()
    built.schema_version = SCHEMA_VERSION
    # Ids in panel order, so they are stable as long as the panel list is: links and
    # provisioned alert references stay valid.
    for index, panel in enumerate(built.panels or [], start=1):
        panel.id_val = index
    return built


def render(board: model.Dashboard) -> str:
    """Stable text: sorted keys and a final newline, so a rebuild is a no-op diff."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
