"""Compile options for real clusters: storage, secrets, scheduling, failure policy."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import compile_workflow, main_error
from validation import argo_problems, kubernetes_problems, pods_with_defaults

from rehearsal.workflow_view import CompiledWorkflow
from tao_step import profiles

TEST_KEY = "nvidia_tlt"  # the api_key default: must vanish with --key-secret
NON_TAO_STEPS = {"preflight", "download-model", "summary"}


def compiled(tmp_path, *args) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path, *args))


def assert_valid(workflow: CompiledWorkflow):
    assert argo_problems(workflow.doc) is None
    for name, pod in pods_with_defaults(workflow.doc).items():
        assert kubernetes_problems(pod) == [], name


def secret_env(template: dict) -> list:
    """The variables a template takes from Secrets (not the plain NVIDIA_VISIBLE_DEVICES)."""
    return [e for e in template["container"].get("env", []) if "valueFrom" in e]


def gpu_steps(workflow):
    return [t for t in workflow.container_templates
            if "nvidia.com/gpu" in t["container"].get("resources", {}).get("limits", {})
            or "podSpecPatch" in t]


def without_volatile(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["metadata"]["annotations"].pop("pipelines.kubeflow.org/pipeline_compilation_time")
    return doc


def test_no_option_equals_the_default_build(tmp_path, default_workflow):
    # In-process against the script's build: both ways of compiling give one workflow.
    explicit = compile_workflow(tmp_path, "--cpu-request", "4", "--memory-request", "16Gi")
    assert without_volatile(explicit) == without_volatile(default_workflow.doc)


def test_default_failure_policy_and_time_limits(default_workflow):
    retried = set()
    for template in default_workflow.container_templates:
        name = default_workflow.display_name(template)
        retry = template.get("retryStrategy")
        artifacts = {a["name"] for a in template.get("outputs", {}).get("artifacts", [])}
        if artifacts & {"mlpipeline-metrics", "mlpipeline-ui-metadata"}:
            # A Retry node would carry these too (tests/test_run_list.py): never retried.
            assert retry is None, name
        elif name == "download-model":
            assert retry == {"limit": 3, "retryPolicy": "Always", "backoff": {
                "duration": "30s", "factor": 2}}
        else:
            # Only infrastructure errors; a failing TAO command is not retried.
            assert retry == {"limit": 2, "retryPolicy": "OnError", "backoff": {"duration": "1m"}}
        if retry:
            retried.add(name)
        expected = {"download-model": 3600, "train-model": 72 * 3600,
                    "retrain-model": 72 * 3600, "preflight": 600, "summary": 600}
        assert template["activeDeadlineSeconds"] == expected.get(name, 6 * 3600)
    # The long steps keep their retry: training hands its report to the evaluate steps.
    assert {"train-model", "retrain-model", "download-model", "export-model"} <= retried


def test_default_requests_every_step_small_ones_for_light_steps(default_workflow):
    # No step is BestEffort (no request at all), the class a busy node evicts first.
    for template in default_workflow.container_templates:
        requests = template["container"].get("resources", {}).get("requests")
        if default_workflow.display_name(template) in NON_TAO_STEPS:
            assert requests == {"cpu": "250m", "memory": "512Mi"}
        else:
            assert requests == {"cpu": "4", "memory": "16Gi"}


def test_pvc_replaces_the_hostpath_everywhere(tmp_path):
    workflow = compiled(tmp_path, "--pvc", "tao-workspace")
    for template in workflow.container_templates:
        (volume,) = [v for v in template["volumes"] if v["name"] == "nvidia-workspace"]
        assert volume == {"name": "nvidia-workspace",
                          "persistentVolumeClaim": {"claimName": "tao-workspace"}}
        mounts = {m["name"]: m["mountPath"] for m in template["container"]["volumeMounts"]}
        assert mounts["nvidia-workspace"] == "{{inputs.parameters.tao_mount_dir}}"
    assert "hostPath" not in yaml.safe_dump(workflow.doc)
    assert_valid(workflow)


def test_key_secret_removes_the_key_from_the_pipeline(tmp_path):
    workflow = compiled(tmp_path, "--key-secret", "tao-model-key")
    names = [p["name"] for p in workflow.parameters()]
    from tao_step import form

    assert names == [p.name for p in form.PARAMETERS if p.name != "api_key"]
    text = yaml.safe_dump(workflow.doc)
    assert TEST_KEY not in text and "{{inputs.parameters.api_key}}" not in text
    keyed = []
    for template in workflow.container_templates:
        args = template["container"]["args"]
        env = secret_env(template)
        name = workflow.display_name(template)
        if "-k" in args:
            keyed.append(name)
            assert args[args.index("-k") + 1] == "$(TAO_API_KEY)"
        elif name == "preflight":  # checks the key, from its environment: no argument
            keyed.append(name)
            assert "--key-from-env" in args and "$(TAO_API_KEY)" not in str(args)
            assert not any(a.startswith("api_key=") for a in args)
        if name in keyed:
            assert env == [{"name": "TAO_API_KEY", "valueFrom": {
                "secretKeyRef": {"name": "tao-model-key", "key": "key"}}}]
        else:
            assert env == []
    # every TAO command but calibration_tensorfile, convert-trt twice, and the preflight
    assert len(keyed) == 11
    assert_valid(workflow)


@pytest.mark.parametrize("version", sorted(profiles.PROFILES))
def test_each_step_gets_the_secrets_its_command_reads(tmp_path, version):
    # The ops declare their Secrets (tao_iva_classification_ops); here, in every release,
    # each declaration agrees with the command the step runs.
    workflow = compiled(tmp_path, "--tao-version", version, "--key-secret", "tao-model-key",
                        "--ngc-secret", "ngc-api")
    for template in workflow.container_templates:
        args = template["container"]["args"]
        command = args[args.index("--") + 1:] if "--" in args else []
        variables = [e["name"] for e in secret_env(template)]
        reads_key = "$(TAO_API_KEY)" in command or "--key-from-env" in args
        expected = ["TAO_API_KEY"] * reads_key + ["NGC_CLI_API_KEY"] * (command[:1] == ["ngc"])
        assert variables == expected, workflow.display_name(template)


def test_ngc_secret_reaches_only_the_download(tmp_path):
    workflow = compiled(tmp_path, "--ngc-secret", "ngc-api:apikey")
    for template in workflow.container_templates:
        env = secret_env(template)
        if workflow.display_name(template) == "download-model":
            assert env == [{"name": "NGC_CLI_API_KEY", "valueFrom": {
                "secretKeyRef": {"name": "ngc-api", "key": "apikey"}}}]
        else:
            assert env == []


def test_image_pull_secret(tmp_path):
    workflow = compiled(tmp_path, "--image-pull-secret", "nvcr-pull")
    assert workflow.doc["spec"]["imagePullSecrets"] == [{"name": "nvcr-pull"}]
    assert_valid(workflow)


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def test_scheduling_with_hostpath_pins_every_step(tmp_path):
    workflow = compiled(tmp_path, "--node-selector", "kubernetes.io/hostname=dgx-01",
                        "--gpu-toleration")
    for template in workflow.container_templates:
        assert template["nodeSelector"] == {"kubernetes.io/hostname": "dgx-01"}
        assert template["tolerations"] == [GPU_TOLERATION]
    assert_valid(workflow)


def test_scheduling_with_a_claim_constrains_gpu_steps_only(tmp_path):
    workflow = compiled(tmp_path, "--pvc", "shared", "--node-selector",
                        "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB", "--gpu-toleration")
    gpu = {t["name"] for t in gpu_steps(workflow)}
    assert len(gpu) == 11  # ten GPU steps, convert-trt twice
    for template in workflow.container_templates:
        if template["name"] in gpu:
            assert template["nodeSelector"] == {
                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
            assert template["tolerations"] == [GPU_TOLERATION]
        else:
            assert "nodeSelector" not in template and "tolerations" not in template


def test_requests_and_timeouts_are_configurable(tmp_path):
    workflow = compiled(tmp_path, "--cpu-request", "8", "--memory-request", "0",
                        "--step-timeout", "train-model=5d", "--step-timeout", "1m")
    for template in workflow.container_templates:
        name = workflow.display_name(template)
        expected = 5 * 86400 if name == "train-model" else 60  # the shortest limit taken
        assert template["activeDeadlineSeconds"] == expected, name
        requests = template["container"]["resources"]["requests"]
        if name not in NON_TAO_STEPS:
            assert requests == {"cpu": "8"}
        else:
            assert requests == {"cpu": "250m", "memory": "512Mi"}


def test_all_options_together(tmp_path):
    workflow = compiled(
        tmp_path, "--pvc", "tao-rwx", "--key-secret", "tao-model-key:tao-key", "--ngc-secret",
        "ngc-api", "--image-pull-secret", "nvcr-pull", "--node-selector", "gpu=true",
        "--gpu-toleration", "--step-timeout", "2d", "--image", "registry.example.com/tao:1")
    text = yaml.safe_dump(workflow.doc)
    assert TEST_KEY not in text
    assert "claimName: tao-rwx" in text and "hostPath" not in text
    assert workflow.doc["spec"]["imagePullSecrets"] == [{"name": "nvcr-pull"}]
    assert {t["activeDeadlineSeconds"] for t in workflow.container_templates} == {172800}
    assert_valid(workflow)


@pytest.mark.parametrize("args, words", [
    (["--pvc", "Bad_Claim"], ["--pvc", "Bad_Claim", "PersistentVolumeClaim"]),
    (["--key-secret", "tao key"], ["--key-secret", "Secret"]),
    (["--key-secret", "tao:bad key"], ["--key-secret", "bad key"]),
    (["--ngc-secret", ""], ["--ngc-secret"]),
    (["--image-pull-secret", "UPPER"], ["--image-pull-secret", "UPPER"]),
    (["--node-selector", "gpu"], ["--node-selector", "KEY=VALUE"]),
    (["--node-selector", "a=b c"], ["--node-selector", "a=b c"]),
    (["--node-selector", "a=1", "--node-selector", "a=2"], ["--node-selector", "two values"]),
    (["--cpu-request", "four"], ["--cpu-request", "quantity"]),
    (["--cpu-request=-1"], ["--cpu-request", "'-1'", "at least 0"]),
    (["--memory-request=-16Gi"], ["--memory-request", "'-16Gi'", "at least 0"]),
    (["--memory-request", "16GB"], ["--memory-request", "16GB"]),
    (["--step-timeout", "0"], ["--step-timeout", "duration"]),
    (["--step-timeout", "1week"], ["--step-timeout", "1week"]),
    (["--step-timeout", "train=2h"], ["--step-timeout", "train", "train-model"]),
])
def test_invalid_values_get_one_clear_line(tmp_path, capsys, args, words):
    line = main_error(capsys, "-o", str(tmp_path / "p.yaml"), *args)  # exit 2, one line
    for word in words:
        assert word in line
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("limit, words", [
    ("96", ["'96' is not a duration", "needs a unit", "e.g. 96h"]),
    ("train-model=3", ["'3' is not a duration", "e.g. 3h"]),
    ("30s", ["'30s' is shorter than any step takes", "at least 1m"]),
    ("preflight=0m", ["'0m' is shorter", "at least 1m"]),
])
def test_a_step_timeout_needs_a_unit_and_a_limit_a_step_can_meet(tmp_path, capsys, limit,
                                                                  words):
    line = main_error(capsys, "-o", str(tmp_path / "p.yaml"), "--step-timeout", limit)
    assert "argument --step-timeout: " in line
    for word in words:
        assert word in line

