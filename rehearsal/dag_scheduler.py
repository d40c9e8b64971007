"""The DAG scheduler: tasks run once their ``dependencies`` are done, one at a time, in a
deterministic topological order (alphabetical among ready tasks), as Argo 3.3 would order
them. Argo would run ready tasks in parallel; the statuses come out the same because a
failure stops only its descendants.

A false ``when`` marks a task Skipped (a skipped dependency counts as done); a failed task
marks every task downstream of it Omitted and every other task still runs, whatever the
DAG's ``failFast``: in Argo v3.3.8 ``failFast`` is read only when the DAG's own phase is
assessed (``workflow/controller/dag.go`` ``assessDAGPhase``, after ``executeDAGTask`` has
started every ready task), so it decides when a DAG with a failure is marked Failed, never
which tasks start. ``spec.onExit`` runs at the end with ``{{workflow.status}}`` and
``{{workflow.failures}}`` set as Argo sets them (:func:`argo_failures`); once the
workflow's ``activeDeadlineSeconds`` passes no further task starts or is recorded.
Container tasks are handed to :class:`StepExecutor`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rehearsal.argo_when import WhenError, evaluate_when
from rehearsal.path_map import safe
from rehearsal.run_record import (
    DISPLAY_NAME_ANNOTATION,
    FAILED,
    OMITTED,
    SKIPPED,
    SUCCEEDED,
    RunResult,
    StepRecord,
)
from rehearsal.step_executor import PathLike, StepExecutor, WorkflowDeadlineExceeded
from rehearsal.substitution import TASK_OUTPUT, Unresolved, go_json, go_quote, substitute
from rehearsal.workflow_check import output_parameters, topological_order, validate
from rehearsal.workflow_identity import new_identity

FAKE_NAMESPACE = "kubeflow"


def fnv32a(text: str) -> int:
    """Argo's pod-name hash of a node name."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def argo_failures(workflow_name: str, entrypoint: str, status: str,
                  steps: list[StepRecord]) -> str:
    """``{{workflow.failures}}`` as Argo hands it to an exit handler: every Failed node
    (the workflow's root node too) as ``{displayName, message, templateName, phase,
    podName, finishedAt}``, JSON-encoded and then Go-quoted (``strconv.Quote``), ``null``
    for none (workflow/controller/operator.go ``failedNodeStatus``, v3.3.8 to v4.0.5).
    A failed DAG has no message (dag.go marks it Failed without one); podName is the node
    id, as in v3.3 (v3.4 on put the pod's name there). Argo lists the nodes in Go map
    order, i.e. any; here in the order they ended."""
    nodes = []
    for step in steps:
        if step.status != FAILED:
            continue
        node_name = f"{workflow_name}.{step.path}"
        nodes.append({"displayName": step.name,
                      "message": step.message if step.kind == "container" else "",
                      "templateName": step.template, "phase": FAILED,
                      "podName": f"{workflow_name}-{fnv32a(node_name)}",
                      "finishedAt": step.finished_at})
    if status == FAILED:
        nodes.append({"displayName": workflow_name, "message": "", "templateName": entrypoint,
                      "phase": FAILED, "podName": workflow_name,
                      "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return go_quote(go_json(nodes or None))


@dataclasses.dataclass
class Node:
    name: str  # Argo node name: workflow name, then task names, joined by "."
    path: str
    depth: int


class DagScheduler:
    """Walks the entrypoint DAG (and onExit) in order and records every task."""

    def __init__(self, workflow: Mapping[str, Any], *, run_dir: Path,
                 host_paths: Mapping[str, PathLike] | Callable[[str], PathLike] | None,
                 claims: dict[str, PathLike], per_step_dirs: list[str],
                 base_env: dict[str, str], secrets: dict[tuple[str, str], str],
                 path_prefix: list[str], executables: dict[str, str],
                 echo: Callable[[str], None] | None, masked: list[str],
                 progress: Callable[[str], None] | None = None):
        self.templates = validate(workflow)
        self.spec = workflow["spec"]
        # Fresh for every run, as on a cluster: two rehearsals are two runs to the claims.
        self.name, uid = new_identity(workflow.get("metadata") or {})
        self.run_dir = run_dir
        self.executor = StepExecutor(
            self.spec, host_paths=host_paths, claims=claims, per_step_dirs=per_step_dirs,
            base_env=base_env, secrets=secrets, path_prefix=path_prefix,
            executables=executables, echo=echo, masked=masked)
        self.echo = echo
        self.progress = progress
        self.steps: list[StepRecord] = []
        self.globals: dict[str, str] = {
            "workflow.name": self.name,
            "workflow.uid": uid,
            "workflow.namespace": FAKE_NAMESPACE,
            "workflow.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "workflow.status": "Running",
        }
        self.deadline: float | None = None
        self.deadline_hit = False
        self.started: dict[int, float] = {}  # id(StepRecord) -> time.monotonic()
        self.executor.check_configuration(self.templates)

    def run(self, arguments: dict[str, str | int | float]) -> RunResult:
        defaults = {p["name"]: str(p.get("value", ""))
                    for p in (self.spec.get("arguments") or {}).get("parameters") or []}
        for key in arguments:
            if key not in defaults:
                raise ValueError(f"unknown pipeline parameter {key!r}; the pipeline has: "
                                 f"{', '.join(defaults) or 'none'}")
        params = {**defaults, **{k: str(v) for k, v in arguments.items()}}
        self.globals.update({f"workflow.parameters.{k}": v for k, v in params.items()})
        if "activeDeadlineSeconds" in self.spec:
            self.deadline = time.monotonic() + int(self.spec["activeDeadlineSeconds"])

        entrypoint = self.spec["entrypoint"]
        if "dag" in self.templates[entrypoint]:
            status, message, _ = self._run_template(
                entrypoint, params, Node(self.name, "", -1), None)
        else:
            node = Node(self.name, entrypoint, 0)
            record = self._new_record(entrypoint, node, entrypoint)
            status, message, _ = self._run_template(entrypoint, params, node, record)
            self._finish(record, status, message)
        if self.deadline_hit:
            status, message = FAILED, (f"workflow activeDeadlineSeconds "
                                       f"({self.spec['activeDeadlineSeconds']}) exceeded")
        elif status == FAILED:
            failed = [s.path for s in self.steps if s.status == FAILED]
            message = "failed: " + ", ".join(  # the failures, not the groups holding them
                p for p in failed if not any(q.startswith(p + ".") for q in failed))
        if self.spec.get("onExit"):
            self.globals["workflow.status"] = status
            self.globals["workflow.failures"] = argo_failures(
                self.name, self.spec["entrypoint"], status, self.steps)
            self.deadline = None
            exit_node = Node(f"{self.name}.onExit", "onExit", 0)
            record = self._new_record("onExit", exit_node, self.spec["onExit"])
            exit_status, exit_message, _ = self._run_template(
                self.spec["onExit"], params, exit_node, record)
            self._finish(record, exit_status, exit_message)
            if exit_status != SUCCEEDED and status == SUCCEEDED:
                status, message = FAILED, f"exit handler failed: {exit_message}"
        return RunResult(self.name, status, message, self.steps, self.run_dir)

    # -- templates ----------------------------------------------------------------------

    def _run_template(self, name: str, args: Mapping[str, str], node: Node,
                      record: StepRecord | None) -> tuple[str, str, dict[str, str]]:
        """Run a template with its arguments; returns (status, message, output parameters)."""
        tmpl = self.templates[name]
        inputs = {}
        for p in (tmpl.get("inputs") or {}).get("parameters") or []:
            value = args.get(p["name"], p.get("default", p.get("value")))
            if value is None:
                return FAILED, f"inputs.parameters.{p['name']} was not supplied", {}
            inputs[f"inputs.parameters.{p['name']}"] = str(value)
        if "dag" in tmpl:
            return self._run_dag(tmpl, inputs, node)
        assert record is not None
        pod_name = f"{self.name}-{fnv32a(node.name)}"
        step_dir = self.run_dir / f"{len(self.steps):03d}-{safe(node.path)}"
        if self.progress is not None:
            self.progress(f"{record.display_name}: started")
        try:
            return self.executor.run(tmpl, {**self.globals, **inputs, "pod.name": pod_name},
                                     step_dir, record, self._workflow_remaining())
        except WorkflowDeadlineExceeded as e:
            self.deadline_hit = True
            return FAILED, str(e), {}

    def _run_dag(self, tmpl: Mapping[str, Any], inputs: Mapping[str, str],
                 node: Node) -> tuple[str, str, dict[str, str]]:
        scope = {**self.globals, **inputs}
        dag = substitute(tmpl["dag"], scope, keep=lambda tag: tag.startswith("tasks."))
        tasks = {t["name"]: t for t in dag.get("tasks") or []}
        status: dict[str, str] = {}
        outputs: dict[str, str] = {}  # "tasks.T.outputs.parameters.P" -> value
        for task_name in topological_order(tasks, tmpl["name"]):
            if self._deadline_passed():
                break
            task = tasks[task_name]
            child = Node(f"{node.name}.{task_name}",
                          f"{node.path}.{task_name}" if node.path else task_name,
                          node.depth + 1)
            record = self._new_record(task_name, child, task["template"])
            not_done = [d for d in task.get("dependencies") or []
                        if status[d] not in (SUCCEEDED, SKIPPED)]
            if not_done:
                status[task_name] = OMITTED
                self._finish(record, OMITTED, "upstream "
                             + ", ".join(f"{d} {status[d].lower()}" for d in not_done))
                continue
            try:
                resolved = substitute({k: task.get(k) for k in ("arguments", "when")},
                                       outputs, keep=lambda tag: False)
            except Unresolved as e:
                producer = TASK_OUTPUT.fullmatch(e.tag)
                status[task_name] = FAILED
                self._finish(record, FAILED, f"unable to resolve {{{{{e.tag}}}}}: task "
                             f"{producer.group(1) if producer else '?'} produced no outputs")
                continue
            if resolved["when"]:
                try:
                    proceed = evaluate_when(resolved["when"])
                except WhenError as e:
                    status[task_name] = FAILED
                    self._finish(record, FAILED, str(e))
                    continue
                if not proceed:
                    status[task_name] = SKIPPED
                    self._finish(record, SKIPPED, f"when '{resolved['when']}' evaluated false")
                    continue
            args = {p["name"]: str(p.get("value", ""))
                    for p in (resolved["arguments"] or {}).get("parameters") or []}
            task_status, message, task_outputs = self._run_template(
                task["template"], args, child, record)
            status[task_name] = task_status
            self._finish(record, task_status, message)
            outputs.update({f"tasks.{task_name}.outputs.parameters.{k}": v
                            for k, v in task_outputs.items()})
        if self.deadline_hit:
            return FAILED, "workflow deadline exceeded", {}
        failed = sorted(n for n, s in status.items() if s == FAILED)
        if failed:
            return FAILED, f"failed: {', '.join(failed)}", {}
        dag_outputs = {}
        for param in output_parameters(tmpl):
            ref = substitute(param["valueFrom"]["parameter"], scope,
                              keep=lambda tag: tag.startswith("tasks."))
            try:
                dag_outputs[param["name"]] = substitute(ref, outputs, keep=lambda tag: False)
            except Unresolved as e:
                if "default" not in param["valueFrom"]:
                    return FAILED, (f"output parameter {param['name']}: unable to resolve "
                                    f"{{{{{e.tag}}}}}"), {}
                dag_outputs[param["name"]] = str(param["valueFrom"]["default"])
        return SUCCEEDED, "", dag_outputs

    def _workflow_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.0)

    def _deadline_passed(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline_hit = True
        return self.deadline_hit

    # -- records ------------------------------------------------------------------------

    def _new_record(self, task_name: str, node: Node, template: str) -> StepRecord:
        tmpl = self.templates[template]
        annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
        record = StepRecord(
            name=task_name, path=node.path, template=template,
            display_name=annotations.get(DISPLAY_NAME_ANNOTATION, template),
            kind="dag" if "dag" in tmpl else "container", depth=node.depth)
        self.started[id(record)] = time.monotonic()
        self.steps.append(record)
        return record

    def _finish(self, record: StepRecord, status: str, message: str) -> None:
        record.status = status
        record.message = message
        record.duration = time.monotonic() - self.started[id(record)]
        record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        shown = record.kind == "container" or status != SUCCEEDED
        if self.echo is not None and shown:
            self.echo(f"[{record.display_name}] {status}" + (f": {message}" if message else ""))
        if self.progress is not None and shown:
            ran = record.kind == "container" and status in (SUCCEEDED, FAILED)
            self.progress(f"{record.display_name}: {status}"
                          + (f" in {record.duration:.1f} s" if ran else ""))
