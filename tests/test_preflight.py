"""tao_step.preflight: a catalogue of misconfigurations, each caught with its message, and
the command line."""

import os
import shutil
import subprocess
import time

import pytest
from conftest import MOUNT, ORIGINAL_DEFAULTS, REPO, ROOT
from in_container import PYTHON

import tao_iva_classification_pipeline as pipeline
from rehearsal.dry_run import seed_workspace
from tao_step import preflight
from tao_step.profiles import TAO_5_0


def workspace_problems(workspace, values, mount_dir=None):
    return preflight.Preflight(workspace, values, mount_dir).run().problems


TRAIN_SPEC = "specs/classification_spec.cfg"
RETRAIN_SPEC = "specs/classification_retrain_spec.cfg"
DATA = "tao-experiments/data/split"


def run(workspace, values):
    """All problems preflight finds: the values, then the workspace."""
    return preflight.validate_values(values) + workspace_problems(
        str(workspace), values, MOUNT)


def edit(workspace, relative, old, new):
    path = workspace / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def line_of(workspace, relative, fragment):
    for number, line in enumerate((workspace / relative).read_text().split("\n"), 1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in {relative}")


def test_good_workspace_passes(workspace, values):
    assert run(workspace, values) == []
    assert preflight.Preflight(str(workspace), values, MOUNT).run().warnings == []


def test_original_defaults_pass_the_value_checks():
    """What the compile step runs: the form values alone, no files."""
    assert preflight.validate_values(ORIGINAL_DEFAULTS) == []


def test_original_defaults_fail_on_the_checkpoint_names(workspace):
    """The original's known defect: resnet_020.tlt while the specs train 80 epochs."""
    line = line_of(workspace, TRAIN_SPEC, "n_epochs: 80")
    retrain_line = line_of(workspace, RETRAIN_SPEC, "n_epochs: 80")
    assert run(workspace, dict(ORIGINAL_DEFAULTS)) == [
        ("prune_model_input_file: tao-experiments/output/weights/resnet_020.tlt does not match "
         "the checkpoint train-model writes (tao-experiments/output/weights/resnet_080.tlt: arch "
         f"resnet, n_epochs 80 in {TRAIN_SPEC} line {line}); set prune_model_input_file to that "
         "path"),
        ("test_infer_model_input_file: tao-experiments/output-retrain/weights/resnet_020.tlt does "
         "not match the checkpoint retrain-model writes (tao-experiments/output-retrain/weights/"
         f"resnet_080.tlt: arch resnet, n_epochs 80 in {RETRAIN_SPEC} line {retrain_line}); set "
         "test_infer_model_input_file to that path"),
        ("export_model_input_file: tao-experiments/output-retrain/weights/resnet_020.tlt does not "
         "match the checkpoint retrain-model writes (tao-experiments/output-retrain/weights/"
         f"resnet_080.tlt: arch resnet, n_epochs 80 in {RETRAIN_SPEC} line {retrain_line}); set "
         "export_model_input_file to that path"),
    ]


# -- the catalogue --------------------------------------------------------------------------
# Each case: (id, {parameter: new value}, workspace edit or None, expected fragments, count).
# Every expected fragment must appear in one problem; count is how many problems there are.


def remove(relative):
    def apply(workspace):
        shutil.rmtree(str(workspace / relative))
    return apply


def spec_edit(relative, old, new):
    def apply(workspace):
        edit(workspace, relative, old, new)
    return apply


def empty_class(workspace):
    folder = workspace / DATA / "train" / "dog"
    for image in folder.iterdir():
        image.unlink()


def rename_val_class(workspace):
    os.rename(str(workspace / DATA / "val" / "dog"), str(workspace / DATA / "val" / "cat"))


def single_class(workspace):
    for split in ("train", "val", "test"):
        for name in ("bicycle", "car", "dog"):
            shutil.rmtree(str(workspace / DATA / split / name))


def bmp_only_test_folder(workspace):
    folder = workspace / DATA / "test" / "person"
    for image in folder.iterdir():
        image.rename(image.with_suffix(".bmp"))


def class_linked_outside(workspace):
    outside = workspace.parent / "elsewhere" / "horse"
    shutil.copytree(str(workspace / DATA / "train" / "dog"), str(outside))
    os.symlink(str(outside), str(workspace / DATA / "train" / "horse"))


def output_linked_outside(workspace):
    outside = workspace.parent / "elsewhere" / "export"
    outside.mkdir(parents=True)
    os.symlink(str(outside), str(workspace / "tao-experiments" / "export"))


def export_folder_is_a_file(workspace):
    (workspace / "tao-experiments" / "export").write_text("not a folder")


def class_named_with_a_newline(workspace):
    for split in ("train", "val", "test"):
        os.rename(str(workspace / DATA / split / "dog"), str(workspace / DATA / split / "do\ng"))


CATALOGUE = [
    ("gpus not a number", {"train_num_gpus": "two"}, None,
     ['train_num_gpus: "two" is not a whole number (enter GPUs for training, e.g. 1)'], 1),
    ("gpus zero", {"train_num_gpus": "0"}, None,
     ["train_num_gpus: 0 must be at least 1 (GPUs for training)"], 1),
    ("batch size a fraction", {"test_infer_batch_size": "1.5"}, None,
     ['test_infer_batch_size: "1.5" is not a whole number'], 1),
    ("threshold out of range", {"prune_threshold": "1.5"}, None,
     ['prune_threshold: "1.5" is not a number in (0, 1]'], 1),
    ("threshold not a number", {"prune_threshold": "six"}, None,
     ['prune_threshold: "six" is not a number in (0, 1]'], 1),
    ("criterion not a choice", {"prune_equalization_criterion": "mean"}, None,
     [('prune_equalization_criterion: "mean" is not one of union, intersection, '
       "arithmetic_mean, geometric_mean")], 1),
    ("precision not a choice", {"convert_trt_precision": "INT8"}, None,
     ['convert_trt_precision: "INT8" is not one of fp32, fp16, int8'], 1),
    ("input type not a choice", {"convert_trt_input_type": "chw"}, None,
     ['convert_trt_input_type: "chw" is not one of nchw, nhwc, nc'], 1),
    ("accuracy as a percentage", {"min_accuracy": "80"}, None,
     ['min_accuracy: "80" is not a number in [0, 1]'], 1),
    ("engine batch above its maximum", {"convert_trt_batch_size": "128"}, None,
     ["convert_trt_batch_size: 128 is larger than convert_trt_max_batch_size 64"], 1),
    ("dims not C,H,W", {"convert_trt_dims": "224,224"}, None,
     ['convert_trt_dims: "224,224" is not C,H,W'], 1),
    ("dims with 4 channels", {"convert_trt_dims": "4,224,224"}, None,
     ['convert_trt_dims: "4,224,224" has 4 channels'], 1),
    ("absolute path parameter",
     {"export_model_output_file": "/mnt/workspace/tao-experiments/export/final_model.etlt"}, None,
     [("export_model_output_file: /mnt/workspace/tao-experiments/export/final_model.etlt is "
       "absolute; give it relative to tao_mount_dir")], 1),
    ("path escaping the workspace", {"calibrate_output_file": "tao-experiments/../../x.tensor"},
     None, ["calibrate_output_file: tao-experiments/../../x.tensor leads out of the workspace"],
     1),
    ("relative mount dir", {"tao_mount_dir": "mnt/workspace"}, None,
     ['tao_mount_dir: "mnt/workspace" is not an absolute path'], 1),
    ("model name without version", {"pretrained_model_name": "nvidia/tao/resnet18"}, None,
     [('pretrained_model_name: "nvidia/tao/resnet18" is not an NGC model name (write '
       "org/team/name:version")], 1),
    ("empty key", {"api_key": ""}, None, ["api_key: is empty"], 1),
    ("missing spec", {"train_classification_spec": "specs/classification.cfg"}, None,
     ["train_classification_spec: specs/classification.cfg does not exist in the workspace"], 1),
    ("spec syntax error",
     {}, spec_edit(TRAIN_SPEC, "  optimizer {", "  optimizer"),
     [f'{TRAIN_SPEC}:18: train_config.optimizer: Expected "{{"',
      f"{TRAIN_SPEC}: the rest of the file could not be checked after the syntax error"], 2),
    ("spec unknown field", {}, spec_edit(TRAIN_SPEC, "n_workers: 16", "num_workers: 16"),
     [f"{TRAIN_SPEC}:27: train_config.num_workers: unknown field (did you mean n_workers?)"], 1),
    ("spec missing required field", {}, spec_edit(RETRAIN_SPEC, "  batch_size_per_gpu: 16\n", ""),
     [f"{RETRAIN_SPEC}:10: train_config.batch_size_per_gpu: missing (required"], 1),
    ("checkpoint name vs n_epochs", {}, spec_edit(TRAIN_SPEC, "n_epochs: 80", "n_epochs: 20"),
     [(f"{TRAIN_SPEC}:48: eval_config.model_path: /mnt/workspace/tao-experiments/output/weights/"
       "resnet_080.tlt is not the checkpoint train-model writes (/mnt/workspace/tao-experiments/"
       f"output/weights/resnet_020.tlt: arch resnet, n_epochs 20 in {TRAIN_SPEC} line 26); set "
       "model_path to that path"),
      ("prune_model_input_file: tao-experiments/output/weights/resnet_080.tlt does not match the "
       "checkpoint train-model writes (tao-experiments/output/weights/resnet_020.tlt: arch "
       f"resnet, n_epochs 20 in {TRAIN_SPEC} line 26); set prune_model_input_file to that path")],
     2),
    ("retrain not from the pruned model", {},
     spec_edit(RETRAIN_SPEC, "output-pruned/resnet18_nopool_bn_pruned.tlt",
               "output/weights/resnet_080.tlt"),
     [(f"{RETRAIN_SPEC}:13: train_config.pretrained_model_path: /mnt/workspace/tao-experiments/"
       "output/weights/resnet_080.tlt is not the pruned model prune-model writes (/mnt/workspace/"
       "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt, prune_model_output_file); "
       "set pretrained_model_path to that path")], 1),
    ("prune output moved", {"prune_model_output_file": "tao-experiments/pruned/model.tlt"}, None,
     [(f"{RETRAIN_SPEC}:13: train_config.pretrained_model_path: /mnt/workspace/tao-experiments/"
       "output-pruned/resnet18_nopool_bn_pruned.tlt is not the pruned model prune-model writes "
       "(/mnt/workspace/tao-experiments/pruned/model.tlt")], 1),
    ("retrain freezing blocks", {},
     spec_edit(RETRAIN_SPEC, "  n_layers: 18\n", "  n_layers: 18\n  freeze_blocks: 0\n"),
     [(f"{RETRAIN_SPEC}:6: model_config.freeze_blocks: the retrain spec freezes blocks 0 of the "
       "pruned model; remove freeze_blocks")], 1),
    ("retrain with another architecture", {},
     spec_edit(RETRAIN_SPEC, "n_layers: 18", "n_layers: 34"),
     [f"{RETRAIN_SPEC}:5: model_config.n_layers: 34 differs from 18 in {TRAIN_SPEC} line 6"], 1),
    ("test checkpoint not the retrained one",
     {"test_infer_model_input_file": "tao-experiments/output/weights/resnet_080.tlt"}, None,
     [("test_infer_model_input_file: tao-experiments/output/weights/resnet_080.tlt does not match "
       "the checkpoint retrain-model writes (tao-experiments/output-retrain/weights/"
       "resnet_080.tlt")], 1),
    ("class map of the first run",
     {"test_infer_class_map": "tao-experiments/output/classmap.json"}, None,
     [("test_infer_class_map: tao-experiments/output/classmap.json does not match the class map "
       "retrain-model writes (tao-experiments/output-retrain/classmap.json")], 1),
    ("missing dataset split", {}, remove(DATA + "/val"),
     [(f"{TRAIN_SPEC}:15: train_config.val_dataset_path: /mnt/workspace/{DATA}/val does not "
       "exist (looked at")], 1),
    ("train/val class mismatch", {}, rename_val_class,
     [(f"{TRAIN_SPEC}:15: train_config.val_dataset_path: classes differ from train_dataset_path "
       "(only in train: dog; only here: cat); train and val need the same class folders")], 1),
    ("single class", {"calibrate_max_batches": "2"}, single_class,
     [(f"{TRAIN_SPEC}:14: train_config.train_dataset_path: /mnt/workspace/{DATA}/train has a "
       "single class folder (person); classification needs at least 2 classes"),
      (f"{TRAIN_SPEC}:15: train_config.val_dataset_path: /mnt/workspace/{DATA}/val has a single "
       "class folder"), (f"{TRAIN_SPEC}:47: eval_config.eval_dataset_path: /mnt/workspace/"
       f"{DATA}/test has a single class folder")], 3),
    ("class folder without images", {"calibrate_max_batches": "5"}, empty_class,
     [(f"{TRAIN_SPEC}:14: train_config.train_dataset_path: class folders without images in "
       f"/mnt/workspace/{DATA}/train: dog (add .png, .jpg")], 1),
    ("not enough images to calibrate", {"calibrate_max_batches": "11"}, None,
     [("calibrate_max_batches: 11 batches of 16 images (batch_size_per_gpu in "
       f"{RETRAIN_SPEC} line 22) need 176 training images but {DATA}/train has 160; set "
       "calibrate_max_batches to 10 or less")], 1),
    ("missing test image folder", {"test_infer_image_path": DATA + "/test/horse"}, None,
     [f"test_infer_image_path: {DATA}/test/horse does not exist in the workspace"], 1),
    ("test folder without inference images", {}, bmp_only_test_folder,
     [f"test_infer_image_path: {DATA}/test/person holds no .jpg, .jpeg or .png images"], 1),
    ("engine dims vs input_image_size", {"convert_trt_dims": "3,112,112"}, None,
     [('convert_trt_dims: 3,112,112 disagrees with input_image_size "3,224,224" in '
       f"{RETRAIN_SPEC} line 8 (the exported model takes that size); set convert_trt_dims to "
       "3,224,224")], 1),
    ("calibration spec of another size", {"calibrate_classification_spec": "specs/calib.cfg"},
     lambda ws: (ws / "specs" / "calib.cfg").write_text(
         (ws / RETRAIN_SPEC).read_text().replace('"3,224,224"', '"3,112,112"')),
     [('specs/calib.cfg:8: model_config.input_image_size: "3,112,112" differs from the retrained '
       "model's")], 1),
    ("pretrained model not where ngc puts it", {"pretrained_model_dir": "pretrained"}, None,
     [(f"{TRAIN_SPEC}:16: train_config.pretrained_model_path: /mnt/workspace/models/"
       "pretrained_classification_vresnet18/resnet_18.hdf5 is not where download-model puts "
       "nvidia/tao/pretrained_classification:resnet18 (ngc writes /mnt/workspace/pretrained/"
       "pretrained_classification_vresnet18/resnet_18.hdf5); set pretrained_model_path to that "
       "file")], 1),
    ("pretrained model of another version",
     {"pretrained_model_name": "nvidia/tao/pretrained_classification:resnet50"}, None,
     ["(ngc writes /mnt/workspace/models/pretrained_classification_vresnet50/resnet_50.hdf5)"],
     1),
    ("spec path outside the workspace", {},
     spec_edit(TRAIN_SPEC, '"/mnt/workspace/tao-experiments/data/split/train"',
               '"/workspace/tao-experiments/data/split/train"'),
     [(f"{TRAIN_SPEC}:14: train_config.train_dataset_path: /workspace/tao-experiments/data/split/"
       "train is outside /mnt/workspace (tao_mount_dir), the only folder the steps mount; did you "
       "mean /mnt/workspace/tao-experiments/data/split/train?")], 1),
    ("relative path in a spec", {},
     spec_edit(TRAIN_SPEC, '"/mnt/workspace/tao-experiments/data/split/test"',
               '"tao-experiments/data/split/test"'),
     [(f'{TRAIN_SPEC}:47: eval_config.eval_dataset_path: "tao-experiments/data/split/test" is '
       "relative")], 1),
    ("unknown parameter", {"train_num_gpu": "1"}, None,
     ["train_num_gpu: not a parameter of this pipeline"], 1),
    ("class folder linked outside the workspace", {}, class_linked_outside,
     [(f"{TRAIN_SPEC}:14: train_config.train_dataset_path: class folder horse in /mnt/"
       f"workspace/{DATA}/train is a symbolic link to "), "the class would silently be missing"],
     1),
    ("results linked outside the workspace", {}, output_linked_outside,
     [f"{name}: tao-experiments/export is a symbolic link to " for name in (
         "export_model_output_file", "calibrate_output_file", "export_int8_cache_file",
         "export_int8_model_output_file", "convert_trt_output_file")], 5),
    ("an output's folder is a file", {}, export_folder_is_a_file,
     ["calibrate_output_file: tao-experiments/export is a file, so calibrate-model cannot "
      "write tao-experiments/export/calibration.tensor"], 5),
    ("class name with a newline", {"calibrate_max_batches": "5"}, class_named_with_a_newline,
     [(f"{TRAIN_SPEC}:14: train_config.train_dataset_path: folder names in /mnt/workspace/"
       f"{DATA}/train with invisible characters (newlines, text-direction controls): 'do\\ng'")],
     3),
    ("bidirectional control in a path", {"export_model_output_file": "x/\u202eetlt.exe"}, None,
     ["export_model_output_file: the value contains the invisible character U+202E"], 1),
    ("gpus with a non-ASCII digit", {"train_num_gpus": "\u0661"}, None,
     ['train_num_gpus: "\u0661" is not a whole number'], 1),
    ("mount dir with ..", {"tao_mount_dir": "/mnt/workspace/../../etc"}, None,
     ['tao_mount_dir: "/mnt/workspace/../../etc" cannot be the mount point'], 1),
    ("key as an option", {"api_key": "--help"}, None,
     ['api_key: the value starts with "-", so TAO (-k) would read it as an option'], 1),
    ("output node in the wrong case", {"convert_trt_output_layer": "predictions/softmax"}, None,
     ['convert_trt_output_layer: "predictions/softmax" is not the output node of a TAO '
      "classification model; enter predictions/Softmax"], 1),
    ("folder too deep for PATH_MAX",
     {"train_classification_data": "data/" + "/".join(["d" * 201] * 19)}, None,
     ["train_classification_data: tao_mount_dir/train_classification_data is 3857 bytes long; "
      "Linux takes paths of at most 4095 bytes and the files TAO writes in it, or a re-run's "
      ".previous-<UTC time> copy, add up to 256 (shorten train_classification_data or "
      "tao_mount_dir by at least 18 bytes)"], 1),
    ("file too long for PATH_MAX once a re-run keeps it",
     {"export_model_output_file": "x/" + "/".join(["d" * 201] * 20) + "/final_model.etlt"},
     None,
     ["export_model_output_file: tao_mount_dir/export_model_output_file is 4073 bytes long; "
      "Linux takes paths of at most 4095 bytes and a re-run's .previous-<UTC time> copy adds "
      "29 (shorten export_model_output_file or tao_mount_dir by at least 7 bytes)"], 1),
    ("int8 export over the fp32 export",
     {"export_int8_model_output_file": "tao-experiments/export/final_model.etlt"}, None,
     ["export_int8_model_output_file: tao-experiments/export/final_model.etlt is also "
      "export_model_output_file, which export-model writes"], 1),
]


@pytest.mark.parametrize("changes, workspace_edit, expected, count",
                         [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE])
def test_catalogue(workspace, values, changes, workspace_edit, expected, count):
    values.update(changes)
    if workspace_edit:
        workspace_edit(workspace)
    problems = run(workspace, values)
    for fragment in expected:
        assert sum(fragment in problem for problem in problems) == 1, (fragment, problems)
    assert len(problems) == count, problems


def test_image_extensions_are_case_insensitive(workspace, values):
    for image in (workspace / DATA / "train" / "dog").iterdir():
        image.rename(image.with_suffix(".JPEG"))
    for image in (workspace / DATA / "test" / "person").iterdir():
        image.rename(image.with_suffix(".Png"))
    assert run(workspace, values) == []


def test_calibration_advice_is_a_value_the_form_accepts(workspace, values):
    for folder in (workspace / DATA / "train").iterdir():
        for image in sorted(folder.iterdir())[1:]:
            image.unlink()  # one image per class: fewer than one batch of 16
    values["calibrate_max_batches"] = "1"
    (problem,) = [p for p in run(workspace, values) if p.startswith("calibrate_max_batches")]
    assert "not even one batch fits: add at least" in problem
    assert "to 0 or less" not in problem
    # the advice it used to give, "0 or less", is what the compile-time check refuses
    assert preflight.value_error("calibrate_max_batches", "0") is not None


def test_catalogue_is_large_and_distinct():
    assert len(CATALOGUE) >= 15
    assert len({case[0] for case in CATALOGUE}) == len(CATALOGUE)


def test_missing_parameter(values):
    del values["convert_trt_dims"]
    assert preflight.validate_values(values) == [
        "convert_trt_dims: no value given (every Create Run parameter needs one)"]


def test_value_checks_need_no_files(values):
    """validate_values is pure: it judges text only, wherever it runs."""
    values["tao_mount_dir"] = "/does/not/exist"
    assert preflight.validate_values(values) == []


def test_existing_outputs_are_warnings_not_problems(workspace, values):
    export = workspace / "tao-experiments" / "export"
    export.mkdir(parents=True)
    (export / "final_model.etlt").write_text("x")
    (export / "final_model.trt").write_text("x")
    weights = workspace / "tao-experiments" / "output" / "weights"
    weights.mkdir(parents=True)
    (weights / "resnet_080.tlt").write_text("x")
    assert run(workspace, values) == []
    kept = "exists from an earlier run; {} moves it to {}.previous-<UTC time> first " \
           "(delete old copies to save space)"
    assert preflight.Preflight(str(workspace), values, MOUNT).run().warnings == [
        "train_classification_output: tao-experiments/output " + kept.format(
            "train-model", "tao-experiments/output"),
        "export_model_output_file: tao-experiments/export/final_model.etlt " + kept.format(
            "export-model", "tao-experiments/export/final_model.etlt"),
        "convert_trt_output_file: tao-experiments/export/final_model.trt " + kept.format(
            "convert-trt", "tao-experiments/export/final_model.trt"),
    ]


def test_mount_dir_defaults_to_the_workspace(workspace, values):
    """In the pipeline the workspace is mounted where the specs point: no --mount-dir."""
    for relative in (TRAIN_SPEC, RETRAIN_SPEC):
        text = (workspace / relative).read_text()
        (workspace / relative).write_text(text.replace("/mnt/workspace/", str(workspace) + "/"))
    values["tao_mount_dir"] = str(workspace)
    assert preflight.validate_values(values) + workspace_problems(
        str(workspace), values) == []


def preflight_cli(workspace, values, *extra):
    arguments = [PYTHON, "-m", "tao_step", "preflight", "--workspace", str(workspace),
                 *extra]
    for name, value in values.items():
        arguments += ["--param", f"{name}={value}"]
    return subprocess.run(arguments, cwd=ROOT, check=False, capture_output=True, text=True,
                          timeout=60)


def test_cli_passes_a_good_workspace_quickly(workspace, values):
    started = time.monotonic()
    result = preflight_cli(workspace, values, "--mount-dir", MOUNT)
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        ("preflight OK: 36 values, 2 spec files, 4 classes (bicycle, car, dog, person), "
         "0 warnings")]


def test_cli_reports_problems_and_warnings(workspace, values):
    values["train_num_gpus"] = "two"
    export = workspace / "tao-experiments" / "export"
    export.mkdir(parents=True)
    (export / "calibration.tensor").write_text("x")
    result = preflight_cli(workspace, values, "--mount-dir", MOUNT)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        'train_num_gpus: "two" is not a whole number (enter GPUs for training, e.g. 1)',
        ("warning: calibrate_output_file: tao-experiments/export/calibration.tensor exists "
         "from an earlier run; calibrate-model moves it to tao-experiments/export/"
         "calibration.tensor.previous-<UTC time> first (delete old copies to save space)"),
        "preflight: 1 problem, 1 warning; fix them and start the run again",
    ]


def test_cli_value_with_equals_sign_and_usage_errors(workspace, values):
    values["api_key"] = "a=b"
    assert preflight_cli(workspace, values, "--mount-dir", MOUNT).returncode == 0
    for broken in (["--param", "novalue"], ["--param", "api_key=x", "--param", "api_key=y"]):
        result = subprocess.run(
            [PYTHON, "-m", "tao_step", "preflight", "--workspace", str(workspace),
             *broken], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "usage: python3 -m tao_step preflight" in result.stderr
    result = subprocess.run([PYTHON, "-m", "tao_step", "preflight"], cwd=ROOT,
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--workspace" in result.stderr


def test_cli_missing_workspace(tmp_path, values):
    result = preflight_cli(tmp_path / "nowhere", values)
    assert result.returncode == 1
    assert f"--workspace {tmp_path / 'nowhere'}: no such folder" in result.stdout


@pytest.mark.parametrize("changes, expected", [
    ({"train_classification_output": "tao-experiments"},
     ["train_classification_output: tao-experiments holds train_classification_data",
      "train_classification_output: tao-experiments holds test_infer_image_path",
      "train_classification_output: tao-experiments holds retrain_classification_output"]),
    ({"retrain_classification_output": "tao-experiments/output"},
     ["train_classification_output: tao-experiments/output holds retrain_classification_output",
      "retrain_classification_output: tao-experiments/output holds train_classification_output"]),
    ({"train_classification_output": "specs"},
     ["train_classification_output: specs holds train_classification_spec",
      "train_classification_output: specs holds retrain_classification_spec",
      "train_classification_output: specs holds calibrate_classification_spec"]),
])
def test_results_folders_never_hold_inputs(values, changes, expected):
    # Before a step runs, an earlier run's results folder is moved aside: an input inside
    # it would vanish under the step (or a step running beside it).
    problems = [p for p in preflight.validate_values(dict(values, **changes)) if " holds " in p]
    assert [p.split(" (")[0] for p in problems] == expected
    assert all("give it a folder of its own" in p for p in problems)


@pytest.mark.parametrize("classes, largest, minimum, warned", [
    (32, 101, "0.5", True),  # a 1,024-cell matrix and a class of 101 images
    (32, 100, "0.5", False),  # every class readable from the report
    (31, 500, "0.5", False),  # numpy prints 961 cells whole
    (32, 101, "0", False),  # no gate, nothing can fail
])  # (largest: the images of the first class in all)
def test_warns_when_the_gate_may_lack_a_top1(workspace, values, classes, largest, minimum,
                                             warned):
    split = workspace / DATA / "test"
    existing = sorted(p.name for p in split.iterdir())
    for n in range(classes - len(existing)):
        (split / f"extra_{n:02d}").mkdir()
        (split / f"extra_{n:02d}" / "a.jpg").write_bytes(b"")
    for n in range(largest - len(list((split / existing[0]).iterdir()))):
        (split / existing[0] / f"many_{n:03d}.jpg").write_bytes(b"")
    warnings = preflight.Preflight(str(workspace), dict(values, min_accuracy=minimum),
                                   MOUNT).run().warnings
    found = [w for w in warnings if "cannot be read exactly" in w]
    assert len(found) == warned
    if warned:
        assert found[0].startswith(f"{RETRAIN_SPEC}: eval_config.eval_dataset_path has "
                                   f"{classes} classes, 1 with more than 100 images")


def test_a_mount_dir_that_leaves_no_room_is_one_problem(values):
    """Not one line per path parameter: none of them could be short enough."""
    values["tao_mount_dir"] = "/mnt/" + "/".join(["m" * 201] * 19)
    assert preflight.validate_values(values) == [
        "tao_mount_dir: /mnt/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm... is 3842 bytes long; Linux "
        "takes paths of at most 4095 bytes, and every path of the run is "
        "tao_mount_dir/<value> with up to 256 bytes more that the steps add (shorten it)"]


# -- values TAO's wrapper re-reads with bash ------------------------------------------------
# TAO's wrapper joins every option unquoted into bash -c '...' (tao_tensorflow1_backend@d73dcfc
# nvidia_tao_tf1/cv/common/entrypoint/entrypoint.py, launch_job; tao_deploy@a285787
# entrypoint_proto.py): values reaching it may hold only what bash passes unchanged
# (tao_step/shell.py, tests/test_shell.py). Issue 15's hostile values, refused when compiling
# (CompileOptions.problems) and by the preflight step, each in one line.
BASH_HOSTILE = [
    ("export_model_output_file", "tao-experiments/export/m`touch${IFS}pwned`.etlt",
     "'`' (U+0060)"),
    ("train_classification_output", "tao-experiments/out;rm", "';' (U+003B)"),
    ("prune_model_output_file", "tao-experiments/p|q.tlt", "'|' (U+007C)"),
    ("calibrate_output_file", "tao-experiments/export/c&.tensor", "'&' (U+0026)"),
    ("retrain_classification_output", "tao-experiments/$USER", "'$' (U+0024)"),
    ("test_infer_class_map", "tao-experiments/${X}/classmap.json", "'$' (U+0024)"),
    ("export_int8_cache_file", "tao-experiments/export/it's.bin", '"\'" (U+0027)'),
    ("export_int8_model_output_file", 'tao-experiments/export/"q".etlt', "'\"' (U+0022)"),
    ("test_infer_model_input_file", "tao-experiments\\w.tlt", "'\\\\' (U+005C)"),
    ("export_model_input_file", "tao-experiments/output-retrain/weights/*.tlt", "'*' (U+002A)"),
    ("test_infer_image_path", "tao-experiments/data/split/test/[p]erson", "'[' (U+005B)"),
    ("train_classification_spec", "specs/my spec.cfg", "' ' (U+0020)"),
    ("tao_mount_dir", "/mnt/work space", "' ' (U+0020)"),
    ("retrain_classification_spec", "~/spec.cfg", "'~' (U+007E)"),
    ("api_key", "nv$key", "the key contains a character that bash would change"),
    # $$ is refused in every value, bash or not: Kubernetes makes it $.
    ("export_model_output_file", "tao-experiments/export/m$$.etlt", "contains $$"),
    ("pretrained_model_dir", "models$$", "contains $$; Kubernetes turns $$ into $"),
]


@pytest.mark.parametrize("name, value, fragment", BASH_HOSTILE)
def test_values_bash_would_change_are_refused_when_compiling(name, value, fragment):
    import tao_iva_classification_pipeline as pipeline

    (problem,) = pipeline.CompileOptions(defaults=((name, value),)).problems()
    assert problem.startswith(f"{name}: ") and fragment in problem, problem
    assert "nv$key" not in problem


def preflight_step(workspace, values, bash_read, *extra):
    """The preflight step in-process, as the compiled pipeline runs it: --bash-read names
    what the build's steps hand to TAO's wrappers."""
    argv = ["--workspace", str(workspace), "--mount-dir", MOUNT, "--bash-read",
            ",".join(bash_read), *extra]
    for name, value in values.items():
        argv += ["--param", f"{name}={value}"]
    return preflight.main(argv)


@pytest.mark.parametrize("name, value, fragment", BASH_HOSTILE)
def test_values_bash_would_change_are_refused_by_the_preflight_step(
        workspace, values, capsys, name, value, fragment):
    import tao_iva_classification_pipeline as pipeline

    values[name] = value
    assert preflight_step(workspace, values, pipeline.CompileOptions().bash_read()) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("preflight: 1 problem"), lines
    assert lines[0].startswith(f"{name}: ") and fragment in lines[0]


def test_only_values_reaching_a_tao_wrapper_are_held_to_the_bash_rule(workspace, values,
                                                                     capsys):
    """3.0's converter and ngc take their argv as given: a space is fine there."""
    import tao_iva_classification_pipeline as pipeline

    three, five = (pipeline.CompileOptions(tao_version=v).bash_read() for v in ("3.0", "5.0"))
    elsewhere = {"pretrained_model_name", "pretrained_model_dir", "train_classification_data",
                 "min_accuracy", "train_use_amp", "retrain_use_amp"}  # ngc, nothing, the report
    converter = {"convert_trt_output_file", "convert_trt_output_layer", "convert_trt_dims",
                 "convert_trt_input_type", "convert_trt_max_batch_size",
                 "convert_trt_batch_size"}  # 3.0's tao-converter, a binary
    assert set(three) == set(preflight.parameters_of(preflight.profiles.TAO_3_0)) - (
        elsewhere | converter)
    assert set(five) == set(preflight.parameters_of(preflight.profiles.TAO_5_0)) - (
        elsewhere | {"max_engine_accuracy_drop"})  # the engine's report
    values["convert_trt_output_file"] = "tao-experiments/export/final model.trt"
    assert preflight_step(workspace, values, three) == 0, capsys.readouterr().out
    assert preflight.validate_values(values) == [  # without --bash-read: every value
        'convert_trt_output_file: "tao-experiments/export/final model.trt" contains \' \' '
        "(U+0020): TAO's wrapper runs every argument through bash, which would split the "
        "value into two arguments. Use only letters, digits and _ . / - + @ , = : %"]


def test_with_a_key_secret_the_key_comes_from_the_environment(workspace, values, capsys,
                                                              monkeypatch):
    """--key-from-env (a --key-secret build): the key is never an argument, which
    Kubernetes would expand into the command line any process on the node can read."""
    del values["api_key"]
    bash_read = preflight.parameters_of(preflight.profiles.TAO_3_0)
    monkeypatch.setenv(preflight.KEY_ENV, "nv-key_1")
    assert preflight_step(workspace, values, bash_read, "--key-from-env") == 0
    assert capsys.readouterr().out.startswith("preflight OK: 36 values")
    monkeypatch.setenv(preflight.KEY_ENV, "nv$key`id`")
    assert preflight_step(workspace, values, bash_read, "--key-from-env") == 1
    out = capsys.readouterr().out
    assert out.startswith("api_key: the key contains a character that bash would change")
    assert "nv$key" not in out and "`" not in out
    monkeypatch.setenv(preflight.KEY_ENV, "")
    assert preflight_step(workspace, values, bash_read, "--key-from-env") == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "api_key: the key Secret is empty ($TAO_API_KEY has no value); put the TAO model key "
        "into the Secret named when compiling (--key-secret)")
    values["api_key"] = "x"
    assert preflight_step(workspace, values, bash_read, "--key-from-env") == 2
    assert "--param api_key does not go with --key-from-env" in capsys.readouterr().err


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_tao5_preflight.py
# The preflight of the TAO 5 build: its form, its spec rules and its file names.


FORM = {p.name: p.default for p in pipeline.CompileOptions(tao_version="5.0").form()}


@pytest.fixture
def ws(tmp_path):
    """A workspace seeded for the 5.0 form with the TAO 5 specs (their paths name MOUNT)."""
    root = tmp_path / "ws"
    seed_workspace(root, form=FORM, specs_dir=REPO / "specs" / "tao5")
    return root


def problems(ws, **changes) -> list:
    values = {**FORM, **changes}
    return preflight.validate_values(values, TAO_5_0) + preflight.Preflight(
        str(ws), values, MOUNT, TAO_5_0).run().problems


def test_the_5_0_defaults_and_specs_pass(ws):
    assert problems(ws) == []


def test_the_5_0_form_is_the_one_checked():
    assert preflight.validate_values(FORM, TAO_5_0) == []
    with_dims = dict(FORM, convert_trt_dims="3,224,224")
    assert preflight.validate_values(with_dims, TAO_5_0) == [
        "convert_trt_dims: not a parameter of this pipeline (check the spelling; known: "
        + ", ".join(preflight.parameters_of(TAO_5_0)) + ")"]
    missing = {k: v for k, v in FORM.items() if k != "convert_trt_results_dir"}
    assert preflight.validate_values(missing, TAO_5_0) == [
        "convert_trt_results_dir: no value given (every Create Run parameter needs one)"]


def test_the_key_may_be_empty_in_5_0_only(ws):
    assert problems(ws, api_key="") == []
    assert preflight.validate_values({**FORM, "api_key": " x"}, TAO_5_0) == [
        "api_key: contains spaces (the TAO model key passed as -k; nvidia_tlt for NGC's public "
        "TAO models)"]
    three = {p.name: p.default for p in pipeline.CompileOptions().form()}
    assert preflight.validate_values({**three, "api_key": ""})[0].startswith("api_key: is empty")


def test_3_0_checkpoint_names_are_reported_with_the_hdf5_name(ws):
    found = problems(ws, prune_model_input_file="tao-experiments/output/weights/resnet_080.tlt")
    assert len(found) == 1
    assert found[0].startswith("prune_model_input_file: tao-experiments/output/weights/"
                               "resnet_080.tlt does not match the checkpoint train-model writes "
                               "(tao-experiments/output/weights/resnet_080.hdf5")


@pytest.mark.parametrize("name, value, fix", [
    ("prune_model_output_file", "tao-experiments/output-pruned/p.tlt",
     "name it tao-experiments/output-pruned/p.hdf5"),
    ("export_model_output_file", "tao-experiments/export/m.etlt",
     "name it tao-experiments/export/m.onnx"),
])
def test_outputs_tao5_would_rename_are_refused(name, value, fix):
    (problem,) = [p for p in preflight.validate_values({**FORM, name: value}, TAO_5_0)
                  if p.startswith(name)]
    assert problem.startswith(f"{name}: {value} must end in ") and problem.endswith(fix)


def test_the_5_0_spec_rules_apply(ws):
    spec = ws / "specs" / "classification_spec.cfg"
    spec.write_text(spec.read_text().replace("use_batch_norm: true", "use_imagenet_head: true"))
    assert any("model_config.use_imagenet_head: unknown in TAO 5.0: renamed retain_head" in p
               for p in problems(ws))


def test_engine_calibration_batch_must_fit_a_tensorfile_record(ws):
    found = problems(ws, convert_trt_batch_size="128", convert_trt_max_batch_size="128")
    assert len(found) == 1 and found[0].startswith(
        "convert_trt_batch_size: 128 is larger than the 64 images per batch of the calibration "
        "tensorfile")


def test_preflight_command_takes_the_tao_version(ws):
    params = [arg for name, value in FORM.items() for arg in ("--param", f"{name}={value}")]
    argv = [PYTHON, "-m", "tao_step", "preflight", "--workspace", str(ws),
            "--mount-dir", MOUNT, "--tao-version", "5.0", *params]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("preflight OK")
    shutil.rmtree(ws / "specs")
    assert subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                          timeout=60).returncode == 1


def test_mount_paths_in_the_shipped_tao5_specs_are_the_default_mount():
    for spec in (REPO / "specs" / "tao5").glob("*.cfg"):
        assert f"{MOUNT}/tao-experiments/" in spec.read_text()
