"""A self-contained HTML preview of what Kubeflow Pipelines 1.8.5 shows for a rehearsed run.

Input: a folder written by ``--dry-run --outputs DIR`` (``rehearsal.outputs``): ``run.json``
and, per task, the ``mlpipeline-metrics.json`` and ``mlpipeline-ui-metadata.json`` the step
wrote. Output: ``run-output.html``, with no network access needed (no script, no remote
style sheet; web-app outputs run in sandboxed iframes, as in the UI).

What is mirrored, from kubeflow/pipelines at tag 1.8.5 (frontend and backend) and Argo
v3.3.8, the versions a Kubeflow 1.8 cluster runs:

- The workflow status Argo writes: each DAG task is a node whose id is
  ``<workflow name>-<fnv32a(node name)>`` (``Workflow.NodeID``, workflow_types.go); a task
  with a ``retryStrategy`` is a Retry node plus an attempt node ``<task>(0)``, and the
  controller copies the finished attempt's outputs onto the Retry node (operator.go), so both
  carry the step's metrics and UI metadata.
- The metrics the API server stores (persistence agent ``metrics_reporter.go``: every
  completed node with an ``mlpipeline-metrics`` artifact, at most 50 per run; names checked
  against ``metricNamePattern`` in ``run_metric_util.go``) and the order it returns them in
  (``run_metrics`` primary key RunUUID, NodeID, Name: ``model/run.go``).
- The run list's two metric columns: the first two distinct names in that order
  (``RunUtils.extractMetricMetadata``, ``RunList.tsx`` ``slice(0, 2)``), shown by
  ``Metric.tsx`` with ``MetricUtils`` (three decimals, or a percentage with a bar).
- The Run output tab (``RunDetails.tsx``): the Metrics table (``CompareUtils
  .singleRunToMetricsCompareProps``), then one card per output of every node with UI
  metadata, in the order of the status' node map (Go marshals it sorted by node id), each a
  ``PlotCard`` with ``maxDimension`` 400 titled with the node's display name.
- The viewers: ``MarkdownViewer`` (50 KB x 8 cut-off), ``PagedTable`` (sorted by the first
  column ascending in string order, 10 rows a page), ``ConfusionMatrix`` (the CSV read as
  ``OutputArtifactLoader.buildConfusionMatrixConfig`` does; below 600 px, as on a 400 px
  card, no labels, axis names or legend; the Pop out dialog shows them), ``HTMLViewer``
  (``iframe`` with ``srcdoc`` and ``sandbox="allow-scripts"``, 400 px high on a card).
- A malformed output makes ``OutputArtifactLoader.load`` reject, and ``_loadAllOutputs``
  awaits all steps with one ``Promise.all``: the tab then shows no card at all. The page
  says so in a banner.

Not mirrored: markdown is rendered with markdown-it-py (CommonMark plus GFM tables and
strikethrough, raw HTML shown as text) where the UI uses markdown-to-jsx 6; fonts and
Material-UI styling are approximated; the Graph and Config tabs, logs and the side panel
are not drawn.
"""

from __future__ import annotations

import csv
import decimal
import html
import io
import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from rehearsal.dag_scheduler import fnv32a
from rehearsal.workflow_identity import generate_name

METRICS_FILE = "mlpipeline-metrics.json"
UI_METADATA_FILE = "mlpipeline-ui-metadata.json"
RUN_JSON = "run.json"
PAGE_FILE = "run-output.html"

# The KFP 1.8.5 constants the page mirrors.
CARD_DIMENSION = 400  # RunDetails.tsx: PlotCard maxDimension on the Run output tab
SHRINK_THRESHOLD = 600  # ConfusionMatrix.tsx / PagedTable.tsx: smaller layout below this
POPOUT_DIMENSION = 700  # ConfusionMatrix.tsx: default when the dialog passes no maximum
ROWS_PER_PAGE = 10  # PagedTable.tsx initial state
MAX_MARKDOWN = 50 * 1000 * 8  # MarkdownViewer.tsx MAX_MARKDOWN_STR_LENGTH
MAX_RUN_METRICS = 50  # metrics_reporter.go maxMetricsCountLimit
METRIC_NAME = re.compile(r"^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$")  # run_metric_util.go
RUN_LIST_METRICS = 2  # RunList.tsx: metrics.slice(0, 2)
SIMULATED_NAMES = 1000

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


class OutputError(Exception):
    """An output OutputArtifactLoader would reject (and with it the whole Run output tab)."""


# ---------------------------------------------------------------------------------------
# Argo's workflow status and the KFP backend's metrics


def node_id(workflow_name: str, node_name: str) -> str:
    """Argo v3.3.8 ``Workflow.NodeID``."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


def output_nodes(workflow_name: str, tasks: Sequence[Mapping[str, Any]]
                 ) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(node id, display name, task) of every node that carries a task's KFP outputs."""
    nodes = []
    for task in tasks:
        if not task.get("outputs"):
            continue
        name = f"{workflow_name}.{task['path']}"
        # A node's display name is its name less its DAG's (operator.go initializeNode); the
        # onExit node has no enclosing DAG, so it shows its whole name.
        display = name if task["path"] == "onExit" else task["name"]
        nodes.append((node_id(workflow_name, name), display, task))
        if task.get("retry"):
            nodes.append((node_id(workflow_name, name + "(0)"), display + "(0)", task))
    return nodes


def js_to_fixed(value: float, digits: int = 3) -> str:
    """JavaScript's ``Number.prototype.toFixed`` (ties away from zero on the exact binary
    value, which Python's round-half-even formatting does not do)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    exact = decimal.Decimal(abs(value)).quantize(decimal.Decimal(1).scaleb(-digits),
                                                 rounding=decimal.ROUND_HALF_UP)
    text = f"{exact:.{digits}f}"
    return "-" + text if value < 0 and exact != 0 else text


def metric_display(metric: Mapping[str, Any]) -> str:
    """``MetricUtils.getMetricDisplayString``."""
    if metric.get("format") == "PERCENTAGE":
        return js_to_fixed(metric["numberValue"] * 100) + "%"
    return js_to_fixed(metric["numberValue"])


def read_metrics(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """The metrics the persistence agent reads from one node's file, or why it drops them
    all (jsonpb refuses the whole file) or some (the API server refuses a name)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return [], f"not JSON ({e}): the node's metrics are all dropped"
    if not isinstance(data, dict) or set(data) - {"metrics", "runId"}:
        return [], "not a {\"metrics\": [...]} object: the node's metrics are all dropped"
    metrics, problems = [], []
    for metric in data.get("metrics") or []:
        if not isinstance(metric, dict) or set(metric) - {"name", "nodeId", "numberValue",
                                                          "format"}:
            return [], f"unknown field in {metric!r}: the node's metrics are all dropped"
        if metric.get("format", "UNSPECIFIED") not in ("UNSPECIFIED", "RAW", "PERCENTAGE"):
            return [], f"format {metric['format']!r} is not RAW or PERCENTAGE: all dropped"
        if not METRIC_NAME.match(str(metric.get("name", ""))):
            problems.append(f"name {metric.get('name')!r} does not match {METRIC_NAME.pattern}")
            continue
        if not isinstance(metric.get("numberValue"), (int, float)):
            continue  # the UI skips a metric without a number
        metrics.append(metric)
    return metrics, "; ".join(problems) or None


def stored_metrics(workflow_name: str, tasks: Sequence[Mapping[str, Any]],
                   metrics_by_task: Mapping[str, list[dict[str, Any]]]
                   ) -> tuple[list[dict[str, Any]], int]:
    """The run's metrics in the order the API server returns them, and how many the nodes
    reported (above 50 the agent keeps 50, which ones depending on Go's map order)."""
    rows = []
    for nid, _display, task in output_nodes(workflow_name, tasks):
        for metric in metrics_by_task.get(task["name"], []):
            rows.append({**metric, "nodeId": nid, "task": task})
    reported = len(rows)
    rows.sort(key=lambda m: (m["nodeId"], m["name"].lower()))
    return rows[:MAX_RUN_METRICS], reported


def run_list_columns(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """``RunUtils.extractMetricMetadata`` of one run, cut to the run list's two columns."""
    return list(dict.fromkeys(m["name"] for m in metrics))[:RUN_LIST_METRICS]


def simulate_columns(tasks: Sequence[Mapping[str, Any]],
                     metrics_by_task: Mapping[str, list[dict[str, Any]]],
                     prefix: str, count: int = SIMULATED_NAMES, seed: int = 8
                     ) -> Counter[tuple[str, ...]]:
    """The run list's columns over ``count`` workflow names Kubernetes could generate."""
    rng = random.Random(seed)
    seen: Counter[tuple[str, ...]] = Counter()
    for _ in range(count):
        name = generate_name(prefix, rng)
        seen[tuple(run_list_columns(stored_metrics(name, tasks, metrics_by_task)[0]))] += 1
    return seen


# ---------------------------------------------------------------------------------------
# OutputArtifactLoader


def csv_parse_rows(text: str) -> list[list[str]]:
    """d3-dsv ``csvParseRows`` of the trimmed text, as the loader calls it."""
    return [row for row in csv.reader(io.StringIO(text.strip()))]


def _js_int(text: str) -> int | None:
    """``Number.parseInt(text, 10)``; None for NaN."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else None


def load_output(output: Mapping[str, Any]) -> dict[str, Any]:
    """The viewer config ``OutputArtifactLoader.load`` builds, or :class:`OutputError`."""
    kind = output.get("type")
    if kind in ("tensorboard", "roc"):
        return {"type": kind, "unsupported": True}
    if kind not in ("markdown", "table", "confusion_matrix", "web-app"):
        return {"type": kind, "dropped": True}  # 'Unknown plot type': logged and skipped
    source = output.get("source")
    if not source:
        raise OutputError('Malformed metadata, property "source" is required.')
    if output.get("storage") != "inline":
        return {"type": kind, "remote": str(source)}
    if kind == "markdown":
        return {"type": kind, "markdown": source}
    if kind == "web-app":
        return {"type": kind, "html": source}
    if kind == "table":
        if not output.get("header"):
            raise OutputError('Malformed metadata, property "header" is required.')
        if not output.get("format"):
            raise OutputError('Malformed metadata, property "format" is required.')
        if output["format"] != "csv":
            raise OutputError("Unsupported table format: " + str(output["format"]))
        rows = [[cell.strip() for cell in row] for row in csv_parse_rows(source)]
        return {"type": kind, "labels": list(output["header"]), "data": rows}
    labels = output.get("labels")
    if not labels:
        raise OutputError('Malformed metadata, property "labels" is required.')
    schema = output.get("schema")
    if not schema:
        raise OutputError('Malformed metadata, property "schema" missing.')
    if not isinstance(schema, list):
        raise OutputError('"schema" must be an array of {"name": string, "type": string} '
                          "objects")
    rows = csv_parse_rows(source)
    if len(labels) ** 2 != len(rows):
        raise OutputError(f"Data dimensions {len(rows)} do not match the number of labels "
                          f"passed {len(labels)}")
    index = {label: i for i, label in enumerate(labels)}
    data: list[list[int | None]] = [[None] * len(labels) for _ in labels]
    for row in rows:
        target, predicted, count = (row + ["", "", ""])[:3]
        if target.strip() not in index or predicted.strip() not in index:
            raise OutputError(f"TypeError: label {target.strip()!r} or "
                              f"{predicted.strip()!r} is not in labels")
        data[index[target.strip()]][index[predicted.strip()]] = _js_int(count)
    names = [column.get("name") for column in schema]
    if not all(names):
        raise OutputError('Each item in the "schema" array must contain a "name" field')
    return {"type": kind, "labels": list(labels), "data": data, "axes": names[:2]}


# ---------------------------------------------------------------------------------------
# HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def js_sort_key(cell: str | None) -> tuple[int, bytes]:
    """JavaScript string order (UTF-16 code units); a missing cell compares as neither."""
    return (0, b"") if cell is None else (1, cell.encode("utf-16-be"))


def paged_table_order(data: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """``PagedTable._stableSort`` with the initial state: column 0, ascending."""
    return sorted(data, key=lambda row: js_sort_key(row[0] if row else None))


def render_markdown(text: str) -> str:
    banner = ""
    if len(text) > MAX_MARKDOWN:
        banner = ('<div class="banner warning">This markdown is too large to render '
                  "completely.</div>")
    return f'<div class="markdown-viewer">{banner}{_MARKDOWN.render(text[:MAX_MARKDOWN])}</div>'


def render_table(config: Mapping[str, Any]) -> str:
    rows = paged_table_order(config["data"])
    head = "".join(f'<th class="column-name">{_e(label)}</th>' for label in config["labels"])

    def body(chunk: Sequence[Sequence[str]]) -> str:
        return "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                       for row in chunk)

    first, rest = rows[:ROWS_PER_PAGE], rows[ROWS_PER_PAGE:]
    shown = f"{1 if rows else 0}-{len(first)} of {len(rows)}"
    later = ""
    if rest:
        later = (f'<details class="later-pages"><summary>{len(rest)} more row(s) on later '
                 "pages (the UI shows one page at a time)</summary>"
                 f'<table class="paged-table-rows"><thead><tr>{head}</tr></thead>'
                 f"<tbody>{body(rest)}</tbody></table></details>")
    return (f'<div class="paged-table"><table class="paged-table-rows"><thead><tr>{head}'
            f"</tr></thead><tbody>{body(first)}</tbody></table>"
            f'<div class="pagination">Rows per page: {ROWS_PER_PAGE} &nbsp; {shown}</div>'
            f"{later}</div>")


def _matrix(config: Mapping[str, Any], max_dimension: int) -> str:
    """``ConfusionMatrix.render``: rows are the predicted labels (last first), columns the
    target labels, as the viewer transposes ``data[target][predicted]``."""
    labels, data = config["labels"], config["data"]
    n = len(labels)
    small = max_dimension < SHRINK_THRESHOLD
    cell = max(min(max_dimension / n, 80), 15) - 1
    values = [v for row in data for v in row if v is not None]
    peak = max(values) if values else 0
    rows = []
    if not small:
        rows.append(f'<tr><td class="y-axis-label">{_e(config["axes"][1])}</td></tr>')
    for r in range(n):
        cells = []
        if not small:
            cells.append(f'<td><div class="ylabel">{_e(labels[n - 1 - r])}</div></td>')
        for c in range(n):
            value = data[c][n - 1 - r]
            opacity = value / peak if value is not None and peak else 0
            colour = "#000" if opacity < 0.6 else "#fff"
            text = "NaN" if value is None else str(value)
            cells.append(f'<td class="cm-cell" style="width:{cell:g}px;height:{cell:g}px;'
                         f"background-color:rgba(41, 121, 255, {opacity:.4g});color:{colour}"
                         f'">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not small:
        footer = "".join(f'<th><div class="xlabel">{_e(label)}</div></th>' for label in labels)
        rows.append(f'<tr class="x-labels"><th></th>{footer}'
                    f'<td class="x-axis-label">{_e(config["axes"][0])}</td></tr>')
    kind = "small" if small else "full"
    return (f'<div class="confusion-matrix {kind}"><table><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def render_confusion_matrix(config: Mapping[str, Any]) -> str:
    return (_matrix(config, CARD_DIMENSION)
            + '<details class="popout"><summary>Pop out (the card\'s icon): the same matrix '
            "with labels and axis names</summary>"
            + _matrix(config, POPOUT_DIMENSION) + "</details>")


def render_output(config: Mapping[str, Any]) -> str:
    kind = config["type"]
    if config.get("dropped"):
        return f'<p class="note">Unknown plot type {_e(kind)!s}: the UI skips it.</p>'
    if config.get("unsupported"):
        return f'<p class="note">A {_e(kind)} output: not previewed here.</p>'
    if config.get("remote"):
        return (f'<p class="note">Read from {_e(config["remote"])} by the UI: not previewed '
                "(only inline outputs are).</p>")
    if kind == "markdown":
        return render_markdown(config["markdown"])
    if kind == "table":
        return render_table(config)
    if kind == "confusion_matrix":
        return render_confusion_matrix(config)
    return (f'<iframe class="web-app" sandbox="allow-scripts" height="{CARD_DIMENSION}" '
            f'srcdoc="{_e(config["html"])}"></iframe>')


STYLE = """
body { font-family: Roboto, Helvetica, Arial, sans-serif; font-size: 14px; color: #202124;
       margin: 0 24px 40px; }
.preview-banner { background: #fef7e0; border: 1px solid #f9ab00; padding: 10px 14px;
                  margin: 16px 0; }
.banner.error { background: #fce8e6; border: 1px solid #d93025; padding: 10px 14px; }
.banner.warning { background: #fef7e0; padding: 6px 10px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table.run-list, table.compare-table { border-collapse: collapse; }
table.run-list th, table.run-list td, table.compare-table th, table.compare-table td {
  border-bottom: 1px solid #e0e0e0; padding: 6px 10px; text-align: left; font-size: 13px; }
table.run-list td.placeholder { color: #5f6368; font-style: italic; }
td.metric-buffer { border-left: 1px solid #e0e0e0; width: 4px; padding: 0; }
td.metric { min-width: 110px; }
.metric-container { background: #f6f7f9; margin-left: 6px; margin-right: 10px; }
.metric-fill { background: #cbf0f8; box-sizing: border-box; font-size: 13px;
               text-indent: 6px; white-space: nowrap; }
.output-title { font-size: 15px; font-weight: bold; margin: 16px 0 8px; }
.plot-card { box-shadow: 0 1px 3px rgba(0,0,0,.3); margin: 20px; padding: 20px;
             min-width: 250px; }
.plot-header { display: flex; justify-content: space-between; padding-bottom: 10px; }
.plot-title { font-size: 12px; font-weight: bold; }
.plot-card.rejected { outline: 2px solid #d93025; }
.markdown-viewer h1, .markdown-viewer h2, .markdown-viewer h3 { font-size: initial;
  font-weight: 700; margin-top: 1em; margin-bottom: 16px; }
.markdown-viewer h1, .markdown-viewer h2 { padding-bottom: .3em; border-bottom: 1px solid #eee; }
.markdown-viewer code { background-color: #f8f8f8; border-radius: 5px; }
.markdown-viewer table { border-collapse: collapse; }
.markdown-viewer th, .markdown-viewer td { border: 1px solid #ddd; padding: 3px 8px; }
.paged-table table { border-collapse: collapse; display: block; overflow: auto; }
.paged-table th { font-size: 14px; font-weight: bold; padding: 4px 5px; text-align: left; }
.paged-table td { border-right: 1px solid #e0e0e0; border-bottom: 1px solid #ddd;
                  font-size: 12px; height: 25px; padding: 0 5px; }
.pagination { color: #5f6368; font-size: 12px; padding: 8px 0; text-align: right; }
.confusion-matrix { width: fit-content; }
.confusion-matrix table { border-collapse: separate; }
.cm-cell { border: 1px solid #fff; text-align: center; vertical-align: middle;
           font-size: 12px; }
.confusion-matrix.full .cm-cell { font-size: 14px; }
.ylabel { margin-right: 10px; text-align: right; white-space: nowrap; }
.xlabel { width: 150px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
          transform: rotate(60deg); transform-origin: left; margin-left: 15px;
          text-align: left; height: 90px; }
.x-axis-label, .y-axis-label { font-size: 15px; font-weight: bold; }
iframe.web-app { border: 1px solid #e0e0e0; box-sizing: border-box; width: 100%;
                 height: 400px; }
details { margin-top: 8px; } summary { cursor: pointer; color: #1a73e8; }
.note { color: #5f6368; }
ul.notes li { margin-bottom: 4px; }
"""


def _metric_cell(metric: Mapping[str, Any] | None) -> str:
    """``Metric.tsx`` for a run alone on the list."""
    if metric is None:
        return '<td class="metric"></td>'
    text = metric_display(metric)
    if metric.get("format") == "PERCENTAGE":
        width = f"calc({text})"
    elif metric["numberValue"] == 0:  # metadata max and min both 0: plain text
        return f'<td class="metric"><div style="padding-left:6px">{text}</div></td>'
    else:  # (value - min) / (max - min) is 0/0 for one run: no width, a full bar
        width = "100%"
    return (f'<td class="metric"><div class="metric-container"><div class="metric-fill" '
            f'style="width:{width}">{text}</div></div></td>')


def render_page(run: Mapping[str, Any], files: Mapping[str, Mapping[str, str]]) -> str:
    """The page for ``run`` (``run.json``) and ``files``: task name -> {file name: text}."""
    workflow = run["workflow"]
    name, tasks = workflow["name"], run["tasks"]
    prefix = workflow.get("generate_name") or name.rsplit("-", 1)[0] + "-"

    metrics_by_task, metric_notes = {}, []
    for task in tasks:
        text = files.get(task["name"], {}).get(METRICS_FILE)
        if text is not None:
            metrics_by_task[task["name"]], problem = read_metrics(text)
            if problem:
                metric_notes.append(f"{task['name']}: {problem}")
    metrics, reported = stored_metrics(name, tasks, metrics_by_task)
    columns = run_list_columns(metrics)
    simulated = simulate_columns(tasks, metrics_by_task, prefix)

    parts = ['<div class="preview-banner"><b>Preview, not Kubeflow.</b> This page was made '
             "by the pipeline's rehearsal (<code>--dry-run --outputs</code>) from the files its "
             "steps wrote against the fake TAO, to show what the Kubeflow Pipelines 1.8.5 UI "
             "would show for such a run. The numbers are the fake TAO's stand-ins, not a "
             "model's; layout and fonts are approximated.</div>",
             f"<h1>Run {_e(name)}: {_e(workflow['phase'])}</h1>"]
    if workflow.get("message"):
        parts.append(f'<p class="note">{_e(workflow["message"])}</p>')

    # -- run list
    parts.append('<h2 id="run-list">Run list (Experiments &gt; Runs): this run\'s row</h2>')
    head = ["Run name", "Status", "Duration", "Experiment", "Pipeline Version",
            "Recurring Run", "Start time"]
    cells = [f"<td>{_e(name)}</td>", f"<td>{_e(workflow['phase'])}</td>"] + [
        '<td class="placeholder">set on the cluster</td>'] * 5
    if columns:
        head += [""] + columns
        by_name = {}
        for metric in metrics:
            by_name.setdefault(metric["name"], metric)
        cells += ['<td class="metric-buffer"></td>'] + [_metric_cell(by_name.get(c))
                                                        for c in columns]
    parts.append('<table class="run-list"><thead><tr>'
                 + "".join(f"<th>{_e(h)}</th>" for h in head)
                 + "</tr></thead><tbody><tr>" + "".join(cells) + "</tr></tbody></table>")
    stable = len(simulated) == 1
    same_metrics = len({frozenset(pair) for pair in simulated}) == 1
    summary = "; ".join(f"{' and '.join(pair) or 'none'} in {count}"
                        for pair, count in simulated.most_common(4))
    parts.append(
        f'<p class="run-list-columns">Metric columns: the first {RUN_LIST_METRICS} metric '
        "names in the order the API server returns the run's metrics (by node id, a hash of "
        "the workflow name Kubernetes generates, then by name). Over "
        f"{SIMULATED_NAMES} simulated workflow names they were: {_e(summary)}"
        + (" &mdash; the same for every run." if stable else
           " &mdash; the same two metrics for every run; only their left-to-right order "
           "changes with the run name." if same_metrics else
           " &mdash; <b>which metrics they are changes from run to run</b>.") + "</p>")
    if reported > MAX_RUN_METRICS:
        parts.append(f'<div class="banner error">The steps report {reported} metrics; the '
                     f"persistence agent stores only {MAX_RUN_METRICS}, which ones depending "
                     "on Go's map order.</div>")
    for note in metric_notes:
        parts.append(f'<p class="note">Metrics not stored: {_e(note)}</p>')

    # -- run output tab
    parts.append('<h2 id="run-output">Run output tab</h2>')
    if metrics:
        names = list(dict.fromkeys(m["name"] for m in metrics))
        by_node: dict[str, dict[str, str]] = {}
        labels: dict[str, str] = {}
        for metric in metrics:
            by_node.setdefault(metric["nodeId"], {})[metric["name"]] = metric_display(metric)
            labels[metric["nodeId"]] = metric["task"].get("display_name") or metric["task"][
                "name"]
        rows = "".join(
            f"<tr><th>{_e(labels[nid])}</th>"
            + "".join(f"<td>{_e(values.get(n, ''))}</td>" for n in names) + "</tr>"
            for nid, values in by_node.items())
        parts.append('<div class="output-title">Metrics</div><table class="compare-table metrics">'
                     "<thead><tr><th></th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
                     + f"</tr></thead><tbody>{rows}</tbody></table>")
    else:
        parts.append("<p>No metrics found for this run.</p>")

    cards, rejected = [], []
    for _nid, display, task in sorted(output_nodes(name, tasks)):
        text = files.get(task["name"], {}).get(UI_METADATA_FILE)
        if text is None:
            continue
        try:
            outputs = json.loads(text)["outputs"]
            if not isinstance(outputs, list):
                raise TypeError("outputs is not a list")
        except (ValueError, KeyError, TypeError) as e:
            # load() catches a metadata file it cannot parse: that node shows nothing
            cards.append(f'<p class="note">{_e(display)}: {UI_METADATA_FILE} cannot be '
                         f"parsed ({_e(e)}): the UI shows no output of this step.</p>")
            continue
        for i, output in enumerate(outputs):
            try:
                body, extra = render_output(load_output(output)), ""
            except OutputError as e:
                rejected.append(f"{display}, output {i + 1} ({output.get('type')}): {e}")
                body, extra = f'<p class="note">Rejected: {_e(e)}</p>', " rejected"
            cards.append(f'<div class="plot-card{extra}" data-step="{_e(display)}" '
                         f'data-type="{_e(output.get("type"))}"><div class="plot-header">'
                         f'<span class="plot-title">{_e(display)}</span>'
                         f'<span class="popout" title="Pop out">&#x2197;</span></div>'
                         f"{body}</div>")
    if rejected:
        parts.append('<div class="banner error"><b>In Kubeflow 1.8.5 this Run output tab '
                     "would show no output at all</b>: the loader rejects "
                     + "; ".join(_e(r) for r in rejected)
                     + ", and one rejected output fails the whole tab. Shown below anyway, "
                     "marked.</div>")
    parts += cards or ["<p>No output artifacts found for this run.</p>"]

    # -- tasks
    rows = "".join(
        f"<tr><td>{_e(t['path'])}</td><td>{_e(t['status'])}</td>"
        f"<td>{_e('' if t.get('exit_code') is None else t['exit_code'])}</td>"
        f"<td>{_e(t.get('message') or '')}</td></tr>" for t in tasks)
    parts.append('<h2 id="tasks">Steps (run.json)</h2><table class="compare-table">'
                 "<thead><tr><th>task</th><th>status</th><th>exit code</th><th>message</th>"
                 f"</tr></thead><tbody>{rows}</tbody></table>")

    retried = any(t.get("retry") and t.get("outputs") for t in tasks)
    notes = [
        "Cards appear in node-id order, which follows the random workflow name: the order "
        "differs from run to run. Each card is titled with the Argo node's name.",
        "A step with a retry strategy is two nodes in Argo 3.3 (the task and its attempt "
        "<code>(0)</code>), and the controller copies the attempt's outputs onto the task: "
        "the UI reads both, so such a step's cards and metrics appear twice, as above."
        if retried else "",
        f"Cards are {CARD_DIMENSION} px: a confusion matrix there has no class names, axis "
        "names or legend (below 600 px); the card's Pop out icon shows them. Matrices are "
        "drawn with the predicted class as rows (last label on top) and the true class as "
        "columns.",
        f"Tables start sorted by their first column in string order, {ROWS_PER_PAGE} rows a "
        "page; a click on a header re-sorts.",
        f"Markdown longer than {MAX_MARKDOWN:,} characters is cut off. The UI renders "
        "markdown with markdown-to-jsx; this page with markdown-it-py, which may differ on "
        "rare constructs, and shows raw HTML as text.",
        "Web-app outputs run in a sandboxed iframe (scripts allowed, no same-origin), "
        f"{CARD_DIMENSION} px high.",
        "Not shown here: the Graph tab, the side panel (a step's own outputs, at 500 px), "
        "logs, the Config tab, and Compare runs. Duration, experiment and start time exist "
        "only on the cluster.",
    ]
    parts.append('<h2 id="notes">What the 1.8.5 UI would and would not show</h2>'
                 '<ul class="notes">' + "".join(f"<li>{n}</li>" for n in notes if n)
                 + "</ul>")

    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Preview of the Kubeflow run output: {_e(name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def render_folder(folder: Path) -> str:
    """The page for a folder written by ``rehearsal.outputs.write_outputs``."""
    run = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    files: dict[str, dict[str, str]] = {}
    for task in run["tasks"]:
        for file_name in (task.get("outputs") or {}).values():
            path = folder / file_name
            files.setdefault(task["name"], {})[path.name] = path.read_text(encoding="utf-8")
    return render_page(run, files)
