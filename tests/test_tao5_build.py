"""The TAO 5 (TF1) build (--tao-version 5.0), through the user's entry point: the compiled
workflow a cluster receives, the independent validators, and the dry run end to end."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, compile_workflow, main_error
from test_dry_run import dry_run
from validation import argo_problems, kubernetes_problems, pods_with_defaults

import tao_iva_classification_ops as ops
from rehearsal.workflow_view import CompiledWorkflow
from tao_step import profiles

TAO5 = ("--tao-version", "5.0")
STEPS = ("preflight", "download-model", "train-model", "evaluate-model", "prune-model",
         "retrain-model", "reevaluate-model", "test-infer", "export-model", "calibrate-model",
         "convert-trt", "summary")
DROPPED = ("export_int8_model_output_file", "convert_trt_output_layer", "convert_trt_dims",
           "convert_trt_input_type")


def P(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def W(name: str) -> str:
    return f"{P('tao_mount_dir')}/{P(name)}"


@pytest.fixture(scope="module")
def tao5(tmp_path_factory) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path_factory.mktemp("tao5"), *TAO5))


def tao_command(template: dict) -> list:
    args = template["container"]["args"]
    return args[args.index("--") + 1:]


def report_options(template: dict) -> list:
    args = template["container"]["args"]
    return args[:args.index("--")]


# The 5.0 commands: classification_tf1 with the subtask first (the wrapper reads only
# argv[1]); -k only for subtasks that read a model; export reads the spec (-e).
COMMANDS = {
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


def test_each_step_runs_the_tao5_command(tao5):
    for step, command in COMMANDS.items():
        assert tao_command(tao5.step(step)) == command, step
    assert tao_command(tao5.step("retrain-model"))[:2] == ["classification_tf1", "train"]
    engines = sorted((tao_command(t) for t in tao5.steps("convert-trt")), key=len)
    assert engines == [ENGINE + ENGINE_TAIL, ENGINE + INT8 + ENGINE_TAIL]
    assert "export-int8-model" not in {tao5.display_name(t) for t in tao5.container_templates}


def test_images_per_step_are_the_tao5_builds(tao5):
    images = ops.default_images(profiles.TAO_5_0)
    assert images["train"].startswith("tao-toolkit-kfp:5.0.0-tf1.15.5-")
    assert images["deploy"].startswith("tao-toolkit-kfp:5.0.0-deploy-")
    for template in tao5.container_templates:
        role = "deploy" if tao5.display_name(template) == "convert-trt" else "train"
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


@pytest.mark.e2e
def test_dry_run_rehearses_the_whole_tao5_pipeline_and_a_rerun(tmp_path):
    workspace = tmp_path / "ws"
    for _ in ("first run", "re-run"):  # the re-run moves the first one's outputs aside
        result, statuses = dry_run(*TAO5, "--workspace", str(workspace))
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(statuses) == set(STEPS)
        assert all(s == ["Succeeded"] for s in statuses.values()), statuses
    export = workspace / "tao-experiments" / "export"
    assert (export / "final_model.onnx").is_file() and (export / "final_model.trt").is_file()
    assert list(export.glob("final_model.onnx.previous-*"))
    assert list(export.glob("final_model_int8_cache.bin.previous-*"))
    assert (workspace / "tao-experiments/output/weights/resnet_080.hdf5").is_file()


@pytest.mark.e2e
def test_dry_run_fp16_engine_needs_no_calibration_and_hdf5_models_no_key(tmp_path):
    # an empty key: the wrapper drops "-k ''", and .hdf5 models need none
    result, statuses = dry_run(*TAO5, "--param", "convert_trt_precision=fp16",
                               "--param", "api_key=")
    assert result.returncode == 0, result.stdout
    # the FP variant of convert-trt built the engine; the INT8 one never started
    assert re.search(r"Succeeded\s+convert-trt-2 \(convert-trt\)", result.stdout)
    assert re.search(r"Skipped\s+condition-int8-engine", result.stdout)


@pytest.mark.e2e
def test_dry_run_catches_a_failure_tao5_reports_only_in_status_json():
    result, statuses = dry_run(*TAO5, env={"FAKE_TAO_FAIL": "evaluate:status"})
    assert result.returncode == 1
    assert statuses["evaluate-model"] == ["Failed"]
    assert "exited 0 but recorded a failure" in result.stdout
    assert "Evaluate was interrupted" in result.stdout


@pytest.mark.e2e
def test_dry_run_preflight_applies_the_tao5_spec_rules(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for spec in (REPO / "specs" / "tao5").glob("*.cfg"):
        text = spec.read_text().replace('  preprocess_mode: "caffe"\n', "")
        (specs / spec.name).write_text(text)
    result, statuses = dry_run(*TAO5, "--specs", str(specs))
    assert result.returncode == 1 and statuses["preflight"] == ["Failed"]
    assert "train_config.preprocess_mode: missing (required: TAO 5 requires it" in result.stdout
    assert statuses["train-model"] == ["Omitted"]  # no GPU step started


def test_committed_tao5_dag_picture_matches_the_compiled_pipeline(tao5):
    from test_docs import load_renderer

    committed = (REPO / "docs" / "images" / "pipeline-dag-tao5.gv").read_text()
    assert load_renderer().build_graph(tao5).source == committed, (
        "DAG changed: regenerate with `.venv/bin/python docs/render_dag.py`")
    assert "classification_tf1 gen_trt_engine" in committed
    assert "export-int8-model" not in committed
