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


def pods_with_defaults(workflow: dict) -> dict:
    """The Pod each container template becomes when run with the form's defaults:
    placeholders substituted as Argo does, then podSpecPatch merged into the container."""
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

    pods = {}
    for template in workflow["spec"]["templates"]:
        if "container" not in template:
            continue
        container = substitute(copy.deepcopy(template["container"]))
        container["name"] = "main"
        patch = json.loads(substitute(template.get("podSpecPatch", "{}")))
        for patched in patch.get("containers", []):
            limits = patched.get("resources", {}).get("limits", {})
            container.setdefault("resources", {}).setdefault("limits", {}).update(limits)
        spec = {"containers": [container], "restartPolicy": "Never"}
        for key in ("volumes", "nodeSelector", "tolerations", "affinity"):
            if key in template:
                spec[key] = substitute(template[key])
        if "activeDeadlineSeconds" in template:
            spec["activeDeadlineSeconds"] = int(substitute(str(template["activeDeadlineSeconds"])))
        if workflow["spec"].get("imagePullSecrets"):
            spec["imagePullSecrets"] = workflow["spec"]["imagePullSecrets"]
        pods[template["name"]] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": template["name"],
                         "annotations": template.get("metadata", {}).get("annotations", {})},
            "spec": spec,
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
