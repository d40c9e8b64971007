"""Builders for the two files the KFP v1 UI reads from a step, inline only.

``mlpipeline-metrics.json``: ``{"metrics": [{"name", "numberValue", "format"}]}`` and no
other key (the backend rejects the whole file otherwise); names must match
``METRIC_NAME``; values finite; ``format`` RAW or PERCENTAGE (a fraction, shown x100).
``mlpipeline-ui-metadata.json``: ``{"outputs": [...]}``; every output here is
``storage: "inline"`` so ``source`` holds the content itself (the UI cannot read paths on
the TAO workspace). The frontend parses CSV sources with d3's ``csvParseRows`` after
trimming, and a confusion matrix needs exactly ``len(labels) ** 2`` rows.

Which metrics become run-list columns: see ``top1_metric`` in ``tao_step/evaluate_report.py``.
"""

import csv
import io
import json
import math
import os
import re
from typing import Iterable, List, Sequence

METRIC_NAME = re.compile(r"^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$")
RAW = "RAW"
PERCENTAGE = "PERCENTAGE"
MAX_METRICS_PER_RUN = 50

METRICS_FILE = "mlpipeline-metrics.json"
UI_METADATA_FILE = "mlpipeline-ui-metadata.json"

CONFUSION_MATRIX_SCHEMA = [
    {"name": "target", "type": "CATEGORY"},
    {"name": "predicted", "type": "CATEGORY"},
    {"name": "count", "type": "NUMBER"},
]


def metric(name: str, value: float, fmt: str = RAW) -> dict:
    """One metric entry; raises ValueError for anything the KFP backend would reject."""
    if not METRIC_NAME.match(name):
        raise ValueError("invalid KFP metric name %r" % name)
    if fmt not in (RAW, PERCENTAGE):
        raise ValueError("metric format must be RAW or PERCENTAGE, not %r" % fmt)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("metric %s needs a finite number, got %r" % (name, value))
    return {"name": name, "numberValue": float(value), "format": fmt}


def metrics_document(metrics: Sequence[dict]) -> dict:
    names = [m["name"] for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError("duplicate metric names: %s" % ", ".join(names))
    if len(metrics) > MAX_METRICS_PER_RUN:
        raise ValueError("KFP keeps at most %d metrics per run" % MAX_METRICS_PER_RUN)
    return {"metrics": list(metrics)}


def csv_text(rows: Iterable[Sequence]) -> str:
    """RFC 4180 CSV (cells with commas, quotes or newlines quoted), one row per line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def markdown(source: str) -> dict:
    if not source.strip():
        raise ValueError("the KFP UI rejects an empty markdown source")
    return {"type": "markdown", "storage": "inline", "source": source}


def table(header: List[str], rows: Iterable[Sequence]) -> dict:
    """A table; at least one row (an empty source makes the 1.8.5 loader reject it, and with
    it every output of the step: ``OutputArtifactLoader.buildPagedTableConfig`` throws and
    ``load`` awaits all outputs with ``Promise.all``)."""
    source = csv_text(rows)
    if not source.strip():
        raise ValueError("the KFP UI rejects a table without rows")
    return {"type": "table", "storage": "inline", "format": "csv", "header": list(header),
            "source": source}


def confusion_matrix(labels: List[str], matrix: List[List[int]]) -> dict:
    """``matrix[i][j]``: images of class ``labels[i]`` predicted as ``labels[j]``."""
    if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        raise ValueError("a %d-label confusion matrix needs %dx%d counts"
                         % (len(labels), len(labels), len(labels)))
    if len(set(labels)) != len(labels):
        raise ValueError("confusion matrix labels must be unique")
    rows = [(target, predicted, matrix[i][j])
            for i, target in enumerate(labels) for j, predicted in enumerate(labels)]
    return {"type": "confusion_matrix", "storage": "inline", "format": "csv",
            "schema": CONFUSION_MATRIX_SCHEMA, "labels": list(labels), "source": csv_text(rows)}


def web_app(html: str) -> dict:
    return {"type": "web-app", "storage": "inline", "source": html}


def ui_metadata_document(outputs: Sequence[dict]) -> dict:
    return {"outputs": list(outputs)}


def write_json(path: str, document: dict) -> None:
    """Write atomically; ``allow_nan=False`` makes a NaN an error instead of invalid JSON."""
    text = json.dumps(document, indent=2, allow_nan=False, sort_keys=False)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(text: str) -> str:
    """Escape text (class names, paths) so markdown shows it literally, also inside tables."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; cells are used as given (escape them with ``md_escape``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
