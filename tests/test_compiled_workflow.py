"""The Argo workflow a cluster receives from the default compile."""

from __future__ import annotations

import json

import pytest
from conftest import ORIGINAL_STEPS

import tao_iva_classification_pipeline as pipeline


def P(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def W(name: str) -> str:
    return P("tao_mount_dir") + "/" + P(name)


# The original sample's commands (../shared/reference/original-interface.md), with
# {x} -> the parameter placeholder and {ws}/{x} -> workspace path; the NGC CLI is on PATH.
ORIGINAL_ARGV = {
    "download-model": ["ngc", "registry", "model", "download-version",
                       P("pretrained_model_name"), "--dest", W("pretrained_model_dir")],
    "train-model": ["classification", "train", "--gpus", P("train_num_gpus"), "-k", P("api_key"),
                    "-e", W("train_classification_spec"), "-r", W("train_classification_output")],
    "evaluate-model": ["classification", "evaluate", "-e", W("train_classification_spec"),
                       "-k", P("api_key")],
    "prune-model": ["classification", "prune", "-k", P("api_key"),
                    "-m", W("prune_model_input_file"), "-o", W("prune_model_output_file"),
                    "-pth", P("prune_threshold"), "-eq", P("prune_equalization_criterion")],
    "retrain-model": ["classification", "train", "--gpus", P("train_num_gpus"),
                      "-k", P("api_key"), "-e", W("retrain_classification_spec"),
                      "-r", W("retrain_classification_output")],
    "reevaluate-model": ["classification", "evaluate", "-e", W("retrain_classification_spec"),
                         "-k", P("api_key")],
    "test-infer": ["classification", "inference", "-k", P("api_key"),
                   "-e", W("retrain_classification_spec"), "-m", W("test_infer_model_input_file"),
                   "-d", W("test_infer_image_path"), "-b", P("test_infer_batch_size"),
                   "-cm", W("test_infer_class_map")],
    "export-model": ["classification", "export", "-m", W("export_model_input_file"),
                     "-k", P("api_key"), "-o", W("export_model_output_file")],
    "calibrate-model": ["classification", "calibration_tensorfile",
                        "-e", W("calibrate_classification_spec"), "-m", P("calibrate_max_batches"),
                        "-o", W("calibrate_output_file")],
    "export-int8-model": ["classification", "export", "-m", W("export_model_input_file"),
                          "-k", P("api_key"), "-o", W("export_int8_model_output_file"),
                          "--cal_data_file", W("calibrate_output_file"),
                          "--data_type", P("convert_trt_precision"),
                          "--batches", P("export_int8_batches"),
                          "--cal_cache_file", W("export_int8_cache_file"), "-v"],
    "convert-trt": ["converter", W("export_int8_model_output_file"), "-k", P("api_key"),
                    "-o", P("convert_trt_output_layer"), "-c", W("export_int8_cache_file"),
                    "-d", P("convert_trt_dims"), "-i", P("convert_trt_input_type"),
                    "-m", P("convert_trt_max_batch_size"), "-t", P("convert_trt_precision"),
                    "-e", W("convert_trt_output_file"), "-b", P("convert_trt_batch_size")],
}

# The original's Create Run form, in order, with its defaults; the three checkpoint
# defaults are corrected from resnet_020 to the 80-epoch specs' resnet_080.
ORIGINAL_FORM = [
    ("pretrained_model_name", "nvidia/tao/pretrained_classification:resnet18"),
    ("pretrained_model_dir", "models"),
    ("train_classification_data", "tao-experiments/data"),
    ("train_classification_spec", "specs/classification_spec.cfg"),
    ("train_classification_output", "tao-experiments/output"),
    ("train_num_gpus", "1"),
    ("prune_model_input_file", "tao-experiments/output/weights/resnet_080.tlt"),
    ("prune_model_output_file", "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt"),
    ("prune_equalization_criterion", "union"),
    ("prune_threshold", "0.6"),
    ("retrain_classification_spec", "specs/classification_retrain_spec.cfg"),
    ("retrain_classification_output", "tao-experiments/output-retrain"),
    ("test_infer_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt"),
    ("test_infer_image_path", "tao-experiments/data/split/test/person"),
    ("test_infer_class_map", "tao-experiments/output-retrain/classmap.json"),
    ("test_infer_batch_size", "16"),
    ("export_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt"),
    ("export_model_output_file", "tao-experiments/export/final_model.etlt"),
    ("calibrate_classification_spec", "specs/classification_retrain_spec.cfg"),
    ("calibrate_max_batches", "10"),
    ("calibrate_output_file", "tao-experiments/export/calibration.tensor"),
    ("export_int8_cache_file", "tao-experiments/export/final_model_int8_cache.bin"),
    ("export_int8_batches", "10"),
    ("export_int8_model_output_file", "tao-experiments/export/final_int8_model.etlt"),
    ("convert_trt_output_file", "tao-experiments/export/final_model.trt"),
    ("convert_trt_output_layer", "predictions/Softmax"),
    ("convert_trt_dims", "3,224,224"),
    ("convert_trt_input_type", "nchw"),
    ("convert_trt_max_batch_size", "64"),
    ("convert_trt_precision", "int8"),
    ("convert_trt_batch_size", "64"),
    ("tao_mount_dir", "/mnt/workspace"),
    ("api_key", "nvidia_tlt"),
]

# An edge exists only where a step reads what another writes.
EXPECTED_EDGES = {
    ("download-model", "train-model"),        # pretrained model
    ("train-model", "evaluate-model"),        # first training's checkpoint
    ("train-model", "prune-model"),           # first training's checkpoint
    ("prune-model", "retrain-model"),         # pruned model
    ("retrain-model", "reevaluate-model"),    # retrained checkpoint
    ("retrain-model", "test-infer"),          # retrained checkpoint + class map
    ("retrain-model", "export-model"),        # retrained checkpoint
    ("retrain-model", "export-int8-model"),   # retrained checkpoint
    ("calibrate-model", "export-int8-model"),  # calibration tensorfile
    ("export-int8-model", "convert-trt"),     # INT8 .etlt + calibration cache
}

GPU_STEPS = {name for name in ORIGINAL_STEPS if name not in ("download-model", "calibrate-model")}


def argv(template: dict) -> list:
    return template["container"]["command"] + template["container"].get("args", [])


def test_form_is_the_original_in_order_with_consistent_defaults(default_workflow):
    form = [(p["name"], p["value"]) for p in default_workflow.parameters()]
    assert form == ORIGINAL_FORM
    spec = json.loads(
        default_workflow.doc["metadata"]["annotations"]["pipelines.kubeflow.org/pipeline_spec"]
    )
    assert [(i["name"], i["default"]) for i in spec["inputs"]] == ORIGINAL_FORM


def test_the_eleven_original_steps_and_nothing_else(default_workflow):
    names = {default_workflow.display_name(t) for t in default_workflow.container_templates}
    assert names == set(ORIGINAL_STEPS)


@pytest.mark.parametrize("step", ORIGINAL_STEPS)
def test_each_step_runs_the_original_command(default_workflow, step):
    # convert-trt has an FP16/FP32 variant too; the INT8 one is the original command.
    templates = default_workflow.steps(step)
    assert argv(templates[0]) == ORIGINAL_ARGV[step]


def test_fp_engine_variant_drops_only_the_calibration_cache(default_workflow):
    int8, fp = default_workflow.steps("convert-trt")
    expected = list(ORIGINAL_ARGV["convert-trt"])
    at = expected.index("-c")
    del expected[at:at + 2]
    assert argv(fp) == expected
    conditions = {
        task["template"]: task.get("when")
        for _, task in default_workflow.tasks().values() if "when" in task
    }
    groups = {
        t["name"]: t["dag"]["tasks"][0]["template"]
        for t in default_workflow.doc["spec"]["templates"]
        if "dag" in t and len(t["dag"]["tasks"]) == 1
    }
    when_of = {groups[g]: w for g, w in conditions.items()}
    assert when_of[int8["name"]] == '"{{inputs.parameters.convert_trt_precision}}" == "int8"'
    assert when_of[fp["name"]] == '"{{inputs.parameters.convert_trt_precision}}" != "int8"'


def test_dag_edges_are_exactly_the_data_dependencies(default_workflow):
    assert default_workflow.step_edges() == EXPECTED_EDGES


def test_dag_is_at_most_six_levels_deep(default_workflow):
    edges = default_workflow.step_edges()
    depth = {}

    def level(step: str) -> int:
        if step not in depth:
            depth[step] = 1 + max((level(a) for a, b in edges if b == step), default=0)
        return depth[step]

    assert max(level(s) for s in ORIGINAL_STEPS) == 6
    assert level("calibrate-model") == 1  # does not wait for training


def test_every_step_mounts_the_workspace_hostpath_as_directory(default_workflow):
    for template in default_workflow.container_templates:
        volumes = {v["name"]: v for v in template["volumes"]}
        assert volumes["nvidia-workspace"]["hostPath"] == {
            "path": P("tao_mount_dir"), "type": "Directory"
        }
        mounts = {m["name"]: m["mountPath"] for m in template["container"]["volumeMounts"]}
        assert mounts["nvidia-workspace"] == P("tao_mount_dir")


def test_gpu_requests(default_workflow):
    for template in default_workflow.container_templates:
        name = default_workflow.display_name(template)
        limits = template["container"].get("resources", {}).get("limits", {})
        patch = json.loads(template.get("podSpecPatch", "{}"))
        if name in ("train-model", "retrain-model"):
            assert "nvidia.com/gpu" not in limits
            assert patch == {"containers": [{"name": "main", "resources": {
                "limits": {"nvidia.com/gpu": P("train_num_gpus")}}}]}
        elif name in GPU_STEPS:
            assert limits == {"nvidia.com/gpu": "1"} and not patch
        else:
            assert not limits and not patch, name
        # kfp's set_gpu_limit() with a parameter would write the invalid key "nvidia".
        assert "nvidia" not in limits


def test_caching_is_disabled_the_way_the_v1_backend_reads(default_workflow):
    for template in default_workflow.container_templates:
        metadata = template["metadata"]
        assert metadata["annotations"]["pipelines.kubeflow.org/max_cache_staleness"] == "P0D"
        assert metadata["labels"]["pipelines.kubeflow.org/enable_caching"] == "false"


def test_tao_steps_get_memory_backed_shm(default_workflow):
    for template in default_workflow.container_templates:
        volumes = {v["name"]: v for v in template["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in template["container"]["volumeMounts"]}
        if default_workflow.display_name(template) == "download-model":
            assert "/dev/shm" not in mounts
            continue
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}


def test_no_step_runs_a_shell(default_workflow):
    shells = {"sh", "bash", "/bin/sh", "/bin/bash", "zsh", "dash"}
    for template in default_workflow.container_templates:
        command = template["container"]["command"]
        assert command[0] not in shells and not command[0].endswith("/sh")
        assert command[0] in {"ngc", "classification", "converter"}


def test_every_step_uses_the_default_image(default_workflow):
    images = {t["container"]["image"] for t in default_workflow.container_templates}
    assert images == {pipeline.ops.DEFAULT_IMAGE}
