"""What a Kubeflow Pipelines release line makes of a rehearsed run.

Input: the tasks of ``run.json`` (``rehearsal.outputs.run_record``) and the metrics files the
steps wrote; the line's rules come from ``rehearsal.kfp_releases``. Output: the workflow
status its Argo writes, the metrics its backend stores, and what its UI lists in the run
list, the Run output tab (Metrics table and cards) and Compare runs. ``rehearsal.run_page``
draws them.

The status, as Argo v3.3.8 to v4.0.5 writes it:

- a node's id is ``<workflow>-<fnv32a(node name)>`` (``Workflow.NodeID``,
  ``pkg/apis/workflow/v1alpha1/workflow_types.go``); a DAG task's node is named
  ``<parent node>.<task>``, the exit handler's ``<workflow>.onExit``;
- a template with any retryStrategy is a Retry node named as the task, with an attempt
  ``<name>(0)`` under it that runs the template (a DAG's tasks hang under the attempt); once
  the attempt ends, the controller copies its outputs onto the Retry node (``operator.go``
  ``executeTemplate``, ``processNodeRetries``). On KFP 2.17 every template gets a
  retryStrategy from the controller's ``templateDefaults`` (``kfp_releases``);
- a pod is named by its node id up to Argo 3.3 (``POD_NAMES`` v1) and
  ``<workflow>-<template>-<fnv32a(node name)>`` from 3.4 (v2) (``workflow/util/pod_name.go``);
- output artifacts are recorded by key alone, ``s3: {key: ...}`` (``workflow/executor/
  executor.go`` ``saveArtifactFromFile``: ``SetType`` makes an empty S3 location, then
  ``SetKey``).

The backend (persistence agent and API server, ``backend/src/common/util/workflow.go``):
every completed node with an ``mlpipeline-metrics`` artifact is read by asking the API
server for that node's artifact, by node id or, on 2.2 to 2.14, by ``RetrievePodName``; the
server looks the name up among the status' node ids (``FindObjectStoreArtifactKeyOrEmpty``),
so a pod name finds nothing. At most 50 metrics are kept per run (``maxMetricsCountLimit``),
one row per (node id, name), returned in primary-key order (node id, then name; 1.8.5
``run_store.go``, ``model/run.go``).

The UI (``frontend/src``, the same at every tag read): the run list's two columns are the
first two metric names in that order (1.8 only, ``RunList.tsx``); the Metrics table has a row
per node id, labelled with the template's display name (``CompareUtils
.singleRunToMetricsCompareProps``, ``ParserUtils.parseTaskDisplayNameByNodeId``); Compare
runs shows the first metric of each name (``multiRunMetricsCompareProps``); the Run output
tab and Compare runs load ``mlpipeline-ui-metadata`` only from artifacts whose ``s3
.s3Bucket`` is set (``WorkflowParser.loadNodeOutputPaths``), which Argo never writes and
only the side panel of a selected node adds (``getNodeInputOutputArtifacts``); the graph
hides Retry nodes (``WorkflowParser.isVirtual``), so each step has one side panel.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rehearsal.dag_scheduler import fnv32a
from rehearsal.kfp_releases import BY_NODE_ID, POD_NAMES_NODE_ID, Line
from rehearsal.workflow_identity import generate_name

METRICS_ARTIFACT = "mlpipeline-metrics"
UI_METADATA_ARTIFACT = "mlpipeline-ui-metadata"
MAX_RUN_METRICS = 50  # maxMetricsCountLimit
RUN_LIST_METRICS = 2  # RunList.tsx: metrics.slice(0, 2)
SIMULATED_NAMES = 1000
ON_EXIT = "onExit"
METRIC_NAME = re.compile(r"^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$")  # run_metric_util.go


@dataclasses.dataclass(frozen=True)
class Node:
    """A node of ``status.nodes`` that carries a task's KFP outputs."""

    id: str
    name: str
    display_name: str  # Argo's displayName
    type: str  # "Pod" or "Retry"
    template: str
    task: Mapping[str, Any]  # the run.json task
    artifacts: tuple[Mapping[str, Any], ...]  # outputs.artifacts as Argo records them


def node_id(workflow_name: str, node_name: str) -> str:
    """Argo ``Workflow.NodeID``."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


def pod_name(workflow_name: str, node: Node, line: Line) -> str:
    """The name of a Pod node's pod (``GeneratePodName``; prefixes are far below the
    243-character cut)."""
    if line.pod_names == POD_NAMES_NODE_ID:
        return node.id
    return f"{workflow_name}-{node.template}-{fnv32a(node.name)}"


def retrieve_pod_name(workflow_name: str, node: Node) -> str:
    """KFP 2.2.0 to 2.14.4's ``RetrievePodName``: the v2 pod name, built from the node id's
    hash (its ``wf.APIVersion == "v1"`` test never holds for a Workflow object)."""
    if node.name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{node.template}-{node.id.rsplit('-', 1)[-1]}"


def _retried(task: Mapping[str, Any] | None, line: Line) -> bool:
    return line.template_retry is not None or bool(task and task.get("retry"))


def status_nodes(workflow_name: str, tasks: Sequence[Mapping[str, Any]], line: Line
                 ) -> list[Node]:
    """The nodes carrying KFP outputs, for every task that kept some (run.json ``outputs``):
    the pod's node, and the Retry node above it with a copy of the outputs."""
    by_path = {task["path"]: task for task in tasks}
    root = f"{workflow_name}(0)" if _retried(None, line) else workflow_name
    nodes = []
    for task in tasks:
        kept = [a for a in (METRICS_ARTIFACT, UI_METADATA_ARTIFACT)
                if a in (task.get("outputs") or {})]
        if not kept:
            continue
        if task["path"] == ON_EXIT:
            # The exit handler's node has no enclosing DAG: its display name is its name.
            name, display = f"{workflow_name}.{ON_EXIT}", f"{workflow_name}.{ON_EXIT}"
        else:
            parent, segments = root, task["path"].split(".")
            for i in range(len(segments) - 1):
                group = f"{parent}.{segments[i]}"
                parent = group + "(0)" if _retried(
                    by_path.get(".".join(segments[:i + 1])), line) else group
            name, display = f"{parent}.{segments[-1]}", segments[-1]
        template = task.get("template") or task["name"]
        retried = _retried(task, line)
        pod = Node(node_id(workflow_name, name + "(0)" if retried else name),
                   name + "(0)" if retried else name, display + ("(0)" if retried else ""),
                   "Pod", template, task, ())
        key = pod_name(workflow_name, pod, line)
        artifacts = tuple({"name": a, "s3": {"key": f"artifacts/{workflow_name}/{key}/{a}.tgz"}}
                          for a in kept)
        nodes.append(dataclasses.replace(pod, artifacts=artifacts))
        if retried:  # processNodeRetries: node.Outputs = lastChildNode.Outputs.DeepCopy()
            nodes.append(Node(node_id(workflow_name, name), name, display, "Retry", template,
                              task, artifacts))
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
    all (the JSON parser refuses the whole file) or some (the API server refuses a name)."""
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


@dataclasses.dataclass
class StoredMetrics:
    """The run's metrics as the API server returns them."""

    rows: list[dict[str, Any]]  # each metric with "nodeId" and its run.json "task"
    reported: int  # metrics found on the nodes the server could read
    unread: int  # nodes with a metrics artifact the server found no artifact for


def stored_metrics(workflow_name: str, tasks: Sequence[Mapping[str, Any]],
                   metrics_by_task: Mapping[str, list[dict[str, Any]]], line: Line
                   ) -> StoredMetrics:
    nodes = status_nodes(workflow_name, tasks, line)
    by_id = {node.id: node for node in nodes}
    rows, unread = [], 0
    for node in nodes:
        if not any(a["name"] == METRICS_ARTIFACT for a in node.artifacts):
            continue
        asked = node.id if line.metrics_request == BY_NODE_ID else retrieve_pod_name(
            workflow_name, node)
        if asked not in by_id:  # Status.Nodes[asked]: not found, nothing reported
            unread += 1
            continue
        for metric in metrics_by_task.get(node.task["name"], []):
            rows.append({**metric, "nodeId": asked, "task": node.task})
    reported = len(rows)
    keyed: dict[tuple[str, str], dict[str, Any]] = {}
    for metric in rows:  # a repeated (node, name) is refused
        keyed.setdefault((metric["nodeId"], metric["name"]), metric)
    ordered = [keyed[key] for key in sorted(keyed, key=lambda k: (k[0], k[1].lower()))]
    return StoredMetrics(ordered[:MAX_RUN_METRICS], reported, unread)


def run_list_columns(metrics: Sequence[Mapping[str, Any]], line: Line) -> list[str]:
    """``RunUtils.extractMetricMetadata`` of one run, cut to two columns; none from 2.0."""
    if not line.run_list_metrics:
        return []
    return list(dict.fromkeys(m["name"] for m in metrics))[:RUN_LIST_METRICS]


def simulate_columns(tasks: Sequence[Mapping[str, Any]],
                     metrics_by_task: Mapping[str, list[dict[str, Any]]], prefix: str,
                     line: Line, count: int = SIMULATED_NAMES, seed: int = 8
                     ) -> Counter[tuple[str, ...]]:
    """The run list's columns over ``count`` workflow names Kubernetes could generate."""
    rng = random.Random(seed)
    seen: Counter[tuple[str, ...]] = Counter()
    for _ in range(count):
        name = generate_name(prefix, rng)
        rows = stored_metrics(name, tasks, metrics_by_task, line).rows
        seen[tuple(run_list_columns(rows, line))] += 1
    return seen


def metrics_table(metrics: Sequence[Mapping[str, Any]]
                  ) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``singleRunToMetricsCompareProps``: the metric names, and a row per node id
    (labelled with the step's display name) of display strings."""
    names = list(dict.fromkeys(m["name"] for m in metrics))
    by_node: dict[str, dict[str, str]] = {}
    labels: dict[str, str] = {}
    for metric in metrics:
        by_node.setdefault(metric["nodeId"], {})[metric["name"]] = metric_display(metric)
        labels[metric["nodeId"]] = metric["task"].get("display_name") or metric["task"]["name"]
    return names, [(labels[nid], [values.get(n, "") for n in names])
                   for nid, values in by_node.items()]


def compare_metrics(metrics: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping]]:
    """``multiRunMetricsCompareProps`` for one run: each name and the first metric of it."""
    first: dict[str, Mapping[str, Any]] = {}
    for metric in metrics:
        first.setdefault(metric["name"], metric)
    return list(first.items())


def load_node_output_paths(node: Node) -> list[str]:
    """``WorkflowParser.loadNodeOutputPaths``: the keys of ui-metadata artifacts whose
    location names a bucket."""
    return [a["s3"]["key"] for a in node.artifacts
            if a["name"] == UI_METADATA_ARTIFACT and a.get("s3", {}).get("s3Bucket")]


def run_output_cards(nodes: Sequence[Node], opened: Node | None = None) -> list[Node]:
    """The nodes whose ui-metadata the Run output tab (and Compare runs) loads, in node-id
    order (``loadAllOutputPathsWithStepNames`` over the id-sorted status). ``opened``: a
    node whose side panel is open at a Refresh (``getNodeInputOutputArtifacts`` then adds
    the bucket to its artifacts)."""
    found = []
    for node in sorted(nodes, key=lambda n: n.id):
        if opened is not None and node.id == opened.id:
            node = dataclasses.replace(node, artifacts=tuple(
                {**a, "s3": {**a["s3"], "s3Bucket": {"bucket": "mlpipeline"}}}
                for a in node.artifacts))
        if load_node_output_paths(node):
            found.append(node)
    return found


def side_panels(nodes: Sequence[Node]) -> list[Node]:
    """The nodes the graph shows (Retry nodes hidden) that have UI metadata: one per step."""
    return [n for n in nodes if n.type != "Retry"
            and any(a["name"] == UI_METADATA_ARTIFACT for a in n.artifacts)]
