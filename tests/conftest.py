"""Shared fixtures: a workspace laid out as original-interface.md documents, and the run's
Create Run values. The repository root goes on ``sys.path`` so tests import ``tao_step``
and ``fake_tao`` from the checkout."""

import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MOUNT = "/mnt/workspace"
SPECS = os.path.join(ROOT, "tests", "data", "specs")

# The original Create Run defaults (original-interface.md), plus the accuracy gate.
ORIGINAL_DEFAULTS = {
    "pretrained_model_name": "nvidia/tao/pretrained_classification:resnet18",
    "pretrained_model_dir": "models",
    "train_classification_data": "tao-experiments/data",
    "train_classification_spec": "specs/classification_spec.cfg",
    "train_classification_output": "tao-experiments/output",
    "train_num_gpus": "1",
    "prune_model_input_file": "tao-experiments/output/weights/resnet_020.tlt",
    "prune_model_output_file": "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt",
    "prune_equalization_criterion": "union",
    "prune_threshold": "0.6",
    "retrain_classification_spec": "specs/classification_retrain_spec.cfg",
    "retrain_classification_output": "tao-experiments/output-retrain",
    "test_infer_model_input_file": "tao-experiments/output-retrain/weights/resnet_020.tlt",
    "test_infer_image_path": "tao-experiments/data/split/test/person",
    "test_infer_class_map": "tao-experiments/output-retrain/classmap.json",
    "test_infer_batch_size": "16",
    "export_model_input_file": "tao-experiments/output-retrain/weights/resnet_020.tlt",
    "export_model_output_file": "tao-experiments/export/final_model.etlt",
    "calibrate_classification_spec": "specs/classification_retrain_spec.cfg",
    "calibrate_max_batches": "10",
    "calibrate_output_file": "tao-experiments/export/calibration.tensor",
    "export_int8_cache_file": "tao-experiments/export/final_model_int8_cache.bin",
    "export_int8_batches": "10",
    "export_int8_model_output_file": "tao-experiments/export/final_int8_model.etlt",
    "convert_trt_output_file": "tao-experiments/export/final_model.trt",
    "convert_trt_output_layer": "predictions/Softmax",
    "convert_trt_dims": "3,224,224",
    "convert_trt_input_type": "nchw",
    "convert_trt_max_batch_size": "64",
    "convert_trt_precision": "int8",
    "convert_trt_batch_size": "64",
    "tao_mount_dir": MOUNT,
    "api_key": "nvidia_tlt",
    "min_accuracy": "0.5",
}
# The same with the checkpoint names the 80-epoch specs really produce.
GOOD_VALUES = dict(
    ORIGINAL_DEFAULTS,
    prune_model_input_file="tao-experiments/output/weights/resnet_080.tlt",
    test_infer_model_input_file="tao-experiments/output-retrain/weights/resnet_080.tlt",
    export_model_input_file="tao-experiments/output-retrain/weights/resnet_080.tlt",
)
# Images per class the generated dataset holds; with batch_size_per_gpu 16 in the fixture
# specs, 4 classes x 40 training images are exactly calibrate_max_batches=10 batches.
COUNTS = {"train": 40, "val": 10, "test": 10}


@pytest.fixture(scope="session")
def dataset_template(tmp_path_factory):
    from fake_tao.make_dataset import make_dataset

    root = str(tmp_path_factory.mktemp("dataset"))
    make_dataset(root, counts=COUNTS)
    return root


@pytest.fixture
def workspace(tmp_path, dataset_template):
    """A fresh workspace: the fixture specs in specs/ and the dataset in tao-experiments/data."""
    root = tmp_path / "ws"
    shutil.copytree(SPECS, str(root / "specs"))
    shutil.copytree(dataset_template, str(root / "tao-experiments" / "data"))
    return root


@pytest.fixture
def values():
    """Create Run values that pass preflight on ``workspace``."""
    return dict(GOOD_VALUES)
