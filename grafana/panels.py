"""Panel and query helpers over grafana-foundation-sdk, in perfgen's house style.

Each helper returns an SDK builder configured the way every perfgen panel of its kind
looks (legend as a table, shared tooltip, thresholds, the `datasource` variable), so the
dashboards in build.py say only what differs: title, queries, unit, description, size.
The SDK owns the JSON shape of each panel type for the Grafana version it is pinned to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import statetimeline as sdk_statetimeline
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

PanelBuilder = cogbuilder.Builder[model.Panel]
Steps = Sequence[tuple[float | None, str]]

# Every panel and variable queries the data source chosen in the `datasource` variable,
# so the dashboards work unchanged against any Prometheus (or VictoriaMetrics) data source.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def target(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    table: bool = False,
    heatmap: bool = False,
) -> sdk_prometheus.Dataquery:
    """One Prometheus query; refIds are assigned by the panel in order (A, B, ...)."""
    fmt = (
        PromQueryFormat.TABLE
        if table
        else PromQueryFormat.HEATMAP
        if heatmap
        else PromQueryFormat.TIME_SERIES
    )
    query = (
        sdk_prometheus.Dataquery()
        .datasource(DATASOURCE)
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .format(fmt)
        .legend_format(legend or "__auto")
    )
    return query.instant() if instant else query.range()


def thresholds(steps: Steps) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def value_map(mapping: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Grafana value mappings: raw value -> (text, colour)."""
    options = {
        value: model.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, (text, color)) in enumerate(mapping.items())
    }
    return [model.ValueMap(options=options)]


YES_NO = value_map({"0": ("no", "red"), "1": ("yes", "green")})
UP_DOWN = value_map({"0": ("down", "red"), "1": ("up", "green")})


def override(name: str, **properties: Any) -> sdk.DashboardFieldConfigSourceOverrides:
    """A field override by display name; keys use `__` for `.` (custom__width).

    Override properties are Grafana's generic (id, value) pairs; values that are SDK
    builders (thresholds) are built here so the encoder sees models only.
    """
    values = [
        model.DynamicConfigValue(
            id_val=key.replace("__", "."),
            value=value.build() if isinstance(value, cogbuilder.Builder) else value,
        )
        for key, value in properties.items()
    ]
    return (
        sdk.DashboardFieldConfigSourceOverrides()
        .matcher(model.MatcherConfig(id_val="byName", options=name))
        .properties(values)
    )


# The panel builders of every type share these setters (the SDK generates each type's
# builder from one schema); the type is spelled out so mypy checks the calls.
AnyPanel = (
    sdk_timeseries.Panel
    | sdk_stat.Panel
    | sdk_table.Panel
    | sdk_statetimeline.Panel
    | sdk_heatmap.Panel
)


def _common(
    panel: AnyPanel,
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    description: str,
    width: int,
    height: int,
    overrides: Sequence[sdk.DashboardFieldConfigSourceOverrides] = (),
) -> None:
    panel.title(title).description(description).datasource(DATASOURCE)
    # Grid position is filled in by the dashboard builder, left to right like text.
    panel.span(width).height(height)
    panel.targets([query.ref_id(REF_IDS[index]) for index, query in enumerate(targets)])
    panel.overrides(list(overrides))


def legend(
    mode: common.LegendDisplayMode, *, show: bool = True, calcs: Sequence[str] | None = None
) -> sdk_common.VizLegendOptions:
    options = (
        sdk_common.VizLegendOptions()
        .display_mode(mode)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(show)
    )
    return options if calcs is None else options.calcs(list(calcs))


def tooltip(
    mode: common.TooltipDisplayMode, sort: common.SortOrder
) -> sdk_common.VizTooltipOptions:
    return sdk_common.VizTooltipOptions().mode(mode).sort(sort)


def timeseries(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    description: str,
    unit: str,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    calcs: Sequence[str] = ("lastNotNull", "max"),
    decimals: int | None = None,
    overrides: Sequence[sdk.DashboardFieldConfigSourceOverrides] = (),
) -> sdk_timeseries.Panel:
    panel = sdk_timeseries.Panel()
    _common(
        panel,
        title,
        targets,
        description=description,
        width=width,
        height=height,
        overrides=overrides,
    )
    panel.unit(unit)
    if minimum is not None:
        panel.min(minimum)
    if maximum is not None:
        panel.max(maximum)
    if decimals is not None:
        panel.decimals(decimals)
    panel.draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
    panel.line_width(1).fill_opacity(70 if bars else 10)
    panel.show_points(common.VisibilityMode.NEVER).span_nulls(False)
    panel.stacking(
        sdk_common.StackingConfig()
        .mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
        .group("A")
    )
    panel.legend(legend(common.LegendDisplayMode.TABLE, calcs=calcs))
    panel.tooltip(tooltip(common.TooltipDisplayMode.MULTI, common.SortOrder.DESCENDING))
    return panel


def stat(
    title: str,
    expr: str,
    *,
    description: str,
    unit: str = "none",
    width: int = 4,
    height: int = 4,
    decimals: int | None = None,
    steps: Steps = ((None, "blue"),),
    mappings: list[model.ValueMapping] | None = None,
    legend: str = "",
) -> sdk_stat.Panel:
    panel = sdk_stat.Panel()
    _common(
        panel,
        title,
        [target(expr, legend, instant=True)],
        description=description,
        width=width,
        height=height,
    )
    panel.unit(unit).thresholds(thresholds(steps))
    if decimals is not None:
        panel.decimals(decimals)
    if mappings is not None:
        panel.mappings(mappings)
    panel.reduce_options(
        sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
    )
    panel.color_mode(common.BigValueColorMode.BACKGROUND)
    panel.graph_mode(common.BigValueGraphMode.NONE)
    panel.justify_mode(common.BigValueJustifyMode.AUTO)
    panel.text_mode(common.BigValueTextMode.AUTO)
    panel.orientation(common.VizOrientation.AUTO)
    return panel


def table(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    description: str,
    columns: Sequence[str],
    renames: dict[str, str],
    width: int,
    height: int,
    sort_by: str | None = None,
    overrides: Sequence[sdk.DashboardFieldConfigSourceOverrides] = (),
    hidden: Iterable[str] = (),
) -> sdk_table.Panel:
    """Instant table queries merged row-wise on their labels (each query one column)."""
    panel = sdk_table.Panel()
    _common(
        panel,
        title,
        targets,
        description=description,
        width=width,
        height=height,
        overrides=overrides,
    )
    panel.show_header(True).cell_height(common.TableCellHeight.SM)
    panel.footer(sdk_common.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False))
    if sort_by:
        panel.sort_by([sdk_common.TableSortByFieldState().display_name(sort_by).desc(True)])
    panel.align(common.FieldTextAlignment.AUTO)
    panel.cell_options(common.TableAutoCellOptions())
    panel.inspect(False)
    order = {name: index for index, name in enumerate(columns)}
    exclude = {"Time": True, **{name: True for name in hidden}}
    # Transformations are Grafana's generic (id, options) pairs: the SDK types the pair,
    # the options are the transformation's own documented keys.
    panel.transformations(
        [
            model.DataTransformerConfig(id_val="merge", options={}),
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": exclude,
                    "indexByName": order,
                    "renameByName": renames,
                },
            ),
        ]
    )
    return panel


def state_timeline(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    description: str,
    mappings: list[model.ValueMapping],
    width: int = 12,
    height: int = 8,
) -> sdk_statetimeline.Panel:
    panel = sdk_statetimeline.Panel()
    _common(panel, title, targets, description=description, width=width, height=height)
    panel.mappings(mappings)
    panel.color_scheme(sdk.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    panel.thresholds(thresholds([(None, "green")]))
    panel.merge_values(True).show_value(common.VisibilityMode.NEVER)
    panel.align_value(common.TimelineValueAlignment.LEFT).row_height(0.8)
    panel.legend(legend(common.LegendDisplayMode.LIST, show=False))
    panel.tooltip(tooltip(common.TooltipDisplayMode.SINGLE, common.SortOrder.NONE))
    return panel


def heatmap(
    title: str, expr: str, *, description: str, unit: str, width: int = 12, height: int = 8
) -> sdk_heatmap.Panel:
    panel = sdk_heatmap.Panel()
    _common(
        panel,
        title,
        [target(expr, "{{le}}", heatmap=True)],
        description=description,
        width=width,
        height=height,
    )
    # The buckets come from Prometheus (format heatmap): nothing to calculate.
    panel.calculate(False).cell_gap(1)
    panel.color(
        sdk_heatmap.HeatmapColorOptions()
        .mode(heatmap_model.HeatmapColorMode.SCHEME)
        .scheme("Oranges")
        .steps(64)
        .exponent(0.5)
        .fill("dark-orange")
        .reverse(False)
    )
    panel.y_axis(sdk_heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).unit(unit))
    panel.rows_frame(sdk_heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
    panel.filter_values(sdk_heatmap.FilterValueRange().le(1e-9))
    panel.mode(common.TooltipDisplayMode.SINGLE).show_y_histogram()
    panel.show_legend()
    return panel


def row(title: str) -> sdk.Row:
    return sdk.Row(title).collapsed(False)
