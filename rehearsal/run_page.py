"""A self-contained HTML preview of what a Kubeflow Pipelines release shows for a rehearsed run.

Input: a folder written by ``--dry-run --outputs DIR`` (``rehearsal.outputs``): ``run.json``
and, per task, the ``mlpipeline-metrics.json`` and ``mlpipeline-ui-metadata.json`` the step
wrote; and the KFP release to show (``--kfp-release``, ``rehearsal.kfp_releases``; default
2.15, the KFP of Kubeflow 1.11). Output: ``run-output.html``, with no network access needed
(no script, no remote style sheet; web-app outputs run in sandboxed iframes, as in the UI).

The page shows, in this order:

- each step's side panel, Visualizations tab (``pages/RunDetails.tsx``
  ``VisualizationsTabContent``: one ``PlotCard`` of ``maxDimension`` 500 per output, titled
  with the viewer's name), the run summary first (the step whose template is ``summary``,
  a DAG task or the exit handler): the place where every release shows every output;
- the Run output tab, run list row and Compare runs as the release's code fills them
  (``rehearsal.kfp_views``), saying plainly where it shows nothing;
- what else differs on that release (retries, TTL, Terminate, Pod Security, v1 blocking),
  in the words of ``rehearsal.kfp_releases``.

The viewers, the same from KFP 1.8.5 to 2.17.0 but for markdown's raw HTML:
``MarkdownViewer`` (50 KB x 8 cut-off), ``PagedTable`` (sorted by the first column ascending
in string order, 10 rows a page), ``ConfusionMatrix`` (the CSV read as
``OutputArtifactLoader.buildConfusionMatrixConfig`` does; below 600 px, as in a 500 px panel,
no labels, axis names or legend; the Pop out dialog shows them), ``HTMLViewer`` (``iframe``
with ``srcdoc`` and ``sandbox="allow-scripts"``, as high as the card). A malformed output
makes ``OutputArtifactLoader.load`` reject the step's whole file: its panel then shows an
error and no output. The page says so in a banner.

Not mirrored: markdown is rendered with markdown-it-py (CommonMark plus GFM tables and
strikethrough, raw HTML shown as text) where the UI uses markdown-to-jsx 6; fonts and
Material-UI styling are approximated; the Graph and Config tabs and logs are not drawn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rehearsal import kfp_releases, kfp_views
from rehearsal.kfp_releases import Line
from rehearsal.kfp_viewers import (
    CARD_DIMENSION,
    MAX_MARKDOWN,
    PANEL_DIMENSION,
    ROWS_PER_PAGE,
    VIEWER_TITLES,
    OutputError,
    load_output,
    render_output,
)
from rehearsal.kfp_viewers import escape as _e
from rehearsal.kfp_views import metric_display

METRICS_FILE = "mlpipeline-metrics.json"
UI_METADATA_FILE = "mlpipeline-ui-metadata.json"
RUN_JSON = "run.json"
PAGE_FILE = "run-output.html"
SUMMARY_TEMPLATE = "summary"

# The rows of kfp_releases' table the page's top repeats: where each result is.
GLANCE = ("visualizations", "metrics_table", "run_output", "run_list", "compare")


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
iframe.web-app { border: 1px solid #e0e0e0; box-sizing: border-box; width: 100%; }
.step-panel { border-left: 3px solid #1a73e8; margin: 18px 0; padding-left: 12px;
              max-width: 900px; }
.step-panel h3 { font-size: 15px; margin: 6px 0; }
.nothing { background: #f1f3f4; border-left: 3px solid #5f6368; padding: 8px 12px; }
.release-note { color: #202124; }
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




# ---------------------------------------------------------------------------------------
# The page


def _outputs(text: str) -> tuple[list[tuple[str, str, str]], str | None]:
    """(viewer title, HTML, output type) per output of one ui-metadata file, and why the
    loader rejects the whole file, if it does."""
    try:
        outputs = json.loads(text)["outputs"]
        if not isinstance(outputs, list):
            raise TypeError("outputs is not a list")
    except (ValueError, KeyError, TypeError) as e:
        return [], f"{UI_METADATA_FILE} cannot be parsed ({e})"
    shown, rejected = [], []
    for i, output in enumerate(outputs):
        try:
            config = load_output(output)
            shown.append((VIEWER_TITLES.get(config["type"], str(config["type"])),
                          render_output(config), str(output.get("type"))))
        except OutputError as e:
            rejected.append(f"output {i + 1} ({output.get('type')}): {e}")
            shown.append(("Rejected", f'<p class="note">Rejected: {_e(e)}</p>',
                          str(output.get("type"))))
    return shown, "; ".join(rejected) or None


def summary_first(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tasks in run order, the summary's (by template, DAG task or exit handler) first."""
    return sorted(tasks, key=lambda t: t.get("template") != SUMMARY_TEMPLATE)


def _panels_section(nodes: Sequence[kfp_views.Node], tasks: Sequence[Mapping[str, Any]],
                    files: Mapping[str, Mapping[str, str]]) -> list[str]:
    panel_of = {node.task["name"]: node for node in kfp_views.side_panels(nodes)}
    parts = ['<h2 id="step-panels">Each step\'s results: its side panel, Visualizations tab'
             "</h2>",
             '<p>Click a step in the run\'s graph: its side panel\'s <b>Visualizations</b> tab '
             f"shows everything the step published, each output in a {PANEL_DIMENSION} px "
             "card titled with its viewer. This works the same on every release.</p>"]
    quiet = []
    for task in summary_first(tasks):
        node = panel_of.get(task["name"])
        if node is None:
            if task.get("kind") == "container":
                quiet.append(task.get("display_name") or task["name"])
            continue
        shown, rejected = _outputs(files[task["name"]][UI_METADATA_FILE])
        label = task.get("display_name") or task["name"]
        body = []
        if rejected:
            body.append(f'<div class="banner error"><b>In Kubeflow this panel shows an error '
                        f"and no output at all</b>: the loader rejects {_e(rejected)}, and "
                        "one rejected output fails the step's whole file. Shown below "
                        "anyway, marked.</div>")
        for title, html_text, kind in shown:
            extra = " rejected" if title == "Rejected" else ""
            body.append(f'<div class="plot-card{extra}" data-type="{_e(kind)}">'
                        f'<div class="plot-header"><span class="plot-title">{_e(title)}</span>'
                        f'<span class="popout" title="Pop out">&#x2197;</span></div>'
                        f"{html_text}</div>")
        parts.append(f'<section class="step-panel" data-step="{_e(label)}" '
                     f'data-template="{_e(node.template)}"><h3>{_e(label)} '
                     f'<span class="note">({_e(task["status"])})</span></h3>'
                     f'{"".join(body)}</section>')
    if quiet:
        parts.append('<p class="note">The other steps\' panels say "There are no '
                     f'visualizations in this step": {_e(", ".join(quiet))}.</p>')
    return parts


def _code(html_text: str) -> str:
    """HTML with markdown's `code` spans (as kfp_releases writes citations) as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html_text)


def _cell(text: str) -> str:
    """A cell of kfp_releases' markdown table as HTML."""
    return _code(_e(text))


def _nothing(html_text: str) -> str:
    return f'<p class="nothing">{_code(html_text)}</p>'


def _run_output_section(line: Line, stored: kfp_views.StoredMetrics,
                        nodes: Sequence[kfp_views.Node]) -> list[str]:
    parts = ['<h2 id="run-output">Run output tab</h2>']
    if stored.rows:
        names, rows = kfp_views.metrics_table(stored.rows)
        body = "".join(f"<tr><th>{_e(label)}</th>" + "".join(f"<td>{_e(v)}</td>" for v in values)
                       + "</tr>" for label, values in rows)
        parts.append('<div class="output-title">Metrics</div><table class="compare-table '
                     'metrics"><thead><tr><th></th>' + "".join(f"<th>{_e(n)}</th>" for n in names)
                     + f"</tr></thead><tbody>{body}</tbody></table>")
        if len(rows) > len({label for label, _ in rows}):
            parts.append(_code(
                '<p class="release-note">Each step\'s row appears twice: the controller\'s '
                "templateDefaults give every template a retry strategy, so each step is a "
                "Retry node plus its attempt, and Argo copies the attempt's outputs onto the "
                f"Retry node ({line.cite('retry_node', short=True)}); the agent stores the "
                "metrics of both.</p>"))
    elif stored.unread:
        parts.append("<p>No metrics found for this run.</p>" + _nothing(
            f"KFP {_e(line.label)} stores no metrics: the persistence agent asks the API "
            "server for each node's metrics artifact by pod name "
            f"({line.cite('pod_name', short=True)}), the server looks it up by node id "
            f"({line.cite('metrics_server', short=True)}) and finds nothing "
            "(kubeflow/pipelines#10988). Both top-1 accuracies are in the evaluate steps' "
            "panels above."))
    else:
        parts.append("<p>No metrics found for this run.</p>")
    cards = kfp_views.run_output_cards(nodes)
    if cards:  # only with a bucket in the artifacts' location, which Argo does not record
        parts.append("<p>Cards of: " + _e(", ".join(n.display_name for n in cards)) + "</p>")
        return parts
    parts.append("<p>No output artifacts found for this run.</p>" + _nothing(
        "Nothing here when the tab opens, on every release: the tab keeps only artifacts "
        "whose location names a bucket, and Argo records them by key alone "
        f"({line.cite('run_output', short=True)} loadNodeOutputPaths). After a step's side "
        "panel has been opened, Refresh shows that step's outputs here, at "
        f"{CARD_DIMENSION} px."))
    return parts


def _run_list_section(line: Line, run: Mapping[str, Any], stored: kfp_views.StoredMetrics,
                      metrics_by_task: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    workflow = run["workflow"]
    name = workflow["name"]
    columns = kfp_views.run_list_columns(stored.rows, line)
    parts = ['<h2 id="run-list">Run list (Experiments &gt; Runs): this run\'s row</h2>']
    head = ["Run name", "Status", "Duration", "Experiment", "Pipeline Version",
            "Recurring Run", "Start time"]
    cells = [f"<td>{_e(name)}</td>", f"<td>{_e(workflow['phase'])}</td>"] + [
        '<td class="placeholder">set on the cluster</td>'] * 5
    if columns:
        head += [""] + columns
        first = dict(kfp_views.compare_metrics(stored.rows))
        cells += ['<td class="metric-buffer"></td>'] + [_metric_cell(first.get(c))
                                                        for c in columns]
    parts.append('<table class="run-list"><thead><tr>'
                 + "".join(f"<th>{_e(h)}</th>" for h in head)
                 + "</tr></thead><tbody><tr>" + "".join(cells) + "</tr></tbody></table>")
    if not line.run_list_metrics:
        parts.append(_nothing(f"No metric columns on KFP {_e(line.label)}: its run list "
                              "reads runs through the v2beta1 API, which has no metrics, and "
                              "the line that filled the columns is commented out "
                              f"({line.cite('run_list', short=True)}). Only KFP 1.8 shows "
                              "them."))
        return parts
    prefix = workflow.get("generate_name") or name.rsplit("-", 1)[0] + "-"
    simulated = kfp_views.simulate_columns(run["tasks"], metrics_by_task, prefix, line)
    stable = len(simulated) == 1
    same_metrics = len({frozenset(pair) for pair in simulated}) == 1
    summary = "; ".join(f"{' and '.join(pair) or 'none'} in {count}"
                        for pair, count in simulated.most_common(4))
    parts.append(
        f'<p class="run-list-columns">Metric columns: the first {kfp_views.RUN_LIST_METRICS} '
        "metric names in the order the API server returns the run's metrics (by node id, a "
        "hash of the workflow name Kubernetes generates, then by name). Over "
        f"{kfp_views.SIMULATED_NAMES} simulated workflow names they were: {_e(summary)}"
        + (" &mdash; the same for every run." if stable else
           " &mdash; the same two metrics for every run; only their left-to-right order "
           "changes with the run name." if same_metrics else
           " &mdash; <b>which metrics they are changes from run to run</b>.") + "</p>")
    return parts


def _compare_section(line: Line, run: Mapping[str, Any], stored: kfp_views.StoredMetrics
                     ) -> list[str]:
    parts = ['<h2 id="compare">Compare runs (this run alone)</h2>']
    metrics = kfp_views.compare_metrics(stored.rows)
    if metrics:
        rows = "".join(f"<tr><th>{_e(n)}</th><td>{_e(metric_display(m))}</td></tr>"
                       for n, m in metrics)
        parts.append('<div class="output-title">Metrics</div><table class="compare-table '
                     f'compare"><thead><tr><th></th><th>{_e(run["workflow"]["name"])}</th>'
                     f"</tr></thead><tbody>{rows}</tbody></table>")
    else:
        parts.append(_nothing(f"The Metrics section is empty on KFP {_e(line.label)}: no "
                              "metric of this run is stored."))
    parts.append(_nothing("No output cards below it, on every release: Compare runs loads "
                          "outputs the same way as the Run output tab "
                          f"({line.cite('run_output', short=True)} loadAllOutputPaths)."))
    return parts


def _release_section(line: Line, minor: str) -> list[str]:
    cells = kfp_releases.cells(line, short=True)
    titles = dict(kfp_releases.ROWS)
    build = line.build(minor)
    items = [f"<li><b>{_e(titles[key])}</b>: {_cell(cells[key])}</li>"
             for key in ("retries", "ttl", "terminate", "pod_security", "v1_blocking")]
    terminate = ("the claim is released by the exit handler" if
                 kfp_releases.exit_handler_keeps_running(build.argo) else
                 "the claim may stay after Terminate: release it with "
                 "<code>python3 -m tao_step release --workspace ... --run ...</code> "
                 "(README)")
    return [f'<h2 id="release">What else differs on KFP {_e(line.label)}</h2>',
            f'<p>KFP {_e(build.kfp)} runs Argo {_e(build.argo)}: {terminate}.</p>',
            '<ul class="notes">' + "".join(items) + "</ul>"]


def render_page(run: Mapping[str, Any], files: Mapping[str, Mapping[str, str]],
                minor: str = kfp_releases.DEFAULT_MINOR) -> str:
    """The page for ``run`` (``run.json``) and ``files`` (task name -> {file name: text}),
    as KFP ``minor`` (a ``--kfp-release`` value) shows it."""
    line = kfp_releases.line_of(minor)
    workflow = run["workflow"]
    name, tasks = workflow["name"], run["tasks"]
    metrics_by_task, metric_notes = {}, []
    for task in tasks:
        text = files.get(task["name"], {}).get(METRICS_FILE)
        if text is not None:
            metrics_by_task[task["name"]], problem = kfp_views.read_metrics(text)
            if problem:
                metric_notes.append(f"{task['name']}: {problem}")
    nodes = kfp_views.status_nodes(name, tasks, line)
    stored = kfp_views.stored_metrics(name, tasks, metrics_by_task, line)

    parts = [f'<div class="preview-banner"><b>Preview, not Kubeflow.</b> This page was made '
             "by the pipeline's rehearsal (<code>--dry-run --outputs</code>) from the files "
             "its steps wrote against the fake TAO, to show what the Kubeflow Pipelines "
             f"{_e(line.label)} UI (read at KFP {_e(line.kfp_tag)}, Argo "
             f"{_e(line.argo_tag)}) would show for such a run; <code>--kfp-release</code> "
             "picks another release. The numbers are the fake TAO's stand-ins, not a "
             "model's; layout and fonts are approximated.</div>",
             f"<h1>Run {_e(name)}: {_e(workflow['phase'])}</h1>"]
    if workflow.get("message"):
        parts.append(f'<p class="note">{_e(workflow["message"])}</p>')
    cells, titles = kfp_releases.cells(line, short=True), dict(kfp_releases.ROWS)
    parts.append(f'<h2 id="where">Where to look on KFP {_e(line.label)}</h2>'
                 '<table class="compare-table where"><tbody>'
                 + "".join(f"<tr><th>{_e(titles[key])}</th><td>{_cell(cells[key])}</td></tr>"
                           for key in GLANCE) + "</tbody></table>")
    parts += _panels_section(nodes, tasks, files)
    parts += _run_output_section(line, stored, nodes)
    if stored.reported > kfp_views.MAX_RUN_METRICS:
        parts.append(f'<div class="banner error">The steps report {stored.reported} metrics; '
                     f"the persistence agent stores only {kfp_views.MAX_RUN_METRICS}, which "
                     "ones depending on Go's map order.</div>")
    for note in metric_notes:
        parts.append(f'<p class="note">Metrics not stored: {_e(note)}</p>')
    parts += _run_list_section(line, run, stored, metrics_by_task)
    parts += _compare_section(line, run, stored)
    parts += _release_section(line, minor)

    rows = "".join(
        f"<tr><td>{_e(t['path'])}</td><td>{_e(t['status'])}</td>"
        f"<td>{_e('' if t.get('exit_code') is None else t['exit_code'])}</td>"
        f"<td>{_e(t.get('message') or '')}</td></tr>" for t in tasks)
    parts.append('<h2 id="tasks">Steps (run.json)</h2><table class="compare-table">'
                 "<thead><tr><th>task</th><th>status</th><th>exit code</th><th>message</th>"
                 f"</tr></thead><tbody>{rows}</tbody></table>")
    notes = [
        f"Cards are {PANEL_DIMENSION} px in a side panel: a confusion matrix there has no "
        "class names, axis names or legend (below 600 px); the card's Pop out icon shows "
        "them. Matrices are drawn with the predicted class as rows (last label on top) and "
        "the true class as columns.",
        f"Tables start sorted by their first column in string order, {ROWS_PER_PAGE} rows a "
        "page; a click on a header re-sorts.",
        f"Markdown longer than {MAX_MARKDOWN:,} characters is cut off. The UI renders "
        "markdown with markdown-to-jsx; this page with markdown-it-py, which may differ on "
        "rare constructs. Raw HTML in markdown is "
        + ("rendered" if line.markdown_raw_html else "shown as text")
        + f" on KFP {_e(line.label)}; the pipeline writes none.",
        "Web-app outputs run in a sandboxed iframe (scripts allowed, no same-origin), as "
        "high as the card.",
        "Not shown here: the Graph tab, logs and the Config tab. Duration, experiment and "
        "start time exist only on the cluster.",
    ]
    parts.append('<h2 id="notes">How the viewers draw</h2><ul class="notes">'
                 + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Preview of the Kubeflow run: {_e(name)} (KFP {_e(line.label)})</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def render_folder(folder: Path, minor: str = kfp_releases.DEFAULT_MINOR) -> str:
    """The page for a folder written by ``rehearsal.outputs.write_outputs``."""
    run = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    files: dict[str, dict[str, str]] = {}
    for task in run["tasks"]:
        for file_name in (task.get("outputs") or {}).values():
            path = folder / file_name
            files.setdefault(task["name"], {})[path.name] = path.read_text(encoding="utf-8")
    return render_page(run, files, minor)
