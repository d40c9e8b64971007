"""Pod Security: the pods of each build against the Baseline Pod Security Standard, which
Kubeflow 1.10.2+ profile namespaces and KFP >= 2.16's own namespace enforce
(docs/storage.md), and the shipped hostPath PersistentVolume that keeps the node directory."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO
from kubernetes.utils import parse_quantity
from pod_security import BASELINE_CHECKS, baseline_violations
from validation import kubernetes_problems, pods_with_defaults

import tao_iva_classification_cli as cli
import tao_iva_classification_pipeline as pipeline

# The securityContext of Argo's init and wait containers: the `executor` entry of the
# workflow-controller-configmap (kubeflow/pipelines,
# manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml). It
# sets none at 2.5.0 and 2.15.0, nor does kubeflow/manifests at v1.10.2 and v1.11.0
# (applications/pipeline/upstream/third-party/argo/base/, the same file); from 2.16.0
# (#12782; 2.17.0 alike) the executor runs as this:
EXECUTOR_CONTEXTS = {
    "kfp-2.5-to-2.15": None,
    "kfp-2.16-on": {
        "runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    },
}
EXAMPLE = REPO / "docs" / "examples" / "hostpath-pv.yaml"


def example() -> tuple:
    volume, claim = yaml.safe_load_all(EXAMPLE.read_text())
    return volume, claim


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """Compiled in-process through main: {(TAO version, claim or None): workflow}."""
    claim = example()[1]["metadata"]["name"]
    found = {}
    for version in ("3.0", "5.0"):
        for pvc in (None, claim):
            out = tmp_path_factory.mktemp("build") / "pipeline.yaml"
            args = ["-o", str(out), "--tao-version", version, "--image", "r.example.com/t:1"]
            if version == "5.0":
                args += ["--deploy-image", "r.example.com/d:1"]
            assert cli.main(args + (["--pvc", pvc] if pvc else [])) == 0
            found[version, pvc] = yaml.safe_load(out.read_text())
    return found


def pods(workflow: dict, executor: str) -> dict:
    built = pods_with_defaults(workflow, EXECUTOR_CONTEXTS[executor])
    templates = [t for t in workflow["spec"]["templates"] if "container" in t]
    assert len(built) == len(templates) >= 13
    for pod in built.values():  # Argo's own containers are checked with the step's
        names = [c["name"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]]
        assert names == ["init", "wait", "main"]
    return built


@pytest.mark.parametrize("executor", EXECUTOR_CONTEXTS)
@pytest.mark.parametrize("version", ["3.0", "5.0"])
def test_every_pod_of_a_claim_build_passes_every_baseline_check(builds, version, executor):
    claim = example()[1]["metadata"]["name"]
    for name, pod in pods(builds[version, claim], executor).items():
        assert baseline_violations(pod) == {}, name


@pytest.mark.parametrize("executor", EXECUTOR_CONTEXTS)
@pytest.mark.parametrize("version", ["3.0", "5.0"])
def test_the_hostpath_build_fails_only_the_hostpath_check(builds, version, executor):
    for name, pod in pods(builds[version, None], executor).items():
        assert baseline_violations(pod) == {"hostPathVolumes": pipeline.WORKSPACE_VOLUME}, name


def test_the_hardened_executor_is_a_valid_container(builds):
    pod = pods(builds["3.0", None], "kfp-2.16-on")["train-model"]
    assert kubernetes_problems(pod) == []
    init, wait = pod["spec"]["initContainers"][0], pod["spec"]["containers"][0]
    assert init["securityContext"] == wait["securityContext"] == EXECUTOR_CONTEXTS["kfp-2.16-on"]


def _set(path: str, value):
    """A change to a pod: set the dotted ``path`` (list items by index) to ``value``."""
    def change(pod: dict) -> None:
        *parents, last = path.split(".")
        holder = pod
        for key in parents:
            holder = holder[int(key)] if key.isdigit() else holder.setdefault(key, {})
        holder[int(last) if last.isdigit() else last] = value
    return change


MAIN = "spec.containers.1"  # Argo's wait container comes first
INIT = "spec.initContainers.0"
# (check ID or None when the change is allowed, the change): one forbidden value of each
# field the Baseline checks read, and the allowed values next to it.
CHANGES = [
    ("windowsHostProcess", _set("spec.securityContext.windowsOptions.hostProcess", True)),
    ("windowsHostProcess", _set(f"{INIT}.securityContext.windowsOptions.hostProcess", True)),
    (None, _set(f"{MAIN}.securityContext.windowsOptions.hostProcess", False)),
    ("hostNamespaces", _set("spec.hostNetwork", True)),
    ("hostNamespaces", _set("spec.hostPID", True)),
    ("hostNamespaces", _set("spec.hostIPC", True)),
    ("privileged", _set(f"{MAIN}.securityContext.privileged", True)),
    (None, _set(f"{MAIN}.securityContext.privileged", False)),
    ("capabilities_baseline", _set(f"{MAIN}.securityContext.capabilities.add", ["NET_RAW"])),
    ("capabilities_baseline", _set(f"{INIT}.securityContext.capabilities.add", ["SYS_ADMIN"])),
    (None, _set(f"{MAIN}.securityContext.capabilities.add", ["CHOWN", "SYS_CHROOT"])),
    (None, _set(f"{MAIN}.securityContext.capabilities.drop", ["ALL"])),
    ("hostPathVolumes", _set("spec.volumes.0", {"name": "h", "hostPath": {"path": "/"}})),
    ("hostPorts", _set(f"{MAIN}.ports", [{"containerPort": 80, "hostPort": 8080}])),
    (None, _set(f"{MAIN}.ports", [{"containerPort": 80, "hostPort": 0}])),
    ("hostProbesAndHostLifecycle",
     _set(f"{MAIN}.livenessProbe", {"httpGet": {"host": "10.0.0.1", "port": 80}})),
    ("hostProbesAndHostLifecycle",
     _set(f"{MAIN}.lifecycle", {"preStop": {"tcpSocket": {"host": "node", "port": 22}}})),
    (None, _set(f"{MAIN}.readinessProbe", {"httpGet": {"host": "", "port": 80}})),
    ("appArmorProfile", _set("spec.securityContext.appArmorProfile", {"type": "Unconfined"})),
    ("appArmorProfile", _set(
        "metadata.annotations", {"container.apparmor.security.beta.kubernetes.io/main": "u"})),
    (None, _set(f"{MAIN}.securityContext.appArmorProfile",
                {"type": "Localhost", "localhostProfile": "p"})),
    (None, _set("metadata.annotations",
                {"container.apparmor.security.beta.kubernetes.io/main": "localhost/p"})),
    ("procMount", _set(f"{MAIN}.securityContext.procMount", "Unmasked")),
    (None, _set(f"{MAIN}.securityContext.procMount", "Default")),
    ("seLinuxOptions", _set("spec.securityContext.seLinuxOptions", {"type": "spc_t"})),
    ("seLinuxOptions", _set(f"{MAIN}.securityContext.seLinuxOptions", {"user": "u"})),
    ("seLinuxOptions", _set(f"{INIT}.securityContext.seLinuxOptions", {"role": "r"})),
    (None, _set(f"{MAIN}.securityContext.seLinuxOptions",
                {"type": "container_engine_t", "level": "s0:c1"})),
    ("seccompProfile_baseline",
     _set("spec.securityContext.seccompProfile", {"type": "Unconfined"})),
    ("seccompProfile_baseline",
     _set(f"{MAIN}.securityContext.seccompProfile", {"type": "Unconfined"})),
    (None, _set(f"{MAIN}.securityContext.seccompProfile", {"type": "RuntimeDefault"})),
    ("sysctls", _set("spec.securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}])),
    (None, _set("spec.securityContext.sysctls", [{"name": "net.ipv4.tcp_rmem", "value": "1"}])),
]


def test_the_checker_refuses_each_forbidden_value_and_allows_the_others(builds):
    claim = example()[1]["metadata"]["name"]
    passing = pods(builds["3.0", claim], "kfp-2.5-to-2.15")["train-model"]
    assert {check for check, _ in CHANGES} - {None} == set(BASELINE_CHECKS)
    for index, (check, change) in enumerate(CHANGES):
        pod = copy.deepcopy(passing)
        change(pod)
        assert list(baseline_violations(pod)) == ([check] if check else []), index
    # A pod in a user namespace (hostUsers: false) may unmask /proc (Kubernetes 1.35+).
    pod = copy.deepcopy(passing)
    _set(f"{MAIN}.securityContext.procMount", "Unmasked")(pod)
    pod["spec"]["hostUsers"] = False
    assert baseline_violations(pod) == {}


def test_the_shipped_hostpath_volume_and_its_claim_bind_each_other():
    volume, claim = example()
    for manifest in (volume, claim):
        assert kubernetes_problems(manifest) == [], manifest["kind"]
    assert (volume["kind"], claim["kind"]) == ("PersistentVolume", "PersistentVolumeClaim")
    # Pre-bound both ways, so no other claim takes the node's directory and this claim
    # takes no other volume.
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    assert volume["spec"]["claimRef"] == {
        "namespace": claim["metadata"]["namespace"], "name": claim["metadata"]["name"]}
    # What the binder compares when only the claim names the volume (kubernetes
    # pkg/controller/volume/persistentvolume/pv_controller.go, checkVolumeSatisfyClaim).
    assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"]
    assert set(claim["spec"]["accessModes"]) <= set(volume["spec"]["accessModes"])
    assert claim["spec"]["volumeMode"] == volume["spec"]["volumeMode"]
    assert (parse_quantity(claim["spec"]["resources"]["requests"]["storage"])
            <= parse_quantity(volume["spec"]["capacity"]["storage"]))
    # The node directory, on the one node that holds it, kept when the claim goes.
    assert volume["spec"]["hostPath"] == {"path": "/mnt/workspace", "type": "Directory"}
    (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    (expression,) = term["matchExpressions"]
    assert expression["key"] == "kubernetes.io/hostname" and expression["operator"] == "In"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
