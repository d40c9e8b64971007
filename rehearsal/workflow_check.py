"""Static checks of a compiled workflow: everything reachable from the entrypoint and onExit
is checked before anything runs, so an unsupported construct or a reference Argo would not
resolve fails up front with :class:`UnsupportedWorkflowError` naming the template and field.
Also the checks Kubernetes applies to a pod's resources, and the DAG order.
"""

from __future__ import annotations

import collections
import heapq
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from rehearsal.substitution import (
    EXIT_HANDLER_VARIABLES,
    TAG,
    TASK_OUTPUT,
    WORKFLOW_VARIABLES,
    strings,
)


class UnsupportedWorkflowError(Exception):
    """The workflow uses a construct this runner does not execute, or is invalid for Argo."""


_SPEC_KEYS = {
    "entrypoint", "templates", "arguments", "onExit", "activeDeadlineSeconds", "volumes",
    # scheduling and bookkeeping, irrelevant on one host
    "serviceAccountName", "parallelism", "imagePullSecrets", "nodeSelector", "tolerations",
    "affinity", "securityContext", "podGC", "ttlStrategy", "ttlSecondsAfterFinished",
    "priority", "priorityClassName", "podPriorityClassName", "schedulerName",
    "podMetadata", "podDisruptionBudget", "hostNetwork", "dnsPolicy", "dnsConfig",
    "artifactRepositoryRef", "automountServiceAccountToken", "executor",
}
_TEMPLATE_KEYS = {
    "name", "container", "dag", "inputs", "outputs", "metadata", "volumes", "podSpecPatch",
    "activeDeadlineSeconds", "retryStrategy",
    "nodeSelector", "tolerations", "affinity", "securityContext", "serviceAccountName",
    "automountServiceAccountToken", "priorityClassName", "schedulerName", "hostAliases",
    "archiveLocation", "parallelism",
}
_CONTAINER_KEYS = {
    "name", "image", "command", "args", "env", "resources", "volumeMounts", "workingDir",
    "imagePullPolicy", "securityContext", "ports", "terminationMessagePath",
    "terminationMessagePolicy",
}
_TASK_KEYS = {"name", "template", "arguments", "dependencies", "when"}
_CONTAINER_ONLY_VARIABLES = ("pod.name",)


def fail(template: str, field: str, problem: str) -> UnsupportedWorkflowError:
    return UnsupportedWorkflowError(f"template {template!r}, {field}: {problem}")


def _input_names(tmpl: Mapping[str, Any]) -> list[str]:
    return [p["name"] for p in (tmpl.get("inputs") or {}).get("parameters") or []]


def output_parameters(tmpl: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((tmpl.get("outputs") or {}).get("parameters") or [])


def _check_supplied(tmpl: Mapping[str, Any], supplied: set[str], where: str) -> None:
    for p in (tmpl.get("inputs") or {}).get("parameters") or []:
        if p["name"] not in supplied and "default" not in p and "value" not in p:
            raise UnsupportedWorkflowError(
                f"{where}: input parameter {p['name']!r} of template {tmpl['name']!r} "
                "is not supplied")


def _check_tags(template: str, value: Any, where: str,
                allowed: Callable[[str], str | None]) -> None:
    """``allowed(tag)`` returns None if the tag resolves here, else why it does not."""
    for field, text in strings(value, where):
        for match in TAG.finditer(text):
            tag = match.group(1).strip()
            problem = allowed(tag)
            if problem:
                raise fail(template, field, f"{{{{{tag}}}}}: {problem}")


def validate(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if workflow.get("kind") != "Workflow":
        raise UnsupportedWorkflowError(f"kind is {workflow.get('kind')!r}, not 'Workflow'")
    spec = workflow.get("spec") or {}
    for key in spec:
        if key not in _SPEC_KEYS:
            raise UnsupportedWorkflowError(f"spec.{key} is not supported")
    templates: dict[str, dict[str, Any]] = {}
    for tmpl in spec.get("templates") or []:
        if tmpl["name"] in templates:
            raise UnsupportedWorkflowError(f"template {tmpl['name']!r} is defined twice")
        templates[tmpl["name"]] = tmpl
    global_params = {p["name"] for p in (spec.get("arguments") or {}).get("parameters") or []}
    roots = [spec.get("entrypoint"), spec.get("onExit")]
    if roots[0] not in templates:
        raise UnsupportedWorkflowError(f"spec.entrypoint {roots[0]!r} is not a template")
    if roots[1] is not None and roots[1] not in templates:
        raise UnsupportedWorkflowError(f"spec.onExit {roots[1]!r} is not a template")
    for root in filter(None, roots):
        _check_supplied(templates[root], global_params, f"spec.arguments for {root!r}")

    def allowed_common(tag: str, tmpl: Mapping[str, Any]) -> str | None:
        if tag.startswith("inputs.parameters."):
            name = tag[len("inputs.parameters."):]
            return None if name in _input_names(tmpl) else "no such input parameter"
        if tag.startswith("workflow.parameters."):
            name = tag[len("workflow.parameters."):]
            return None if name in global_params else "no such workflow parameter"
        if tag in WORKFLOW_VARIABLES:
            return None
        if tag in EXIT_HANDLER_VARIABLES:
            return None if spec.get("onExit") else "set only in a workflow with spec.onExit"
        return "not supported by local_runner"

    seen: set[str] = set()
    pending = [r for r in roots if r]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        tmpl = templates[name]
        for key in tmpl:
            if key not in _TEMPLATE_KEYS:
                raise fail(name, key, "not supported by local_runner")
        kinds = [k for k in ("container", "dag") if k in tmpl]
        if len(kinds) != 1:
            raise fail(name, "kind", "only container and dag templates can run locally")
        if (tmpl.get("inputs") or {}).get("artifacts"):
            raise fail(name, "inputs.artifacts", "input artifacts are not supported")
        if kinds[0] == "container":
            _validate_container(tmpl, spec)
            _check_tags(name, tmpl, "", lambda tag, t=tmpl: (
                None if tag in _CONTAINER_ONLY_VARIABLES else allowed_common(tag, t)))
        else:
            pending += _validate_dag(tmpl, templates, allowed_common)
    return {name: templates[name] for name in seen}


def _validate_container(tmpl: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    name = tmpl["name"]
    container = tmpl["container"]
    for key in container:
        if key not in _CONTAINER_KEYS:
            raise fail(name, f"container.{key}", "not supported by local_runner")
    command = container.get("command")
    if not command:
        raise fail(name, "container.command",
                    "missing: the image's entrypoint cannot run locally")
    for field in ("command", "args"):
        if not all(isinstance(a, str) for a in container.get(field) or []):
            raise fail(name, f"container.{field}", "every item must be a string")
    for env in container.get("env") or []:
        value_from = env.get("valueFrom")
        if value_from is not None and set(value_from) != {"secretKeyRef"}:
            raise fail(name, f"container.env[{env['name']}].valueFrom",
                        "only secretKeyRef is supported")
    if "{{" in json.dumps(container.get("resources") or {}):
        raise fail(name, "container.resources",
                    "Argo does not substitute parameters in resource quantities: "
                    "use podSpecPatch (op.container.add_resource_limit)")
    volumes = {v["name"]: v for v in (spec.get("volumes") or []) + (tmpl.get("volumes") or [])}
    for volume in volumes.values():
        kinds = set(volume) - {"name"}
        if kinds not in ({"hostPath"}, {"persistentVolumeClaim"}, {"emptyDir"}):
            raise fail(name, f"volumes[{volume['name']}]",
                        f"{', '.join(sorted(kinds))} volumes are not supported")
        host_type = (volume.get("hostPath") or {}).get("type", "")
        if host_type not in ("", "Directory", "DirectoryOrCreate"):
            raise fail(name, f"volumes[{volume['name']}].hostPath.type",
                        f"{host_type!r} is not supported")
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise fail(name, f"container.volumeMounts[{mount['name']}]", "no such volume")
    for param in output_parameters(tmpl):
        if not (param.get("valueFrom") or {}).get("path"):
            raise fail(name, f"outputs.parameters[{param['name']}]",
                        "only valueFrom.path is supported")
    for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
        if not art.get("path"):
            raise fail(name, f"outputs.artifacts[{art['name']}]", "needs a path")


def _validate_dag(tmpl: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]],
                  allowed_common: Callable[[str, Mapping[str, Any]], str | None]) -> list[str]:
    name = tmpl["name"]
    for key in tmpl["dag"]:
        if key not in ("tasks", "failFast"):
            raise fail(name, f"dag.{key}", "not supported by local_runner")
    if not isinstance(tmpl["dag"].get("failFast", False), bool):
        raise fail(name, "dag.failFast", "must be true or false")
    tasks = {t["name"]: t for t in tmpl["dag"].get("tasks") or []}
    for task in tasks.values():
        where = f"dag.tasks[{task['name']}]"
        for key in task:
            if key not in _TASK_KEYS:
                raise fail(name, f"{where}.{key}", "not supported by local_runner")
        if task.get("template") not in templates:
            raise fail(name, f"{where}.template", f"no template {task.get('template')!r}")
        for dep in task.get("dependencies") or []:
            if dep not in tasks:
                raise fail(name, f"{where}.dependencies", f"no task {dep!r}")
        args = (task.get("arguments") or {})
        if args.get("artifacts"):
            raise fail(name, f"{where}.arguments.artifacts", "artifacts are not supported")
        _check_supplied(templates[task["template"]],
                        {p["name"] for p in args.get("parameters") or []}, f"template "
                        f"{name!r}, {where}.arguments")
    topological_order(tasks, name)

    def allowed(tag: str) -> str | None:
        match = TASK_OUTPUT.fullmatch(tag)
        if not match:
            return allowed_common(tag, tmpl)
        task_name, param = match.groups()
        if task_name not in tasks:
            return f"no task {task_name!r} in this DAG"
        producer = templates[tasks[task_name]["template"]]
        if param not in {p["name"] for p in output_parameters(producer)}:
            return (f"template {producer['name']!r} declares no output parameter {param!r} "
                    "(Argo rejects this workflow)")
        return None

    _check_tags(name, tmpl.get("dag"), "dag", allowed)
    for param in output_parameters(tmpl):
        if not (param.get("valueFrom") or {}).get("parameter"):
            raise fail(name, f"outputs.parameters[{param['name']}]",
                        "a DAG output needs valueFrom.parameter")
    _check_tags(name, tmpl.get("outputs"), "outputs", allowed)
    if (tmpl.get("outputs") or {}).get("artifacts"):
        raise fail(name, "outputs.artifacts", "DAG output artifacts are not supported")
    return [t["template"] for t in tasks.values()]


def topological_order(tasks: Mapping[str, Mapping[str, Any]], template: str) -> list[str]:
    """Kahn's algorithm, taking the alphabetically first ready task each time."""
    waiting = {n: len(set(t.get("dependencies") or [])) for n, t in tasks.items()}
    dependents: dict[str, list[str]] = collections.defaultdict(list)
    for n, t in tasks.items():
        for dep in set(t.get("dependencies") or []):
            dependents[dep].append(n)
    ready = [n for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for d in dependents[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, d)
    if len(order) != len(tasks):
        raise fail(template, "dag.tasks", "the dependencies form a cycle")
    return order


# ---------------------------------------------------------------------------------------
# Kubernetes checks a pod would fail on

_STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage", "pods"}
# The pattern Kubernetes quotes when it rejects a quantity.
_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")


def resource_problem(name: str, quantity: str) -> str | None:
    if name not in _STANDARD_RESOURCES and not name.startswith("hugepages-") and "/" not in name:
        return (f"resource name {name!r} must be a standard resource type or fully "
                "qualified (e.g. nvidia.com/gpu)")
    if not _QUANTITY.fullmatch(quantity):
        return f"quantity {quantity!r} of {name} is not a valid Kubernetes quantity"
    if "/" in name and not quantity.isdigit():
        return f"extended resource {name} must be a whole number, not {quantity!r}"
    return None
