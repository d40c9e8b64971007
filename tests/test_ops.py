"""Each op's resources, runtime wrapper and outputs, built directly as a pipeline author would.

Each step's TAO/NGC argv is asserted once on the compiled workflow (test_compiled_workflow's
ORIGINAL_ARGV and TAO5_ARGV) and in the golden file, not again here."""

from __future__ import annotations

import pytest
from kfp import dsl

import tao_iva_classification_ops as ops
from tao_step.profiles import TAO_3_0

P3 = {"profile": TAO_3_0}


def argv(op) -> list:
    """The TAO/NGC command the op runs (under tao_step report)."""
    return op.tao_command


def wrapper(op) -> list:
    full = op.container.command + op.container.args
    assert full[:5] == ["python3", "-c", ops.RUNTIME_BOOTSTRAP, "--require-runtime", "3"]
    assert full[full.index("--") + 1:] == op.tao_command
    return full[5:full.index("--")]


def gpu_limit(op):
    resources = op.container.resources
    return (resources.limits or {}).get("nvidia.com/gpu") if resources else None


def test_download_model_uses_the_ngc_cli_on_path_and_no_gpu():
    op = ops.DownloadModelOp(name="dl", model="nvidia/tao/m:v1", dest="/ws/models")
    assert gpu_limit(op) is None
    assert [(e.name, e.value) for e in op.container.env] == [("NVIDIA_VISIBLE_DEVICES", "void")]
    assert not op.volumes  # NGC needs no shared memory
    assert wrapper(op) == ["report", "run", "--ngc-model", "nvidia/tao/m:v1",
                           "--ngc-dest", "/ws/models", "--out-dir", ops.OUTPUTS_DIR]
    assert op.file_outputs == {} and not op.output_artifact_paths  # publishes nothing


def test_train_requests_the_parameterised_gpu_count():
    gpus = dsl.PipelineParam(name="train_num_gpus")
    op = ops.TrainOp(**P3, name="t", label="baseline", spec="/ws/s.cfg", results_dir="/ws/out",
                     num_gpus=gpus, key="k1", use_amp="false")
    assert gpu_limit(op) == str(gpus)
    assert wrapper(op) == ["report", "train", "--results-dir", "/ws/out", "--label", "baseline",
                           "--hand-over", f"/ws/out/{ops.TRAINING_REPORT}",
                           "--switch", "use_amp=false",
                           "--out-dir", ops.OUTPUTS_DIR, "--keep-previous", "/ws/out"]
    # Its report goes to the evaluate step: no mlpipeline-* artifacts of its own.
    assert not op.publishes and op.output_artifact_paths == {} and op.file_outputs == {}


def test_evaluate_publishes_and_outputs_no_verdict_without_a_threshold():
    op = ops.EvaluateOp(**P3, name="e", label="baseline", spec="/ws/s.cfg", key="k1",
                        results_dir="/ws/out/evaluate",
                        training_results="/ws/out")
    assert gpu_limit(op) == "1"
    assert wrapper(op) == ["report", "evaluate", "--label", "baseline", "--spec", "/ws/s.cfg",
                           "--training-report", f"/ws/out/{ops.TRAINING_REPORT}",
                           "--out-dir", ops.OUTPUTS_DIR]
    assert op.publishes and op.output_artifact_paths == ops.UI_OUTPUTS
    assert op.file_outputs == {}  # the top-1 goes out as a metric, and to the summary


def test_evaluate_with_a_threshold_outputs_the_gate_verdict():
    op = ops.EvaluateOp(**P3, name="e", label="retrained", spec="/ws/s.cfg", key="k1",
                        results_dir="/ws/out/evaluate", training_results="/ws/out",
                        min_accuracy="0.9")
    options = wrapper(op)
    assert options[options.index("--min-accuracy") + 1] == "0.9"
    assert options[options.index("--gate-file") + 1] == f"{ops.OUTPUTS_DIR}/gate"
    assert op.file_outputs["gate"] == f"{ops.OUTPUTS_DIR}/gate"


def test_prune():
    op = ops.PruneOp(**P3, name="p", model="/ws/m.tlt", output_file="/ws/p.tlt", threshold="0.6",
                     equalization_criterion="union", key="k1")
    assert gpu_limit(op) == "1"
    assert op.file_outputs == {}  # the ratio is in its markdown, and kept for the summary
    assert wrapper(op)[-2:] == ["--keep-previous", "/ws/p.tlt"]


def test_export_fp32():
    op = ops.ExportOp(**P3, name="x", model="/ws/m.tlt", output_file="/ws/m.etlt", key="k1",
                      spec="/ws/s.cfg")
    # TAO refuses to overwrite an export: an earlier one is moved aside first.
    assert wrapper(op) == ["report", "run", "--out-dir", ops.OUTPUTS_DIR,
                           "--keep-previous", "/ws/m.etlt"]


def test_calibration_tensorfile_requests_a_gpu_and_shared_memory():
    op = ops.CalibrationTensorfileOp(**P3, name="c", spec="/ws/s.cfg", max_batches="10",
                                     output_file="/ws/cal.tensor")
    # TAO's wrapper stops unless nvidia-smi lists a GPU, even for this subtask.
    assert gpu_limit(op) == "1" and not op.container.env
    assert [m.mount_path for m in op.container.volume_mounts] == ["/dev/shm"]
    assert op.volumes[0].empty_dir.medium == "Memory"


ENGINE = dict(model="/ws/m8.etlt", key="k1", output_node="predictions/Softmax",
              dims="3,224,224", input_type="nchw", max_batch_size="64",
              engine_file="/ws/m.trt", batch_size="64")


def test_convert_trt_with_calibration_cache():
    op = ops.ConvertTrtInt8Op(name="trt", calibration_cache="/ws/cache.bin", precision="int8",
                              **ENGINE)
    assert gpu_limit(op) == "1"


def test_convert_trt_without_calibration_cache():
    op = ops.ConvertTrtOp(name="trt", precision="fp16", **ENGINE)
    assert "-c" not in argv(op)
    assert argv(op)[argv(op).index("-t") + 1] == "fp16"


def test_preflight_and_summary_run_the_runtime_without_gpu_or_shared_memory():
    preflight = ops.PreflightOp(name="preflight", workspace="/ws", values={"a": "1", "b": "x=y"},
                                tao_version="3.0")
    full = preflight.container.command + preflight.container.args
    assert full[5:] == ["preflight", "--workspace", "/ws", "--run", "{{workflow.name}}",
                        "--run-uid", "{{workflow.uid}}", "--param", "a=1", "--param", "b=x=y"]
    summary = ops.SummaryOp(profile=TAO_3_0, name="summary", workspace="/ws",
                            artifacts={"engine": "/ws/m.trt", "fp32-model": "/ws/m.etlt"})
    full = summary.container.command + summary.container.args
    assert full[5:] == ["summary", "--out-dir", ops.OUTPUTS_DIR, "--workspace", "/ws",
                        "--run", "{{workflow.name}}", "--run-uid", "{{workflow.uid}}",
                        "--status", "{{workflow.status}}", "--failures", "{{workflow.failures}}",
                        "--artifact", "engine", "/ws/m.trt",
                        "--artifact", "fp32-model", "/ws/m.etlt"]
    # the exit handler publishes the report (no metrics: the run's two are evaluate's)
    assert summary.publishes and not preflight.publishes
    assert summary.output_artifact_paths == ops.UI_OUTPUTS
    for op in (preflight, summary):
        assert gpu_limit(op) is None and not op.volumes and not op.runs_tao
        # the image's NVIDIA_VISIBLE_DEVICES=all must not give them the node's GPUs
        assert [(e.name, e.value) for e in op.container.env] == [
            ("NVIDIA_VISIBLE_DEVICES", "void")]


@pytest.mark.parametrize("op_class", [ops.EvaluateOp, ops.TrainOp, ops.PruneOp, ops.ExportOp])
def test_arguments_are_keyword_only(op_class):
    with pytest.raises(TypeError):
        op_class("name", "/ws/a", "/ws/b")


def op_classes() -> list:
    """Every step class the ops module defines."""
    found, todo = [], [ops.TaoOp]
    while todo:
        subclasses = todo.pop().__subclasses__()
        found += [c for c in subclasses if c.__module__ == ops.__name__]
        todo += subclasses
    return sorted(found, key=lambda c: c.__name__)


def test_a_step_that_publishes_is_never_retried():
    # A Retry node would carry its metrics too, listing the step twice (ops.NO_RETRY).
    publishing = [c.__name__ for c in op_classes() if c.publishes]
    assert publishing == ["ConvertTrtInt8Op", "ConvertTrtOp", "EvaluateEngineOp", "EvaluateOp",
                          "GenTrtEngineOp",
                          "InferenceOp", "PruneOp", "PublishingOp", "SummaryOp"]
    assert [c.__name__ for c in op_classes() if c.publishes and c.retry] == []


def test_the_op_transformer_applies_the_ops_policy_not_its_name():
    import tao_iva_classification_pipeline as pipeline

    class Fetch(ops.TaoOp):  # a step the pipeline has never heard of
        runs_tao = False
        gpus = 0
        retry = ops.RETRY_ANY_FAILURE
        secrets = (ops.NGC_KEY,)

    class Publish(ops.TaoOp):
        publishes = True
        retry = ops.NO_RETRY
        secrets = (ops.TAO_KEY,)

    options = pipeline.CompileOptions(key_secret=pipeline.SecretRef("tao", "key"),
                                      ngc_secret=pipeline.SecretRef("ngc", "api"))
    apply = pipeline._step_settings("/ws", options)
    # Named like the steps that get the opposite policy, to show names play no part.
    fetch = apply(Fetch(name="train-model", command=["ngc", "x"]))
    publish = apply(Publish(name="download-model", command=["classification", "x"],
                            report=("prune",)))

    def secrets(op) -> dict:
        return {e.name: e.value_from.secret_key_ref.name for e in op.container.env
                if e.value_from}

    assert secrets(fetch) == {"NGC_CLI_API_KEY": "ngc"}
    assert (fetch.num_retries, fetch.retry_policy, fetch.backoff_duration,
            fetch.backoff_factor) == (3, "Always", "30s", 2)
    assert fetch.container.resources.requests == {"cpu": "250m", "memory": "512Mi"}
    assert gpu_limit(fetch) is None
    assert secrets(publish) == {"TAO_API_KEY": "tao"}
    assert publish.num_retries == 0 and publish.output_artifact_paths == ops.UI_OUTPUTS
    assert publish.container.resources.requests == {"cpu": "4", "memory": "16Gi"}
    assert gpu_limit(publish) == "1"
