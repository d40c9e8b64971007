"""The dry run, as users run it: the whole compiled pipeline against the fake TAO.

Also the catalogue of misconfigurations: each is reported by compile-time validation or by
the preflight step, never first by a GPU step.
"""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import REPO, run_compiler

from rehearsal.fake_tao.make_dataset import make_dataset

STATUS = re.compile(r"^\s+(Succeeded|Failed|Skipped|Omitted)\s+([\w-]+):", re.M)
STEPS = ("preflight", "download-model", "train-model", "evaluate-model", "prune-model",
         "retrain-model", "reevaluate-model", "test-infer", "export-model", "calibrate-model",
         "export-int8-model", "convert-trt", "summary")
GATED = ("export-model", "export-int8-model", "convert-trt")


@pytest.fixture(autouse=True)
def scratch_in_pytest_tmp(tmp_path, monkeypatch):
    """Failed dry runs keep their logs for the user: in tests, under pytest's tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def dry_run(*args: str, env: dict | None = None):
    result = run_compiler("--dry-run", *args, env=env)
    statuses = {}
    for status, name in STATUS.findall(result.stdout):
        if not name.startswith("condition-"):
            statuses.setdefault(name, []).append(status)
    return result, statuses


def test_default_pipeline_succeeds_end_to_end():
    package = REPO / "tao_iva_classification_pipeline.py.tar.gz"
    before = package.stat().st_mtime_ns if package.exists() else None
    result, statuses = dry_run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses) == set(STEPS)
    assert all(s == ["Succeeded"] for s in statuses.values()), statuses
    assert "Failed" not in result.stdout
    # a rehearsal writes no package, and leaves a user's own build alone
    assert (package.stat().st_mtime_ns if package.exists() else None) == before


def test_quality_gate_below_threshold_skips_every_export(tmp_path):
    result, statuses = dry_run("--param", "min_accuracy=0.99", "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 1
    assert statuses["reevaluate-model"] == ["Succeeded"]
    for step in GATED:
        assert step not in statuses  # inside a skipped group: never started
    assert re.search(r"Skipped\s+condition-gate-fp32-export", result.stdout)
    assert re.search(r"Skipped\s+condition-gate-int8-export", result.stdout)
    assert statuses["summary"] == ["Failed"]  # the run shows the model did not pass
    assert "quality gate failed" in result.stdout and "below min_accuracy 99" in result.stdout
    assert not (tmp_path / "ws" / "tao-experiments" / "export" / "final_model.etlt").exists()


def test_quality_gate_above_threshold_exports(tmp_path):
    result, statuses = dry_run("--param", "min_accuracy=0.5")
    assert result.returncode == 0, result.stdout
    assert all(statuses[s] == ["Succeeded"] for s in GATED)


def test_a_failing_step_stops_only_what_depends_on_it_and_a_fixed_rerun_succeeds(tmp_path):
    workspace = tmp_path / "ws"
    result, statuses = dry_run("--workspace", str(workspace), env={"FAKE_TAO_FAIL": "prune"})
    assert result.returncode == 1
    assert statuses["prune-model"] == ["Failed"]
    for step in ("retrain-model", "reevaluate-model", "test-infer", "summary"):
        assert statuses[step] == ["Omitted"], step
    for step in ("preflight", "download-model", "calibrate-model", "train-model",
                 "evaluate-model"):
        assert statuses[step] == ["Succeeded"], step
    assert "simulated crash" in result.stdout and "prune-model" in result.stdout
    calibration = workspace / "tao-experiments" / "export" / "calibration.tensor"
    checkpoint = workspace / "tao-experiments" / "output" / "weights" / "resnet_080.tlt"
    before = calibration.read_bytes(), checkpoint.read_bytes()

    rerun, statuses = dry_run("--workspace", str(workspace))
    assert rerun.returncode == 0, rerun.stdout
    # what the first run produced is still there, moved aside, byte for byte
    (kept_calibration,) = calibration.parent.glob("calibration.tensor.previous-*")
    (kept_output,) = checkpoint.parents[2].glob("output.previous-*")
    assert kept_calibration.read_bytes() == before[0]
    assert (kept_output / "weights" / "resnet_080.tlt").read_bytes() == before[1]


def test_running_twice_on_one_workspace_loses_nothing(tmp_path):
    workspace = tmp_path / "ws"
    assert dry_run("--workspace", str(workspace))[0].returncode == 0
    export = workspace / "tao-experiments" / "export"
    first = {p.name: p.read_bytes() for p in export.iterdir()}
    second, _ = dry_run("--workspace", str(workspace))
    assert second.returncode == 0, second.stdout
    for name, content in first.items():
        (kept,) = export.glob(f"{name}.previous-*")
        assert kept.read_bytes() == content
        assert (export / name).exists()


def test_deployment_options_rehearse_too():
    result, statuses = dry_run("--key-secret", "tao-key", "--ngc-secret", "ngc-api", "--pvc",
                               "tao-ws", "--node-selector", "gpu=true", "--gpu-toleration")
    assert result.returncode == 0, result.stdout
    assert all(s == ["Succeeded"] for s in statuses.values())


def test_the_key_never_appears_in_the_report():
    result, _ = dry_run("--param", "api_key=s3cr3t-key-value", env={"FAKE_TAO_FAIL": "train"})
    assert result.returncode == 1
    assert "s3cr3t-key-value" not in result.stdout + result.stderr
    assert "-k ***" in result.stdout


# ------------------------------------------------------------------ misconfigurations
# Caught when compiling: one line per problem, exit status 2, nothing written.
COMPILE_TIME = [
    ("train_num_gpus=two", "train_num_gpus"),
    ("prune_threshold=1.5", "prune_threshold"),
    ("prune_equalization_criterion=average", "prune_equalization_criterion"),
    ("convert_trt_precision=int4", "convert_trt_precision"),
    ("convert_trt_dims=224,224", "convert_trt_dims"),
    ("convert_trt_input_type=chw", "convert_trt_input_type"),
    ("train_classification_output=/data/output", "train_classification_output"),
    ("test_infer_image_path=../elsewhere/images", "test_infer_image_path"),
    ("min_accuracy=90", "min_accuracy"),
    ("tao_mount_dir=mnt/workspace", "tao_mount_dir"),
    ("convert_trt_batch_size=128", "convert_trt_batch_size"),
    ("pretrained_model_name=resnet18", "pretrained_model_name"),
]


@pytest.mark.parametrize("param, name", COMPILE_TIME)
def test_form_mistakes_are_caught_when_compiling(tmp_path, param, name):
    out = tmp_path / "p.yaml"
    result = run_compiler("--param", param, "-o", str(out))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tao_iva_classification_pipeline.py: error: " + name), line
    assert "Traceback" not in result.stderr and not out.exists()


def test_an_unknown_form_field_is_caught_when_compiling():
    result = run_compiler("--param", "learning_rate=0.1")
    assert result.returncode == 2
    assert "'learning_rate' is not a Create Run parameter" in result.stderr


def edited_specs(tmp_path, name: str, old: str, new: str):
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs)
    path = specs / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return ["--specs", str(specs)]


TRAIN, RETRAIN = "classification_spec.cfg", "classification_retrain_spec.cfg"
CHECKPOINTS = "tao-experiments/output/weights"


def empty_car_folder(split):
    for image in (split / "train" / "car").iterdir():
        image.unlink()


def keep_only_person(split):
    for part in ("train", "val", "test"):
        for name in ("bicycle", "car", "dog"):
            shutil.rmtree(split / part / name)

RETRAIN_START = "/mnt/workspace/tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt"

# Caught by the preflight step: it fails, and no other step starts.
PREFLIGHT = {
    "checkpoint name vs n_epochs": (
        lambda tmp: ["--param", f"prune_model_input_file={CHECKPOINTS}/resnet_020.tlt"],
        "prune_model_input_file: tao-experiments/output/weights/resnet_020.tlt does not match"),
    "missing spec file": (
        lambda tmp: ["--param", "train_classification_spec=specs/mine.cfg"],
        "specs/mine.cfg"),
    "spec syntax error": (
        lambda tmp: edited_specs(tmp, TRAIN, "n_epochs: 80", "n_epochs 80 }"),
        "classification_spec.cfg:"),
    "unknown spec field": (
        lambda tmp: edited_specs(tmp, TRAIN, "n_epochs: 80", "n_epochs: 80\n  n_epoch: 80"),
        "n_epoch"),
    "missing required field": (
        lambda tmp: edited_specs(tmp, TRAIN, '  batch_size_per_gpu: 64\n', ""),
        "batch_size_per_gpu"),
    "enum out of range": (
        lambda tmp: edited_specs(tmp, TRAIN, '"caffe"', '"keras"'),
        "preprocess_mode"),
    "retrain not from the pruned model": (
        lambda tmp: edited_specs(tmp, RETRAIN, RETRAIN_START,
                                 "/mnt/workspace/tao-experiments/output/weights/resnet_080.tlt"),
        "pretrained_model_path"),
    "retrain freezes blocks": (
        lambda tmp: edited_specs(tmp, RETRAIN, "  input_image_size",
                                 "  freeze_blocks: 0\n  input_image_size"),
        "freeze_blocks"),
    "spec path outside the workspace": (
        lambda tmp: edited_specs(tmp, TRAIN, '"/mnt/workspace/tao-experiments/data/split/val"',
                                 '"/data/split/val"'),
        "/data/split/val"),
    "pretrained model not where ngc puts it": (
        lambda tmp: edited_specs(tmp, TRAIN, "pretrained_classification_vresnet18/resnet_18.hdf5",
                                 "resnet18/resnet_18.hdf5"),
        "pretrained_model_path"),
    "engine input size vs spec": (
        lambda tmp: ["--param", "convert_trt_dims=3,256,256"],
        "convert_trt_dims"),
    "missing test image folder": (
        lambda tmp: ["--param", "test_infer_image_path=tao-experiments/data/split/test/people"],
        "test_infer_image_path"),
    "val lacks a class": (
        lambda tmp: broken_dataset(tmp, lambda split: shutil.rmtree(split / "val" / "dog")),
        "dog"),
    "class folder without images": (
        lambda tmp: broken_dataset(tmp, empty_car_folder),
        "car"),
    "only one class": (
        lambda tmp: broken_dataset(tmp, keep_only_person),
        "class"),
    "missing split": (
        lambda tmp: broken_dataset(tmp, lambda split: shutil.rmtree(split / "val")),
        "split/val"),
}


def broken_dataset(tmp_path, damage):
    """A workspace whose dataset the dry run will not replace, damaged on purpose."""
    workspace = tmp_path / "ws"
    data = workspace / "tao-experiments" / "data"
    make_dataset(str(data), counts={"train": 170, "val": 6, "test": 6})
    damage(data / "split")
    return ["--workspace", str(workspace)]


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
def test_workspace_mistakes_are_caught_by_preflight_before_any_gpu_step(tmp_path, case):
    make_args, expected = PREFLIGHT[case]
    result, statuses = dry_run(*make_args(tmp_path))
    assert result.returncode == 1, result.stdout
    assert statuses.pop("preflight") == ["Failed"]
    assert all(s == ["Omitted"] for s in statuses.values()), statuses
    tail = result.stdout[result.stdout.index("Step preflight"):]
    assert expected in tail, tail
    assert "Traceback" not in result.stdout
