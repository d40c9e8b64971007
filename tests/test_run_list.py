"""What KFP 1.8.5 shows for a run of this pipeline: its run-list columns and Run output tab.

The compiled pipeline is rehearsed (every step's real ``tao_step report`` against the fake
TAO), and the metrics and UI metadata files the steps wrote are put into a workflow status
shaped as Argo v3.3.8 writes it. That status is then read with the logic of
kubeflow/pipelines 1.8.5, simulated here:

* node ids: ``<workflow name>-<fnv32a(node name)>`` (argo ``Workflow.NodeID``); node names
  ``<workflow name>.<task>[.<task>]``, a retried pod ``<name>(<attempt>)`` under a Retry node
  that, once an attempt succeeded, carries a copy of its outputs (``workflow/controller/
  operator.go`` ``processNodeRetries``: ``node.Outputs = lastChildNode.Outputs.DeepCopy()``);
* the persistence agent reports the ``mlpipeline-metrics`` of every completed node that has
  the artifact, at most 50 (``backend/src/agent/persistence/worker/metrics_reporter.go``);
  the store keeps one row per (run, node id, name) and lists a run's rows with no ORDER
  BY, i.e. in primary-key order: node id, then name (``backend/src/apiserver/storage/
  run_store.go``, ``model/run.go``);
* the run list keeps metric names in the order first met over the page's runs and shows the
  first two (``frontend/src/lib/RunUtils.ts`` ``runsToMetricMetadataMap``,
  ``pages/RunList.tsx`` ``slice(0, 2)``); a cell shows the run's first metric of that name;
* the Run output tab and Compare runs load ``mlpipeline-ui-metadata`` from every node that
  has it (``frontend/src/lib/WorkflowParser.ts`` ``loadAllOutputPathsWithStepNames``).
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from rehearsal import dry_run
from rehearsal.dag_scheduler import fnv32a
from rehearsal.run_page import NAME_ALPHABET

RUNS = 2000
PAGE = 10  # the run list's default page size
TOP1 = {"accuracy-top1-baseline", "accuracy-top1-retrained"}


def node_id(workflow_name: str, node_name: str) -> str:
    return f"{workflow_name}-{fnv32a(node_name)}"


def workflow_names(n: int, seed: int = 1) -> list[str]:
    """Names as Kubernetes' generateName makes them (5 characters, apimachinery rand.String)."""
    rng = random.Random(seed)
    return ["tao-iva-classification-" + "".join(rng.choice(NAME_ALPHABET) for _ in range(5))
            for _ in range(n)]


@pytest.fixture(scope="module")
def rehearsal(default_workflow, tmp_path_factory):
    """Each succeeded container step: (task path, template, its metrics, its UI outputs)."""
    tmp = tmp_path_factory.mktemp("run-list")
    rehearsal = dry_run.Rehearsal(default_workflow.doc, overrides={}, specs_dir=None,
                                  workspace=tmp / "workspace", fresh=True)
    rehearsal.seed()
    result = rehearsal.run(logs=tmp / "logs")
    assert result.succeeded, result.format_report()
    steps = []
    for step in result.steps:
        if step.kind != "container":
            continue
        assert step.status == "Succeeded", step.name

        def read(name, step=step):
            path = step.artifacts.get(name)
            return json.loads(path.read_text()) if path else None

        steps.append((step.path, step.template, read("mlpipeline-metrics"),
                      read("mlpipeline-ui-metadata")))
    return default_workflow.doc, steps


def argo_status(doc: dict, steps: list, name: str, retried: set[str] | None = None) -> dict:
    """``status.nodes`` as Argo v3.3.8 leaves it after a successful run (first attempts)."""
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    nodes = {}
    for path, template, metrics, ui in steps:
        node_name = f"{name}.{path}"
        artifacts = [{"name": art, "s3": {"key": f"artifacts/{name}/{node_name}/{art}.tgz",
                                          "s3Bucket": {"bucket": "mlpipeline"}},
                      "_content": content}
                     for art, content in (("mlpipeline-metrics", metrics),
                                          ("mlpipeline-ui-metadata", ui)) if content]
        task = path.rsplit(".", 1)[-1]
        retry = "retryStrategy" in templates[template] if retried is None else task in retried
        pod_name = node_name + "(0)" if retry else node_name
        pod = {"id": node_id(name, pod_name), "name": pod_name, "type": "Pod",
               "displayName": task + ("(0)" if retry else ""), "phase": "Succeeded",
               "outputs": {"artifacts": artifacts}}
        nodes[pod["id"]] = pod
        if retry:
            parent = {"id": node_id(name, node_name), "name": node_name, "type": "Retry",
                      "displayName": task, "phase": "Succeeded", "children": [pod["id"]],
                      "outputs": copy.deepcopy(pod["outputs"])}  # processNodeRetries
            nodes[parent["id"]] = parent
    return nodes


def stored_metrics(nodes: dict) -> list[dict]:
    """The run's metrics as the API server returns them."""
    reported = []
    for node in nodes.values():  # ReportMetrics; a Go map: any order
        for art in node.get("outputs", {}).get("artifacts", []):
            if art["name"] == "mlpipeline-metrics":
                reported.append([dict(m, node=node["id"]) for m in art["_content"]["metrics"]])
    rows, count = {}, 0
    for node_metrics in reported:
        if count + len(node_metrics) >= 50:  # maxMetricsCountLimit
            node_metrics = node_metrics[:50 - count]
        for m in node_metrics:
            rows.setdefault((m["node"], m["name"]), m)  # the same (node, name) is refused
        count += len(node_metrics)
        if count >= 50:
            break
    return [rows[key] for key in sorted(rows)]


def run_list_columns(runs: list[list[dict]]) -> list[str]:
    names: list[str] = []
    for metrics in runs:
        for m in metrics:
            if m["name"] not in names:
                names.append(m["name"])
    return names[:2]


def ui_outputs(nodes: dict) -> list[tuple[str, str]]:
    """(card title, artifact key) for each ui-metadata file the Run output tab loads; Go
    marshals ``status.nodes`` with sorted keys, which is the order the tab keeps."""
    return [(nodes[n]["displayName"], art["s3"]["key"]) for n in sorted(nodes)
            for art in nodes[n].get("outputs", {}).get("artifacts", [])
            if art["name"] == "mlpipeline-ui-metadata" and art["s3"].get("s3Bucket")]


def test_the_run_list_columns_are_the_two_top1_accuracies_for_any_workflow_name(rehearsal):
    doc, steps = rehearsal
    expected = {}
    for path, _, metrics, _ in steps:
        for m in (metrics or {"metrics": []})["metrics"]:
            expected[m["name"]] = (path, m["numberValue"])
    assert set(expected) == TOP1  # the run publishes exactly these two metrics
    assert [expected[n][0].rsplit(".", 1)[-1] for n in sorted(TOP1)] == [
        "evaluate-model", "reevaluate-model"]

    runs = [stored_metrics(argo_status(doc, steps, name)) for name in workflow_names(RUNS)]
    for start in range(0, RUNS, PAGE):
        page = runs[start:start + PAGE]
        columns = run_list_columns(page)
        assert set(columns) == TOP1, (start, columns)
        for metrics in page:  # each cell: that run's own value
            for column in columns:
                shown = next(m for m in metrics if m["name"] == column)
                assert shown["numberValue"] == expected[column][1]
    # A page of runs that ended before reevaluate-model shows the baseline column only.
    early = [[m for m in run if m["name"] == "accuracy-top1-baseline"] for run in runs[:PAGE]]
    assert run_list_columns(early) == ["accuracy-top1-baseline"]


def test_the_simulation_sees_node_order_when_more_metrics_are_published(rehearsal):
    """The same simulation with one more metric on another step (as before issue 8): the
    columns then depend on the workflow name, so the test above can fail."""
    doc, steps = rehearsal
    widened = [(path, template, {"metrics": [{"name": "pruning-ratio", "numberValue": 0.6,
                                              "format": "RAW"}]}
                if path.endswith("prune-model") else metrics, ui)
               for path, template, metrics, ui in steps]
    pages = [run_list_columns([stored_metrics(argo_status(doc, widened, name))])
             for name in workflow_names(200, seed=2)]
    assert any(set(columns) != TOP1 for columns in pages)


def test_each_result_appears_once_although_steps_are_retried(rehearsal):
    """Argo 3.3 keeps a Retry node with a copy of the outputs for every retried step; none
    of the steps that publish is retried, so every metric and card appears once, while the
    long steps (train, retrain) keep their retry."""
    doc, steps = rehearsal
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    retried = {path.rsplit(".", 1)[-1] for path, template, _, _ in steps
               if "retryStrategy" in templates[template]}
    assert {"train-model", "retrain-model", "download-model"} <= retried
    publishing = sorted(path.rsplit(".", 1)[-1] for path, _, _, ui in steps if ui)
    assert {"evaluate-model", "reevaluate-model", "onExit"} <= set(publishing)
    for name in workflow_names(50, seed=3):
        nodes = argo_status(doc, steps, name)
        assert any(n["type"] == "Retry" for n in nodes.values())
        metrics = stored_metrics(nodes)
        assert sorted(m["name"] for m in metrics) == sorted(TOP1)
        cards = ui_outputs(nodes)
        assert sorted(title for title, _ in cards) == publishing

    # The same status with the publishing steps retried, as before: everything twice.
    nodes = argo_status(doc, steps, "tao-iva-classification-x1y2z",
                        retried=retried | set(publishing))
    assert len(stored_metrics(nodes)) == 4 and len(ui_outputs(nodes)) == 2 * len(publishing)


def test_the_training_report_is_shown_once_with_its_evaluation(rehearsal):
    _, steps = rehearsal
    by_task = {path.rsplit(".", 1)[-1]: ui for path, _, _, ui in steps}
    assert by_task["train-model"] is None and by_task["retrain-model"] is None
    for task, label in (("evaluate-model", "baseline"), ("reevaluate-model", "retrained")):
        outputs = by_task[task]["outputs"]
        assert outputs[0]["type"] == "markdown"
        assert outputs[0]["source"].startswith(f"### Training: {label} model")
        assert outputs[1]["type"] == "web-app"  # the curve
        assert any(o["source"].startswith(f"### Evaluation: {label} model")
                   for o in outputs if o["type"] == "markdown")


def test_the_summary_is_the_exit_handler_and_reports_a_clean_run(rehearsal):
    """The exit handler's node carries the whole report; with no failed node Argo passes
    workflow.failures as the quoted JSON null, which the summary reads as none."""
    _, steps = rehearsal
    (summary,) = [(template, ui) for path, template, _, ui in steps if path == "onExit"]
    template, ui = summary
    assert template == "summary"
    assert ui["outputs"][0]["source"].startswith("## Run summary: Succeeded\n\nEvery step "
                                                 "succeeded.\n")
