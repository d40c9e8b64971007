"""Independent validators for a compiled workflow: Argo 3.3's API models and Kubernetes'
own schemas. Shared by the tests of every compile option."""

from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
from argo_workflows.api_client import ApiClient
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow import (
    IoArgoprojWorkflowV1alpha1Workflow,
)

# The oldest and newest Kubernetes schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")

# Template fields Argo 3.3 declares as IntOrString.
_INT_OR_STRING = (
    ("retryStrategy", "limit"), ("retryStrategy", "backoff", "factor"), ("activeDeadlineSeconds",),
)

_PLACEHOLDER = re.compile(r"\{\{inputs\.parameters\.([A-Za-z0-9_-]+)\}\}")


def argo_problems(workflow: dict) -> str | None:
    """None if the Argo Workflows 3.3 API models accept the workflow, else the reason."""

    # Argo declares these template fields IntOrString (2 and "2" are both valid); the SDK's
    # generated models type every IntOrString as str, so give them the string form.
    workflow = copy.deepcopy(workflow)
    for template in workflow["spec"]["templates"]:
        for path in _INT_OR_STRING:
            *parents, field = path
            holder = template
            for name in parents:
                holder = holder.get(name, {})
            if isinstance(holder.get(field), int):
                holder[field] = str(holder[field])

    class Response:
        data = json.dumps(workflow)

    try:
        ApiClient().deserialize(Response(), (IoArgoprojWorkflowV1alpha1Workflow,), True)
    except Exception as error:  # the SDK raises several types; the message is what counts
        return str(error).strip().splitlines()[-1]
    return None


# What Argo's controller adds to every pod of a container template with the emissary
# executor: workflow/controller/workflowpod.go (createWorkflowPod, createVolumes,
# newExecContainer, addOutputArtifactsVolumes), alike in v3.5.14, v3.7.3 and v4.0.5;
# workflow/common/common.go for the names and paths. Environment variables and the
# executor's log options are left out.
_ARGO_VOLUMES = [{"name": "var-run-argo", "emptyDir": {}}, {"name": "tmp-dir-argo", "emptyDir": {}}]
_VAR_RUN_ARGO = {"name": "var-run-argo", "mountPath": "/var/run/argo"}
_MAIN_FILESYSTEM = "/mainctrfs"  # where the wait container sees the main one's mounts
EXECUTOR_IMAGE = "quay.io/argoproj/argoexec"  # a stand-in: installs name their own
# Strategic-merge keys of the PodSpec lists a podSpecPatch may touch (k8s.io/api core/v1
# patchMergeKey tags); any other list is replaced whole.
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
               "volumes": "name", "env": "name", "volumeMounts": "mountPath",
               "ports": "containerPort"}


def _strategic_merge(base, patch, key: str = ""):
    """A podSpecPatch applied as Argo's util.ApplyPodSpecPatch does (strategic merge)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = _strategic_merge(base.get(name), value, name)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        merged = list(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged)
                          if old.get(merge_key) == item.get(merge_key)), None)
            if index is None:
                merged.append(item)
            else:
                merged[index] = _strategic_merge(merged[index], item)
        return merged
    return copy.deepcopy(patch)


def _executor_container(name: str, security_context: dict | None, mounts: list) -> dict:
    container = {"name": name, "image": EXECUTOR_IMAGE, "command": ["argoexec", name],
                 "volumeMounts": mounts}
    if security_context is not None:
        container["securityContext"] = copy.deepcopy(security_context)
    return container


def pods_with_defaults(workflow: dict, executor_security_context: dict | None = None) -> dict:
    """The Pod each container template becomes when run with the form's defaults, as Argo's
    controller creates it: placeholders substituted; Argo's ``init`` and ``wait``
    containers, whose securityContext is the controller configmap's ``executor`` one
    (``executor_security_context``), and its two emptyDir volumes added; the template's
    securityContext, else the workflow's, on the pod; podSpecPatch merged last."""
    defaults = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}

    def substitute(value):
        if isinstance(value, str):
            # Values passed between steps have no default: a stand-in shows where they go.
            return _PLACEHOLDER.sub(lambda m: defaults.get(m.group(1), f"<{m.group(1)}>"), value)
        if isinstance(value, list):
            return [substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: substitute(v) for k, v in value.items()}
        return value

    workflow_spec = workflow["spec"]
    pods = {}
    for template in workflow_spec["templates"]:
        if "container" not in template:
            continue
        main = substitute(copy.deepcopy(template["container"]))
        main["name"] = "main"
        main["command"] = ["/var/run/argo/argoexec", "emissary", "--", *main.get("command", [])]
        wait_mounts = [dict(m, mountPath=_MAIN_FILESYSTEM + m["mountPath"], readOnly=False)
                       for m in main.get("volumeMounts", [])]
        wait_mounts += [{"name": "tmp-dir-argo", "mountPath": "/tmp", "subPath": "0"},
                        _VAR_RUN_ARGO]
        main["volumeMounts"] = [*main.get("volumeMounts", []), _VAR_RUN_ARGO]
        spec = {
            "initContainers": [
                _executor_container("init", executor_security_context, [_VAR_RUN_ARGO])],
            "containers": [
                _executor_container("wait", executor_security_context, wait_mounts), main],
            "volumes": [*_ARGO_VOLUMES, *substitute(template.get("volumes", []))],
            "restartPolicy": "Never",
        }
        for key in ("nodeSelector", "tolerations", "affinity"):
            if key in template:
                spec[key] = substitute(template[key])
        if "activeDeadlineSeconds" in template:
            spec["activeDeadlineSeconds"] = int(substitute(str(template["activeDeadlineSeconds"])))
        for key in ("imagePullSecrets", "hostNetwork"):
            if key in workflow_spec:
                spec[key] = workflow_spec[key]
        context = template.get("securityContext", workflow_spec.get("securityContext"))
        if context is not None:
            spec["securityContext"] = context
        patch = json.loads(substitute(template.get("podSpecPatch", "{}")))
        metadata = template.get("metadata", {})
        pods[template["name"]] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": template["name"],
                         "annotations": metadata.get("annotations", {}),
                         "labels": metadata.get("labels", {})},
            "spec": _strategic_merge(spec, patch),
        }
    return pods


def kubernetes_problems(pod: dict) -> list:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{version}: {error.message} at {list(error.path)}")
    return problems
