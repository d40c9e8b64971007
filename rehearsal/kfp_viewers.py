"""The Kubeflow Pipelines UI's viewers of a step's outputs, as HTML without scripts.

``OutputArtifactLoader.load`` reads a step's ``mlpipeline-ui-metadata.json`` into viewer
configs (rejecting the whole file on a malformed output), and ``MarkdownViewer``,
``PagedTable``, ``ConfusionMatrix`` and ``HTMLViewer`` draw them; the same from KFP 1.8.5
to 2.17.0 (frontend/src) but for markdown's raw HTML. ``rehearsal.run_page`` lays them out
as a release does; its docstring says what is mirrored and what is not.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from markdown_it import MarkdownIt

# The KFP constants the page mirrors (frontend/src, 1.8.5 to 2.17.0).
PANEL_DIMENSION = 500  # RunDetails.tsx: PlotCard maxDimension in a step's side panel
CARD_DIMENSION = 400  # RunDetails.tsx: PlotCard maxDimension on the Run output tab
SHRINK_THRESHOLD = 600  # ConfusionMatrix.tsx / PagedTable.tsx: smaller layout below this
POPOUT_DIMENSION = 700  # ConfusionMatrix.tsx: default when the dialog passes no maximum
ROWS_PER_PAGE = 10  # PagedTable.tsx initial state
MAX_MARKDOWN = 50 * 1000 * 8  # MarkdownViewer.tsx MAX_MARKDOWN_STR_LENGTH
# Each viewer's getDisplayName(): the title of its card in a side panel.
VIEWER_TITLES = {"markdown": "Markdown", "table": "Table",
                 "confusion_matrix": "Confusion matrix", "web-app": "Static HTML"}


_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


class OutputError(Exception):
    """An output OutputArtifactLoader would reject (and with it the step's whole file)."""


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


def escape(text: Any) -> str:
    """Text as HTML (attribute values too)."""
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
    head = "".join(f'<th class="column-name">{escape(label)}</th>' for label in config["labels"])

    def body(chunk: Sequence[Sequence[str]]) -> str:
        return "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
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
        rows.append(f'<tr><td class="y-axis-label">{escape(config["axes"][1])}</td></tr>')
    for r in range(n):
        cells = []
        if not small:
            cells.append(f'<td><div class="ylabel">{escape(labels[n - 1 - r])}</div></td>')
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
        footer = "".join(f'<th><div class="xlabel">{escape(label)}</div></th>' for label in labels)
        rows.append(f'<tr class="x-labels"><th></th>{footer}'
                    f'<td class="x-axis-label">{escape(config["axes"][0])}</td></tr>')
    kind = "small" if small else "full"
    return (f'<div class="confusion-matrix {kind}"><table><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def render_confusion_matrix(config: Mapping[str, Any], dimension: int) -> str:
    return (_matrix(config, dimension)
            + '<details class="popout"><summary>Pop out (the card\'s icon): the same matrix '
            "with labels and axis names</summary>"
            + _matrix(config, POPOUT_DIMENSION) + "</details>")


def render_output(config: Mapping[str, Any], dimension: int = PANEL_DIMENSION) -> str:
    kind = config["type"]
    if config.get("dropped"):
        return f'<p class="note">Unknown plot type {escape(kind)!s}: the UI skips it.</p>'
    if config.get("unsupported"):
        return f'<p class="note">A {escape(kind)} output: not previewed here.</p>'
    if config.get("remote"):
        return (f'<p class="note">Read from {escape(config["remote"])} by the UI: not previewed '
                "(only inline outputs are).</p>")
    if kind == "markdown":
        return render_markdown(config["markdown"])
    if kind == "table":
        return render_table(config)
    if kind == "confusion_matrix":
        return render_confusion_matrix(config, dimension)
    return (f'<iframe class="web-app" sandbox="allow-scripts" height="{dimension}" '
            f'srcdoc="{escape(config["html"])}" style="height:{dimension}px"></iframe>')

