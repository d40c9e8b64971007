"""Each op's argv and resources, built directly as a pipeline author would."""

from __future__ import annotations

import pytest
from kfp import dsl

import tao_iva_classification_ops as ops


def argv(op) -> list:
    return op.container.command + op.container.args


def gpu_limit(op):
    resources = op.container.resources
    return (resources.limits or {}).get("nvidia.com/gpu") if resources else None


def test_download_model_uses_the_ngc_cli_on_path_and_no_gpu():
    op = ops.DownloadModelOp(name="dl", model="nvidia/tao/m:v1", dest="/ws/models")
    assert argv(op) == ["ngc", "registry", "model", "download-version", "nvidia/tao/m:v1",
                        "--dest", "/ws/models"]
    assert gpu_limit(op) is None
    assert not op.volumes  # NGC needs no shared memory


def test_train_requests_the_parameterised_gpu_count():
    gpus = dsl.PipelineParam(name="train_num_gpus")
    op = ops.TrainOp(name="t", spec="/ws/s.cfg", results_dir="/ws/out", num_gpus=gpus, key="k1")
    assert argv(op) == ["classification", "train", "--gpus", str(gpus), "-k", "k1",
                        "-e", "/ws/s.cfg", "-r", "/ws/out"]
    assert gpu_limit(op) == str(gpus)


def test_evaluate():
    op = ops.EvaluateOp(name="e", spec="/ws/s.cfg", key="k1")
    assert argv(op) == ["classification", "evaluate", "-e", "/ws/s.cfg", "-k", "k1"]
    assert gpu_limit(op) == "1"


def test_prune():
    op = ops.PruneOp(name="p", model="/ws/m.tlt", output_file="/ws/p.tlt", threshold="0.6",
                     equalization_criterion="union", key="k1")
    assert argv(op) == ["classification", "prune", "-k", "k1", "-m", "/ws/m.tlt",
                        "-o", "/ws/p.tlt", "-pth", "0.6", "-eq", "union"]
    assert gpu_limit(op) == "1"


def test_inference():
    op = ops.InferenceOp(name="i", spec="/ws/s.cfg", model="/ws/m.tlt", image_dir="/ws/img",
                         batch_size="16", class_map="/ws/cm.json", key="k1")
    assert argv(op) == ["classification", "inference", "-k", "k1", "-e", "/ws/s.cfg",
                        "-m", "/ws/m.tlt", "-d", "/ws/img", "-b", "16", "-cm", "/ws/cm.json"]


def test_export_fp32():
    op = ops.ExportOp(name="x", model="/ws/m.tlt", output_file="/ws/m.etlt", key="k1")
    assert argv(op) == ["classification", "export", "-m", "/ws/m.tlt", "-k", "k1",
                        "-o", "/ws/m.etlt"]


def test_calibration_tensorfile_needs_no_gpu_but_shared_memory():
    op = ops.CalibrationTensorfileOp(name="c", spec="/ws/s.cfg", max_batches="10",
                                     output_file="/ws/cal.tensor")
    assert argv(op) == ["classification", "calibration_tensorfile", "-e", "/ws/s.cfg",
                        "-m", "10", "-o", "/ws/cal.tensor"]
    assert gpu_limit(op) is None
    assert [m.mount_path for m in op.container.volume_mounts] == ["/dev/shm"]
    assert op.volumes[0].empty_dir.medium == "Memory"


def test_export_int8():
    op = ops.ExportInt8Op(name="x8", model="/ws/m.tlt", output_file="/ws/m8.etlt",
                          calibration_tensorfile="/ws/cal.tensor", data_type="int8",
                          batches="10", calibration_cache="/ws/cache.bin", key="k1")
    assert argv(op) == ["classification", "export", "-m", "/ws/m.tlt", "-k", "k1",
                        "-o", "/ws/m8.etlt", "--cal_data_file", "/ws/cal.tensor",
                        "--data_type", "int8", "--batches", "10",
                        "--cal_cache_file", "/ws/cache.bin", "-v"]


ENGINE = dict(model="/ws/m8.etlt", key="k1", output_node="predictions/Softmax",
              dims="3,224,224", input_type="nchw", max_batch_size="64",
              engine_file="/ws/m.trt", batch_size="64")


def test_convert_trt_with_calibration_cache():
    op = ops.ConvertTrtInt8Op(name="trt", calibration_cache="/ws/cache.bin", precision="int8",
                              **ENGINE)
    assert argv(op) == ["converter", "/ws/m8.etlt", "-k", "k1", "-o", "predictions/Softmax",
                        "-c", "/ws/cache.bin", "-d", "3,224,224", "-i", "nchw", "-m", "64",
                        "-t", "int8", "-e", "/ws/m.trt", "-b", "64"]
    assert gpu_limit(op) == "1"


def test_convert_trt_without_calibration_cache():
    op = ops.ConvertTrtOp(name="trt", precision="fp16", **ENGINE)
    assert "-c" not in argv(op)
    assert argv(op)[argv(op).index("-t") + 1] == "fp16"


@pytest.mark.parametrize("op_class", [ops.EvaluateOp, ops.TrainOp, ops.PruneOp, ops.ExportOp])
def test_arguments_are_keyword_only(op_class):
    with pytest.raises(TypeError):
        op_class("name", "/ws/a", "/ws/b")
