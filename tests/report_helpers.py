"""Shared by the tao_step report tests: run the real CLI and check its files as KFP v1 would.

The CLI runs on ``in_container.PYTHON``: the TAO image's Python 3.6 when ``TAO_STEP_PYTHON``
names one (as in CI).
"""

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
from in_container import PYTHON

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SAMPLES = DATA / "tao_output"
FAKE_TAO = DATA / "fake_tao.py"
# The tests import tao_step from this checkout, also without pytest's pythonpath setting.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The backend's pattern (backend/src/apiserver/server/util.go, metricNamePattern).
METRIC_NAME_PATTERN = "^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$"

METRICS_SCHEMA = {
    "type": "object",
    "required": ["metrics"],
    "additionalProperties": False,
    "properties": {"metrics": {
        "type": "array", "minItems": 1, "maxItems": 50,
        "items": {
            "type": "object",
            "required": ["name", "numberValue", "format"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": METRIC_NAME_PATTERN},
                "numberValue": {"type": "number"},
                "format": {"enum": ["RAW", "PERCENTAGE"]},
            },
        },
    }},
}


def _output(type_, required, **properties):
    return {
        "type": "object",
        "required": ["type", "storage", "source", *required],
        "additionalProperties": False,
        "properties": {"type": {"const": type_}, "storage": {"const": "inline"},
                       "source": {"type": "string", "minLength": 1}, **properties},
    }


UI_METADATA_SCHEMA = {
    "type": "object",
    "required": ["outputs"],
    "additionalProperties": False,
    "properties": {"outputs": {"type": "array", "minItems": 1, "items": {"oneOf": [
        _output("markdown", []),
        _output("web-app", []),
        _output("table", ["format", "header"], format={"const": "csv"},
                header={"type": "array", "minItems": 1, "items": {"type": "string"}}),
        _output("confusion_matrix", ["format", "schema", "labels"], format={"const": "csv"},
                schema={"const": [{"name": "target", "type": "CATEGORY"},
                                  {"name": "predicted", "type": "CATEGORY"},
                                  {"name": "count", "type": "NUMBER"}]},
                labels={"type": "array", "minItems": 2, "uniqueItems": True,
                        "items": {"type": "string", "minLength": 1}}),
    ]}}},
}


def csv_rows(source: str) -> list[list[str]]:
    """Rows as the UI reads them (d3 ``csvParseRows`` of the trimmed text, cells trimmed)."""
    return [[cell.strip() for cell in row] for row in csv.reader(source.strip().splitlines())]


def check_outputs(out_dir: Path) -> tuple[dict | None, dict]:
    """Validate what a step wrote against what KFP v1 accepts; return (metrics, ui metadata)."""
    metrics = None
    metrics_path = out_dir / "mlpipeline-metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        jsonschema.validate(metrics, METRICS_SCHEMA)
        names = [m["name"] for m in metrics["metrics"]]
        assert len(names) == len(set(names)), names
        for m in metrics["metrics"]:
            assert math.isfinite(m["numberValue"]), m
            if m["format"] == "PERCENTAGE":  # fractions, never already x100
                assert -1 <= m["numberValue"] <= 1, m
    ui = json.loads((out_dir / "mlpipeline-ui-metadata.json").read_text(encoding="utf-8"))
    jsonschema.validate(ui, UI_METADATA_SCHEMA)
    for output in ui["outputs"]:
        if output["type"] == "table":
            rows = csv_rows(output["source"])
            assert rows and all(len(r) == len(output["header"]) for r in rows), output
        if output["type"] == "confusion_matrix":
            labels = output["labels"]
            rows = csv_rows(output["source"])
            assert len(rows) == len(labels) ** 2
            assert sorted((t, p) for t, p, _ in rows) == sorted(
                (t, p) for t in labels for p in labels)
            assert all(int(count) >= 0 for _, _, count in rows)
    return metrics, ui


def outputs_of(ui: dict, type_: str) -> list[dict]:
    return [o for o in ui["outputs"] if o["type"] == type_]


def metric_values(metrics: dict | None) -> dict[str, float]:
    return {m["name"]: m["numberValue"] for m in (metrics or {"metrics": []})["metrics"]}


def run_list_columns(runs: list[list[str]]) -> list[str]:
    """The two metric columns the KFP 1.8 run list shows for runs reporting these names.

    frontend/src/lib/RunUtils.ts ``extractMetricMetadata``: ``orderBy(metrics, ['count',
    'name'], ['desc', 'asc'])``, and RunList.tsx keeps ``.slice(0, 2)``. lodash compares
    strings by UTF-16 code unit, which Python's ``<`` matches for these ASCII names.
    """
    counts: dict[str, int] = {}
    for names in runs:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: (-counts[name], name))[:2]


def fake_tao(*ops) -> list[str]:
    """A command line that runs the fake TAO with these operations."""
    return [PYTHON, str(FAKE_TAO), *(str(op) for op in ops)]


def run_report(*options, command=None, timeout=60, env=None) -> subprocess.CompletedProcess:
    """``python -m tao_step report OPTIONS [-- COMMAND]`` as the pipeline runs it, with
    ``env`` (e.g. :func:`run_env`) added to the environment."""
    argv = [PYTHON, "-m", "tao_step", "report", *(str(o) for o in options)]
    if command is not None:
        argv += ["--", *command]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=timeout,
                          encoding="utf-8", errors="replace", check=False)


RUN_UID = "2f0c5c3e-1a7b-4d52-9f53-0d3c1c2b9a11"


def run_env(tmp_path: Path, step: str) -> dict[str, str]:
    """What the pipeline tells a step about its run (workspace ``tmp_path/ws``)."""
    return {"TAO_RUN_WORKSPACE": str(tmp_path / "ws"), "TAO_RUN_NAME": "tao-iva-run-x1y2z",
            "TAO_RUN_UID": RUN_UID, "TAO_RUN_STEP": step}


def kept_result(tmp_path: Path, step: str) -> dict | None:
    """The result a step kept for the summary under :func:`run_env`, or None."""
    path = tmp_path / "ws" / ".tao-run-claims" / "results" / RUN_UID / f"{step}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _load_sample_maker():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MAKER = _load_sample_maker()


def evaluate_text(names: list[str], matrix: list[list[int]], *, loss=0.25, topk=1.0) -> str:
    """What TAO 3.x evaluate prints for this confusion matrix (numpy and sklearn formats)."""
    total = sum(map(sum, matrix))
    return (
        "2022-03-08 07:50:45,902 [INFO] __main__: Loading model from /w/resnet_080.tlt\n"
        f"Found {total} images belonging to {len(names)} classes.\n"
        f"Evaluation Loss: {loss!r}\nEvaluation Top K accuracy: {topk!r}\n"
        f"Found {total} images belonging to {len(names)} classes.\n"
        "Confusion Matrix\n" + _MAKER.numpy_str(matrix) + "\n"
        "Classification Report\n" + _MAKER.sklearn_report(names, matrix) + "\n"
    )
