"""The compiled workflow is valid for Argo 3.3 and for Kubernetes."""

from __future__ import annotations

import copy

from validation import argo_problems, kubernetes_problems, pods_with_defaults


def test_argo_3_3_accepts_the_workflow(default_workflow):
    assert argo_problems(default_workflow.doc) is None


def test_argo_validator_rejects_a_broken_workflow(default_workflow):
    broken = copy.deepcopy(default_workflow.doc)
    broken["spec"]["templates"][0]["container"]["volumeMounts"][0]["mountPath"] = 5
    assert "mount_path" in argo_problems(broken)


def test_every_step_is_a_valid_kubernetes_pod(default_workflow):
    pods = pods_with_defaults(default_workflow.doc)
    assert len(pods) == len(default_workflow.container_templates)
    for name, pod in pods.items():
        assert kubernetes_problems(pod) == [], name
    spec = pods["train-model"]["spec"]
    # Argo's wait container runs beside the step's own, named main; podSpecPatch reached it.
    assert [c["name"] for c in spec["containers"]] == ["wait", "main"]
    assert spec["containers"][1]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert spec["volumes"][-1]["hostPath"]["path"] == "/mnt/workspace"


def test_kubernetes_validator_rejects_an_unknown_field(default_workflow):
    pod = pods_with_defaults(default_workflow.doc)["train-model"]
    pod["spec"]["containers"][1]["volumeMountz"] = []
    assert kubernetes_problems(pod)
