"""What each KFP release line shows of a rehearsed run: run list, Metrics table, Compare runs,
the Run output tab and the steps' panels.

The compiled pipeline is rehearsed once (every step's real ``tao_step report`` against the
fake TAO: the session's shared dry run), and the files the steps wrote are read with each
line's rules (``rehearsal.kfp_views``, whose docstring cites the source of each:
kubeflow/pipelines 1.8.5, 2.0.5, 2.2.0, 2.15.0, 2.17.0; argo-workflows v3.3.8 to v4.0.5).
In short:

* node ids are ``<workflow name>-<fnv32a(node name)>``; a retried template is a Retry node
  that carries a copy of its attempt's outputs (``processNodeRetries``), and on 2.17 every
  template is retried (the controller's ``templateDefaults``);
* the persistence agent asks for each node's metrics by node id (1.8, 2.0, 2.15+) or by pod
  name (2.2 to 2.14, which the API server never finds); at most 50, one row per (node id,
  name), listed in primary-key order;
* the run list shows the first two metric names over the page's runs, on 1.8 only;
* the Run output tab and Compare runs load UI metadata only from artifacts with a bucket,
  which Argo's key-only records never have; a step's side panel shows its outputs.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from rehearsal import kfp_views
from rehearsal.kfp_releases import BY_KEY, LINES
from rehearsal.workflow_identity import generate_name

# Every test here reads the session's shared default dry run.
pytestmark = pytest.mark.e2e

RUNS = 2000
PAGE = 10  # the run list's default page size
TOP1 = {"accuracy-top1-baseline", "accuracy-top1-retrained"}
KFP_FILES = ("mlpipeline-metrics", "mlpipeline-ui-metadata")


def workflow_names(n: int, seed: int = 1) -> list[str]:
    """Names as Kubernetes' generateName makes them (5 characters, apimachinery rand.String)."""
    rng = random.Random(seed)
    return [generate_name("tao-iva-classification-", rng)
            for _ in range(n)]


@pytest.fixture(scope="module")
def rehearsal(default_dry_run):
    """run.json's tasks of a successful rehearsal, each step's metrics and UI outputs: the
    session's shared default dry run (conftest.py), read from its ``--outputs`` folder."""
    assert default_dry_run.returncode == 0, default_dry_run.stdout
    out = default_dry_run.outputs
    tasks, metrics, ui = [], {}, {}
    for task in json.loads((out / "run.json").read_text())["tasks"]:
        assert task["status"] == "Succeeded" or task["kind"] == "dag", task["name"]
        kept = {a: task["outputs"][a] for a in KFP_FILES if task["outputs"].get(a)}
        tasks.append({key: task[key] for key in ("name", "path", "template", "kind", "status",
                                                 "retry", "display_name")} | {"outputs": kept})
        if "mlpipeline-metrics" in kept:
            metrics[task["name"]] = kfp_views.read_metrics(
                (out / kept["mlpipeline-metrics"]).read_text())[0]
        if "mlpipeline-ui-metadata" in kept:
            ui[task["name"]] = json.loads((out / kept["mlpipeline-ui-metadata"]).read_text())
    return tasks, metrics, ui


def stored(tasks, metrics, name, key):
    return kfp_views.stored_metrics(name, tasks, metrics, BY_KEY[key]).rows


def test_the_run_list_columns_are_the_two_top1_accuracies_for_any_workflow_name(rehearsal):
    tasks, metrics, _ = rehearsal
    expected = {m["name"]: (task, m["numberValue"]) for task, ms in metrics.items() for m in ms}
    assert set(expected) == TOP1  # the run publishes exactly these two metrics
    assert [expected[n][0] for n in sorted(TOP1)] == ["evaluate-model", "reevaluate-model"]

    line = BY_KEY["1.8"]
    runs = [stored(tasks, metrics, name, "1.8") for name in workflow_names(RUNS)]
    for start in range(0, RUNS, PAGE):
        page = runs[start:start + PAGE]
        columns = kfp_views.run_list_columns([m for run in page for m in run], line)
        assert set(columns) == TOP1, (start, columns)
        for run in page:  # each cell: that run's own value
            for column in columns:
                shown = next(m for m in run if m["name"] == column)
                assert shown["numberValue"] == expected[column][1]
    # A page of runs that ended before reevaluate-model shows the baseline column only.
    early = [m for run in runs[:PAGE] for m in run if m["name"] == "accuracy-top1-baseline"]
    assert kfp_views.run_list_columns(early, line) == ["accuracy-top1-baseline"]


def test_the_simulation_sees_node_order_when_more_metrics_are_published(rehearsal):
    """The same simulation with one more metric on another step (as before issue 8): the
    columns then depend on the workflow name, so the test above can fail."""
    tasks, metrics, _ = rehearsal
    widened = [dict(t, outputs={**t["outputs"], "mlpipeline-metrics": "x"})
               if t["name"] == "prune-model" else t for t in tasks]
    more = {**metrics, "prune-model": [{"name": "pruning-ratio", "numberValue": 0.6,
                                        "format": "RAW"}]}
    pages = [kfp_views.run_list_columns(stored(widened, more, name, "1.8"), BY_KEY["1.8"])
             for name in workflow_names(200, seed=2)]
    assert any(set(columns) != TOP1 for columns in pages)


@pytest.mark.parametrize("key, times", [("1.8", 1), ("2.0", 1), ("2.2", 0), ("2.15", 1),
                                        ("2.17", 2)])
def test_what_each_release_stores_and_lists(rehearsal, key, times):
    tasks, metrics, _ = rehearsal
    line = BY_KEY[key]
    for name in workflow_names(20, seed=4):
        rows = stored(tasks, metrics, name, key)
        assert sorted(m["name"] for m in rows) == sorted(sorted(TOP1) * times)
        # the Metrics table: a row per node (2.17: each step's Retry node and attempt)
        _, table = kfp_views.metrics_table(rows)
        assert sorted(label for label, _ in table) == sorted(
            ["evaluate-model", "reevaluate-model"] * times)
        # Compare runs: one value per metric wherever any is stored
        assert {n for n, _ in kfp_views.compare_metrics(rows)} == (TOP1 if times else set())
        assert set(kfp_views.run_list_columns(rows, line)) == (TOP1 if key == "1.8" else set())


@pytest.mark.parametrize("line", LINES, ids=lambda line: line.key)
def test_results_are_in_the_steps_panels_and_not_in_the_run_output_tab(rehearsal, line):
    tasks, _, ui = rehearsal
    nodes = kfp_views.status_nodes("tao-iva-classification-x1y2z", tasks, line)
    assert kfp_views.run_output_cards(nodes) == []
    panels = [node.task["name"] for node in kfp_views.side_panels(nodes)]
    assert sorted(panels) == sorted(ui)  # one panel per publishing step, even on 2.17
    assert {"evaluate-model", "reevaluate-model", "onExit"} <= set(panels)  # onExit: summary


def test_retried_publishing_steps_would_be_stored_twice(rehearsal):
    """Why the publishing steps have no retry strategy (the long ones keep theirs): a Retry
    node carries a copy of its attempt's outputs, on every Argo release, and the agent
    reports both. On 2.17 the controller's templateDefaults give it anyway."""
    tasks, metrics, _ = rehearsal
    retried = {t["name"] for t in tasks if t["retry"]}
    assert {"train-model", "retrain-model", "download-model"} <= retried
    assert not retried & set(metrics)
    as_before = [dict(t, retry=t["retry"] or t["name"] in metrics) for t in tasks]
    assert len(stored(as_before, metrics, "tao-iva-classification-x1y2z", "1.8")) == 4


def test_the_markdown_holds_no_raw_html(rehearsal):
    """From KFP 2.2.0 MarkdownViewer.tsx shows raw HTML as text (disableParsingRawHTML);
    the pipeline writes none, so every release shows its markdown alike."""
    _, _, ui = rehearsal
    sources = [o["source"] for outputs in ui.values() for o in outputs["outputs"]
               if o["type"] == "markdown"]
    assert sources
    for source in sources:
        assert not re.search(r"(?<!\\)<[a-zA-Z/!]", source), source[:200]


def test_the_training_report_is_shown_once_with_its_evaluation(rehearsal):
    _, _, ui = rehearsal
    assert "train-model" not in ui and "retrain-model" not in ui
    for task, label in (("evaluate-model", "baseline"), ("reevaluate-model", "retrained")):
        outputs = ui[task]["outputs"]
        assert outputs[0]["type"] == "markdown"
        assert outputs[0]["source"].startswith(f"### Training: {label} model")
        assert outputs[1]["type"] == "web-app"  # the curve
        assert any(o["source"].startswith(f"### Evaluation: {label} model")
                   for o in outputs if o["type"] == "markdown")


def test_the_summary_is_the_exit_handler_and_reports_a_clean_run(rehearsal):
    """The exit handler's node carries the whole report; with no failed node Argo passes
    workflow.failures as the quoted JSON null, which the summary reads as none."""
    tasks, _, ui = rehearsal
    (summary,) = [task for task in tasks if task["path"] == "onExit"]
    assert summary["template"] == "summary"
    report = ui[summary["name"]]["outputs"][0]["source"]
    assert report.startswith("## Run summary: Succeeded\n\nEvery step succeeded.\n")
