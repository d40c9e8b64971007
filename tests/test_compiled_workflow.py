"""The Argo workflow a cluster receives from the default compile."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ORIGINAL_STEPS, TAO5, compile_workflow, main_error, original_form
from validation import argo_problems, kubernetes_problems, pods_with_defaults

import tao_iva_classification_ops as ops
import tao_iva_classification_pipeline as pipeline
from rehearsal.workflow_view import CompiledWorkflow
from tao_step import profiles


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

# The 5.0 commands: classification_tf1 with the subtask first (the wrapper reads only
# argv[1]); -k only for subtasks that read a model; export reads the spec (-e).
TAO5_ARGV = {
    "train-model": ["classification_tf1", "train", "--gpus", P("train_num_gpus"),
                    "-k", P("api_key"), "-e", W("train_classification_spec"),
                    "-r", W("train_classification_output")],
    "evaluate-model": ["classification_tf1", "evaluate", "-e", W("train_classification_spec"),
                       "-k", P("api_key"), "-r", W("train_classification_output") + "/evaluate"],
    "prune-model": ["classification_tf1", "prune", "-k", P("api_key"),
                    "-m", W("prune_model_input_file"), "-o", W("prune_model_output_file"),
                    "-pth", P("prune_threshold"), "-eq", P("prune_equalization_criterion")],
    "test-infer": ["classification_tf1", "inference", "-k", P("api_key"),
                   "-e", W("retrain_classification_spec"), "-m", W("test_infer_model_input_file"),
                   "-d", W("test_infer_image_path"), "-b", P("test_infer_batch_size"),
                   "-cm", W("test_infer_class_map")],
    "export-model": ["classification_tf1", "export", "-m", W("export_model_input_file"),
                     "-k", P("api_key"), "-o", W("export_model_output_file"),
                     "-e", W("retrain_classification_spec")],
    "calibrate-model": ["classification_tf1", "calibration_tensorfile",
                        "-e", W("calibrate_classification_spec"),
                        "-m", P("calibrate_max_batches"), "-o", W("calibrate_output_file")],
}


ENGINE = ["classification_tf1", "gen_trt_engine", "-m", W("export_model_output_file"),
          "-e", W("retrain_classification_spec"), "-r", W("convert_trt_results_dir"),
          "--data_type", P("convert_trt_precision"), "--engine_file", W("convert_trt_output_file")]


ENGINE_TAIL = ["--batch_size", P("convert_trt_batch_size"),
               "--max_batch_size", P("convert_trt_max_batch_size"),
               "--opt_batch_size", P("convert_trt_max_batch_size")]


INT8 = ["--cal_data_file", W("calibrate_output_file"),
        "--cal_cache_file", W("export_int8_cache_file"), "--batches", P("export_int8_batches")]


# The original's Create Run form, in order, with its defaults (original-interface.md); the
# three checkpoint defaults are corrected from resnet_020 to the 80-epoch specs' resnet_080.
ORIGINAL_FORM = [(name, default.replace("/resnet_020.tlt", "/resnet_080.tlt"))
                 for name, default in original_form()]
assert sum("resnet_080" in default for _, default in ORIGINAL_FORM) == 3
# Added by this project, after the original's fields (tao_step/form.py: min_accuracy, ...).
ADDED_FORM = [(p.name, p.default) for p in pipeline.PARAMETERS[len(ORIGINAL_FORM):]]
assert ADDED_FORM[0] == ("min_accuracy", "0")

# An edge exists only where a step reads what another writes.
DATA_EDGES = {
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
# The quality gate: nothing is exported before reevaluate-model's verdict.
GATE_EDGES = {("reevaluate-model", s) for s in ("export-model", "export-int8-model", "convert-trt")}
# preflight comes first (every other step is downstream of its two successors). The
# summary is no DAG task: it is the exit handler, after every step however they end.
CHECK_EDGES = {("preflight", "download-model"), ("preflight", "calibrate-model")}

# calibrate-model too: TAO's wrapper needs nvidia-smi to list a GPU before any subtask.
GPU_STEPS = {name for name in ORIGINAL_STEPS if name != "download-model"}
NON_TAO_STEPS = {"preflight", "download-model", "summary"}

# What each step reports to the UI (tao_step report KIND and its options), and the paths
# whose earlier-run contents it moves aside first.
REPORTS = {
    "download-model": ["run", "--ngc-model", P("pretrained_model_name"),
                       "--ngc-dest", W("pretrained_model_dir")],
    "train-model": ["train", "--results-dir", W("train_classification_output"),
                    "--label", "baseline", "--hand-over",
                    W("train_classification_output") + "/tao_step-training-report.json",
                    "--switch", "use_amp=" + P("train_use_amp")],
    "evaluate-model": ["evaluate", "--label", "baseline", "--spec", W("train_classification_spec"),
                       "--training-report",
                       W("train_classification_output") + "/tao_step-training-report.json"],
    "prune-model": ["prune", "--input-model", W("prune_model_input_file"),
                    "--output-model", W("prune_model_output_file")],
    "retrain-model": ["train", "--results-dir", W("retrain_classification_output"),
                      "--label", "retrained", "--hand-over",
                      W("retrain_classification_output") + "/tao_step-training-report.json",
                      "--switch", "use_amp=" + P("retrain_use_amp")],
    "reevaluate-model": ["evaluate", "--label", "retrained",
                         "--spec", W("retrain_classification_spec"),
                         "--training-report",
                         W("retrain_classification_output") + "/tao_step-training-report.json",
                         "--min-accuracy", P("min_accuracy"),
                         "--gate-file", "/tmp/kfp-outputs/gate"],
    "test-infer": ["inference", "--image-dir", W("test_infer_image_path")],
    "export-model": ["run"],
    "calibrate-model": ["run"],
    "export-int8-model": ["run"],
    "convert-trt": ["convert", "--engine", W("convert_trt_output_file"),
                    "--precision", P("convert_trt_precision")],
}
KEPT = {
    "download-model": [],
    "train-model": [W("train_classification_output")],
    "evaluate-model": [],
    "prune-model": [W("prune_model_output_file")],
    "retrain-model": [W("retrain_classification_output")],
    "reevaluate-model": [],
    "test-infer": [W("test_infer_image_path") + "/result.csv"],
    "export-model": [W("export_model_output_file")],
    "calibrate-model": [W("calibrate_output_file")],
    "export-int8-model": [W("export_int8_model_output_file"), W("export_int8_cache_file")],
    "convert-trt": [W("convert_trt_output_file")],
}


def argv(template: dict) -> list:
    return template["container"]["command"] + template["container"].get("args", [])


def runtime_args(template: dict) -> list:
    """The arguments to tao_step, after the bootstrap that runs it."""
    full = argv(template)
    assert full[:3] == ["python3", "-c", ops.RUNTIME_BOOTSTRAP]
    assert full[3:5] == ["--require-runtime", "3"]
    return full[5:]


def tao_argv(template: dict) -> list:
    """The TAO/NGC command a step runs under ``tao_step report``."""
    args = runtime_args(template)
    return args[args.index("--") + 1:]


def levels(edges: set, steps) -> dict:
    depth = {}

    def level(step: str) -> int:
        if step not in depth:
            depth[step] = 1 + max((level(a) for a, b in edges if b == step), default=0)
        return depth[step]

    return {step: level(step) for step in steps}


def test_form_is_the_original_in_order_with_consistent_defaults(default_workflow):
    form = [(p["name"], p["value"]) for p in default_workflow.parameters()]
    assert form == ORIGINAL_FORM + ADDED_FORM
    spec = json.loads(
        default_workflow.doc["metadata"]["annotations"]["pipelines.kubeflow.org/pipeline_spec"]
    )
    assert [(i["name"], i["default"]) for i in spec["inputs"]] == ORIGINAL_FORM + ADDED_FORM


def test_the_eleven_original_steps_plus_preflight_and_summary(default_workflow):
    names = {default_workflow.display_name(t) for t in default_workflow.container_templates}
    assert names == set(ORIGINAL_STEPS) | {"preflight", "summary"}
    assert set(profiles.step_names(profiles.TAO_3_0)) == names
    # the table has every release's steps; TAO 5 alone measures its engine
    assert set(pipeline.STEP_NAMES) == names | {"evaluate-engine"}


def test_every_step_names_itself_for_the_result_it_keeps(default_workflow):
    """tao_step.results names a step's result file after TAO_RUN_STEP: one per step."""
    for template in default_workflow.container_templates:
        env = {e["name"]: e.get("value") for e in template["container"]["env"]}
        assert env["TAO_RUN_STEP"] == default_workflow.display_name(template)
        assert env["TAO_RUN_UID"] == "{{workflow.uid}}"
        assert env["TAO_RUN_WORKSPACE"] == P("tao_mount_dir")


# The compiled workflow of each release, by --tao-version (session fixtures, conftest.py).
WORKFLOWS = {"3.0": "default_workflow", "5.0": "tao5_workflow"}


@pytest.mark.parametrize("version, step", [("3.0", s) for s in ORIGINAL_STEPS]
                         + [("5.0", s) for s in TAO5_ARGV])
def test_each_step_runs_its_releases_command(request, version, step):
    # convert-trt has an FP16/FP32 variant too; the INT8 one is the original command.
    template = request.getfixturevalue(WORKFLOWS[version]).steps(step)[0]
    assert tao_argv(template) == {"3.0": ORIGINAL_ARGV, "5.0": TAO5_ARGV}[version][step]


@pytest.mark.parametrize("step", ORIGINAL_STEPS)
def test_each_step_reports_and_keeps_earlier_outputs(default_workflow, step):
    args = runtime_args(default_workflow.steps(step)[0])
    wrapper = args[:args.index("--")]
    kept = [wrapper[i + 1] for i, a in enumerate(wrapper) if a == "--keep-previous"]
    options = [a for i, a in enumerate(wrapper)
               if a != "--keep-previous" and (i == 0 or wrapper[i - 1] != "--keep-previous")]
    assert options == ["report", *REPORTS[step], "--out-dir", "/tmp/kfp-outputs"]
    assert kept == KEPT[step]


def test_outputs_the_ui_collects(default_workflow):
    for template in default_workflow.container_templates:
        name = default_workflow.display_name(template)
        artifacts = {a["name"]: a["path"] for a in template.get("outputs", {}).get("artifacts", [])}
        # train hands its report to evaluate (docs/tao-step-report.md, retries)
        if name == "preflight" or "--hand-over" in REPORTS.get(name, ["run"]) or (
                REPORTS.get(name, ["run"])[0] == "run" and name != "summary"):
            assert "mlpipeline-ui-metadata" not in artifacts, name
            continue
        assert artifacts["mlpipeline-ui-metadata"] == "/tmp/kfp-outputs/mlpipeline-ui-metadata.json"
        assert artifacts["mlpipeline-metrics"] == "/tmp/kfp-outputs/mlpipeline-metrics.json"
    outputs = {
        name: {p["name"] for p in default_workflow.step(name)["outputs"].get("parameters", [])}
        for name in ("evaluate-model", "reevaluate-model", "prune-model")
    }
    # The only output parameter: the gate's verdict, read by the export conditions. The
    # figures reach the summary through the workspace (an exit handler reads no outputs).
    assert outputs == {
        "evaluate-model": set(),
        "reevaluate-model": {"reevaluate-model-gate"},
        "prune-model": set(),
    }


def test_preflight_checks_every_submitted_value(default_workflow):
    args = runtime_args(default_workflow.step("preflight"))
    assert args[:3] == ["preflight", "--workspace", P("tao_mount_dir")]
    params = [args[i + 1] for i, a in enumerate(args) if a == "--param"]
    names = [name for name, _ in ORIGINAL_FORM + ADDED_FORM]
    assert params == [f"{name}={P(name)}" for name in names]


def test_quality_gate_guards_every_export(default_workflow):
    tasks = default_workflow.tasks()
    verdict = '"{{tasks.reevaluate-model.outputs.parameters.reevaluate-model-gate}}" == "pass"'
    guarded = set()
    for group in ("condition-gate-fp32-export-2", "condition-gate-int8-export-3"):
        _, task = tasks[group]
        assert task["when"] == verdict
        guarded |= {t["name"] for t in default_workflow.templates[task["template"]]["dag"]["tasks"]}
    assert guarded == {"export-model", "export-int8-model", "condition-int8-engine-4",
                       "condition-fp-engine-5"}


def test_fp_engine_variant_drops_only_the_calibration_cache(default_workflow):
    int8, fp = default_workflow.steps("convert-trt")
    expected = list(ORIGINAL_ARGV["convert-trt"])
    at = expected.index("-c")
    del expected[at:at + 2]
    assert tao_argv(fp) == expected
    conditions = {
        task["template"]: task.get("when")
        for _, task in default_workflow.tasks().values() if "when" in task
    }
    groups = {
        t["name"]: t["dag"]["tasks"][0]["template"]
        for t in default_workflow.doc["spec"]["templates"]
        if "dag" in t and len(t["dag"]["tasks"]) == 1
    }
    when_of = {groups[g]: w for g, w in conditions.items() if g in groups}
    assert when_of[int8["name"]] == '"{{inputs.parameters.convert_trt_precision}}" == "int8"'
    assert when_of[fp["name"]] == '"{{inputs.parameters.convert_trt_precision}}" != "int8"'


def closure(edges: set) -> set:
    """Every (a, b) where b cannot start before a ends: the order a DAG imposes."""
    reach = set(edges)
    while True:
        more = {(a, d) for a, b in reach for c, d in reach if b == c} - reach
        if not more:
            return reach
        reach |= more


def test_dag_orders_steps_by_data_gate_and_checks_only(default_workflow):
    # Condition groups add redundant direct edges; what matters is what waits for what.
    assert closure(default_workflow.step_edges()) == closure(DATA_EDGES | GATE_EDGES | CHECK_EDGES)
    assert ("calibrate-model", "export-model") not in closure(default_workflow.step_edges())


def test_data_edges_are_six_levels_deep_and_the_gate_adds_one(default_workflow):
    # Read off the compiled DAG: the original eleven steps only, redundant edges included.
    edges = {(a, b) for a, b in default_workflow.step_edges()
             if a in ORIGINAL_STEPS and b in ORIGINAL_STEPS}
    gates = default_workflow.gates()
    gate_edges = {(a, b) for a, b in edges if gates.get(b, (None,))[0] == a}
    assert gate_edges == GATE_EDGES
    data_depth = levels(edges - gate_edges, ORIGINAL_STEPS)
    assert max(data_depth.values()) == 6  # the original: 10
    assert data_depth["calibrate-model"] == 1  # does not wait for training
    # The quality gate must see reevaluate-model's accuracy before anything is exported.
    depth = levels(edges, ORIGINAL_STEPS)
    assert max(depth.values()) == 7 and depth["convert-trt"] == 7


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
            # and sees none, whatever NVIDIA_VISIBLE_DEVICES its image sets
            assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in template[
                "container"]["env"], name
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
        if default_workflow.display_name(template) in NON_TAO_STEPS:
            assert "/dev/shm" not in mounts
            continue
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}


def test_no_step_runs_a_shell(default_workflow):
    # Every step runs Python with fixed code; parameters only ever reach argv elements.
    for template in default_workflow.container_templates:
        runtime_args(template)
        name = default_workflow.display_name(template)
        if name in ORIGINAL_STEPS:
            assert tao_argv(template)[0] in {"ngc", "classification", "converter"}


def test_every_step_uses_the_default_image(default_workflow):
    images = {t["container"]["image"] for t in default_workflow.container_templates}
    assert images == {pipeline.ops.DEFAULT_IMAGE}


def test_the_exit_handler_reports_the_run_and_releases_the_claim_preflight_takes(
        default_workflow):
    spec = default_workflow.doc["spec"]
    summary = default_workflow.templates[spec["onExit"]]
    # found by its template name, "summary" (KFP labels the node "onExit - summary")
    assert spec["onExit"] == "summary" == default_workflow.display_name(summary)
    args = runtime_args(summary)
    assert args[:13] == ["summary", "--out-dir", "/tmp/kfp-outputs", "--workspace",
                         P("tao_mount_dir"), "--run", "{{workflow.name}}", "--run-uid",
                         "{{workflow.uid}}", "--status", "{{workflow.status}}",
                         "--failures", "{{workflow.failures}}"]
    artifacts = [tuple(args[i + 1:i + 3]) for i, a in enumerate(args) if a == "--artifact"]
    assert artifacts == [(name, W(param) + suffix)
                         for name, param, suffix in pipeline.SUMMARY_ARTIFACTS
                         if param != "convert_trt_results_dir"]  # a TAO 5 parameter
    # It publishes, so it has no retry strategy (a Retry node would show its report twice).
    assert "retryStrategy" not in summary
    assert summary["activeDeadlineSeconds"] == 600
    (preflight,) = default_workflow.steps("preflight")
    args = runtime_args(preflight)
    assert args[:7] == ["preflight", "--workspace", P("tao_mount_dir"), "--run",
                        "{{workflow.name}}", "--run-uid", "{{workflow.uid}}"]
    # Every step runs inside the exit handler's group, so onExit follows all of them.
    (group,) = spec["templates"][[t["name"] for t in spec["templates"]].index(
        spec["entrypoint"])]["dag"]["tasks"]
    inner = {t["name"] for t in default_workflow.templates[group["template"]]["dag"]["tasks"]}
    assert "preflight" in inner and "summary" not in default_workflow.tasks()


def test_every_dag_states_failfast_false(default_workflow):
    dags = [t for t in default_workflow.doc["spec"]["templates"] if "dag" in t]
    assert len(dags) == 6
    assert all(t["dag"]["failFast"] is False for t in dags)

# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_tao5_build.py: the compiled workflow a
# cluster receives, the independent validators, and the options of that build.


@pytest.fixture
def tao5(tao5_workflow) -> CompiledWorkflow:
    return tao5_workflow


DROPPED = ("export_int8_model_output_file", "convert_trt_output_layer", "convert_trt_dims",
           "convert_trt_input_type")


def tao_command(template: dict) -> list:
    args = template["container"]["args"]
    return args[args.index("--") + 1:]


def report_options(template: dict) -> list:
    args = template["container"]["args"]
    return args[:args.index("--")]


def test_each_tao5_engine_and_retraining_command(tao5):
    # the other steps' commands: test_each_step_runs_its_releases_command
    assert tao_command(tao5.step("retrain-model"))[:2] == ["classification_tf1", "train"]
    engines = sorted((tao_command(t) for t in tao5.steps("convert-trt")), key=len)
    assert engines == [ENGINE + ENGINE_TAIL, ENGINE + INT8 + ENGINE_TAIL]
    assert "export-int8-model" not in {tao5.display_name(t) for t in tao5.container_templates}


def test_images_per_step_are_the_tao5_builds(tao5):
    images = ops.default_images(profiles.TAO_5_0)
    assert images["train"].startswith("tao-toolkit-kfp:5.0.0-tf1.15.5-")
    assert images["deploy"].startswith("tao-toolkit-kfp:5.0.0-deploy-")
    for template in tao5.container_templates:
        role = ("deploy" if tao5.display_name(template) in ("convert-trt", "evaluate-engine")
                else "train")
        assert template["container"]["image"] == images[role], tao5.display_name(template)


def test_images_can_be_named(tmp_path):
    workflow = CompiledWorkflow(compile_workflow(
        tmp_path, *TAO5, "--image", "r.example.com/tf1:1", "--deploy-image", "r.example.com/d:1"))
    assert {t["container"]["image"] for t in workflow.steps("convert-trt")} == {"r.example.com/d:1"}
    assert workflow.step("train-model")["container"]["image"] == "r.example.com/tf1:1"


def test_every_gpu_step_requests_its_gpus_and_the_others_see_none(tao5):
    for template in tao5.container_templates:
        name = tao5.display_name(template)
        limits = template["container"].get("resources", {}).get("limits", {})
        patch = json.loads(template.get("podSpecPatch", "{}"))
        env = template["container"].get("env", [])
        if name in ("train-model", "retrain-model"):
            assert patch["containers"][0]["resources"]["limits"] == {
                "nvidia.com/gpu": P("train_num_gpus")}
        elif name in ("preflight", "download-model", "summary"):
            assert not limits and not patch
            assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in env
        else:
            assert limits == {"nvidia.com/gpu": "1"}, name  # calibrate-model included


def test_tao_steps_opt_out_of_telemetry(tao5):
    for template in tao5.container_templates:
        command = tao_command(template) if "--" in template["container"]["args"] else []
        env = {e["name"]: e.get("value") for e in template["container"].get("env", [])}
        if command[:1] == ["classification_tf1"]:
            assert env["TELEMETRY_OPT_OUT"] == "yes", tao5.display_name(template)


def test_form_drops_what_tao5_has_no_use_for_and_adds_gen_trt_engine_inputs(tao5):
    form = {p["name"]: p["value"] for p in tao5.parameters()}
    assert not set(DROPPED) & set(form)
    assert form["convert_trt_results_dir"] == "tao-experiments/export/gen_trt_engine"
    assert form["prune_model_input_file"] == "tao-experiments/output/weights/resnet_080.hdf5"
    assert form["prune_model_output_file"].endswith("_pruned.hdf5")
    assert form["export_model_output_file"] == "tao-experiments/export/final_model.onnx"
    # names whose meaning carries over keep the 3.0 form's names and defaults
    assert form["export_int8_cache_file"] == "tao-experiments/export/final_model_int8_cache.bin"
    assert form["api_key"] == "nvidia_tlt" and form["min_accuracy"] == "0"
    assert "TAO Toolkit 5.0 (TF1)" in json.loads(
        tao5.doc["metadata"]["annotations"]["pipelines.kubeflow.org/pipeline_spec"])[
            "description"]


def test_tao5_steps_judge_success_from_status_json_too(tao5):
    assert "--status-json" in report_options(tao5.step("train-model"))
    evaluate = report_options(tao5.step("evaluate-model"))
    assert evaluate[evaluate.index("--status-json") + 1] == (
        W("train_classification_output") + "/evaluate/status.json")
    for template in tao5.steps("convert-trt"):
        options = report_options(template)
        assert options[options.index("--status-json") + 1] == (
            W("convert_trt_results_dir") + "/status.json")


def test_int8_engine_refuses_to_start_without_the_tensorfile_and_moves_the_cache_aside(tao5):
    int8, fp = sorted(tao5.steps("convert-trt"), key=lambda t: "--cal_data_file" in
                      tao_command(t), reverse=True)
    options = report_options(int8)
    assert options[options.index("--require") + 1] == W("calibrate_output_file")
    kept = [options[i + 1] for i, o in enumerate(options) if o == "--keep-previous"]
    assert kept == [W("convert_trt_output_file"), W("convert_trt_results_dir"),
                    W("export_int8_cache_file")]
    assert "--require" not in report_options(fp)


def test_each_tao5_engine_is_measured_where_it_was_built(tao5):
    # TAO Deploy's evaluate (tao_deploy@a285787 classification_tf1/scripts/evaluate.py):
    # -m engine, -e, -r and -c required or used; no -k, no --gpus; -b 1 evaluates every image
    measure = ["classification_tf1", "evaluate", "-m", W("convert_trt_output_file"),
               "-e", W("retrain_classification_spec"),
               "-r", W("convert_trt_results_dir") + "/evaluate",
               "-c", W("test_infer_class_map"), "-b", "1"]
    engines = tao5.steps("convert-trt")
    measurements = tao5.steps("evaluate-engine")
    assert len(measurements) == 2
    tasks = tao5.tasks()
    dag_of = {task["template"]: dag for dag, task in tasks.values()}
    for template in measurements:
        assert tao_command(template) == measure
        options = report_options(template)
        assert options[options.index("report") + 1:options.index("--out-dir")] == [
            "engine", "--engine", W("convert_trt_output_file"),
            "--precision", P("convert_trt_precision"),
            "--max-drop", P("max_engine_accuracy_drop")]
        assert template["container"]["image"] == engines[0]["container"]["image"]
        assert template["container"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        assert "retryStrategy" not in template
        env = {e["name"]: e.get("value") for e in template["container"]["env"]}
        assert "TAO_API_KEY" not in env
    # each runs after its own engine, in the same precision condition, behind the gate
    by_dag = {dag_of[t["name"]]: t["name"] for t in engines}
    for template in measurements:
        dag = dag_of[template["name"]]
        assert dag in ("condition-int8-engine-4", "condition-fp-engine-5")
        (_, task), = [v for v in tasks.values() if v[1]["template"] == template["name"]]
        engine_task = [n for n, (d, t) in tasks.items() if t["template"] == by_dag[dag]]
        assert task["dependencies"] == engine_task
    assert tao5.gates()["evaluate-engine"][0] == "reevaluate-model"


def test_tao5_engine_steps_share_the_gpu_node_selector(tmp_path):
    workflow = CompiledWorkflow(compile_workflow(
        tmp_path, *TAO5, "--node-selector", "nvidia.com/gpu.product=A100"))
    for name in ("convert-trt", "evaluate-engine"):
        for template in workflow.steps(name):
            assert template["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}, name


def test_convert_trt_waits_for_the_onnx_export_and_calibration(tao5):
    edges = tao5.step_edges()
    assert ("export-model", "convert-trt") in edges
    assert ("calibrate-model", "convert-trt") in edges
    assert ("preflight", "calibrate-model") in edges


def test_reports_naming_the_quality_gate_are_told_the_release(tao5):
    for step in ("reevaluate-model", "summary"):
        options = tao5.step(step)["container"]["args"]
        at = options.index("--tao-version")
        assert options[at + 1] == "5.0", step


def test_preflight_checks_the_tao5_form(tao5):
    args = tao5.step("preflight")["container"]["args"]
    assert args[args.index("--workspace") + 2:][:2] == ["--tao-version", "5.0"]
    given = {a.split("=", 1)[0] for a in args if "=" in a and not a.startswith("{")}
    assert "convert_trt_results_dir" in given and not set(DROPPED) & given


def test_argo_and_kubernetes_accept_the_tao5_build(tao5):
    assert argo_problems(tao5.doc) is None
    for name, pod in pods_with_defaults(tao5.doc).items():
        assert kubernetes_problems(pod) == [], name


def test_3_0_build_rejects_tao5_options_and_5_0_rejects_dropped_parameters(capsys):
    line = main_error(capsys, "--deploy-image", "r/d:1")  # exit 2, one line
    assert "--deploy-image: TAO 3.0 has no deploy image" in line
    line = main_error(capsys, *TAO5, "--param", "convert_trt_dims=3,224,224")
    assert "--param convert_trt_dims: not a Create Run parameter of the TAO 5.0 build" in line
    line = main_error(capsys, *TAO5, "--step-timeout", "export-int8-model=2h")
    assert "--step-timeout: the TAO 5.0 build has no step export-int8-model" in line
    line = main_error(capsys, "--param", "convert_trt_results_dir=x")
    assert "of the TAO 3.0 build" in line
    for line in (main_error(capsys, *TAO5, "--param", "prune_model_output_file=out/p.tlt"),
                 main_error(capsys, *TAO5, "--param", "export_model_output_file=out/m.etlt")):
        assert re.search(r"must end in \.(hdf5|onnx)", line), line
