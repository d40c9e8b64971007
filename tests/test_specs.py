"""tao_step.specs: the spec schema, its line-numbered problems, the spec-check CLI, and the
Python 3.6 floor of the in-container package."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS
from in_container import PYTHON

from tao_step import specs

TRAIN_SPEC = os.path.join(SPECS, "classification_spec.cfg")
RETRAIN_SPEC = os.path.join(SPECS, "classification_retrain_spec.cfg")


def spec_text():
    with open(TRAIN_SPEC) as handle:
        return handle.read()


def line_of(text, fragment):
    """1-based line of the first line of ``text`` containing ``fragment``."""
    for number, line in enumerate(text.split("\n"), 1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in the spec")


def problems_of(text):
    return [str(problem) for problem in specs.check_spec_text(text, "spec.cfg")[1]]


def edited(old, new):
    text = spec_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("path", [TRAIN_SPEC, RETRAIN_SPEC])
def test_fixture_specs_are_valid(path):
    spec, problems = specs.check_spec_file(path)
    assert problems == []
    assert spec.message.model_config.arch == "resnet"
    assert spec.message.train_config.n_epochs == 80


def test_field_reads_value_and_line():
    spec, _ = specs.check_spec_file(TRAIN_SPEC)
    text = spec_text()
    assert spec.field("train_config.n_epochs") == (80, line_of(text, "n_epochs: 80"))
    assert spec.field("model_config.freeze_blocks") == ([0, 1], line_of(text, "freeze_blocks"))
    assert spec.lines("model_config.freeze_blocks") == [
        line_of(text, "freeze_blocks: 0"), line_of(text, "freeze_blocks: 1")]
    assert spec.field("train_config.optimizer.sgd.momentum")[1] == line_of(text, "momentum")
    # Unwritten fields read as TAO's defaults, with no line.
    assert spec.field("train_config.random_seed") == (0, None)
    assert spec.field("model_config.use_pooling") == (False, None)
    assert not spec.has("train_config.random_seed")


def test_problem_format():
    problem = specs.Problem("specs/a.cfg", 12, "train_config.n_epochs", "0 must be at least 1")
    assert str(problem) == "specs/a.cfg:12: train_config.n_epochs: 0 must be at least 1"
    assert str(specs.Problem("a.cfg", None, None, "no such file")) == "a.cfg: no such file"


# Blocks of the fixture spec, to delete.
SGD = ("    sgd {\n      lr: 0.01\n      decay: 0.0\n      momentum: 0.9\n      nesterov: false\n"
       "    }\n")
STEP = "    step {\n      learning_rate: 0.006\n      step_size: 10\n      gamma: 0.1\n    }\n"
LR_CONFIG = "  lr_config {\n" + STEP + "  }\n"

# Each edit of the valid spec, and the one problem it must produce (line found by fragment).
SPEC_MISTAKES = [
    ("syntax error", ("  optimizer {", "  optimizer"), "sgd {",
     'train_config.optimizer: Expected "{"'),
    ("missing colon", ("n_epochs: 80", "n_epochs 80"), "n_epochs 80",
     'train_config.n_epochs: Expected ":"'),
    ("unknown field", ("n_epochs: 80", "n_epoch: 80"), "n_epoch: 80",
     "train_config.n_epoch: unknown field (did you mean n_epochs?)"),
    ("unknown nested field", ("momentum: 0.9", "momentom: 0.9"), "momentom",
     "train_config.optimizer.sgd.momentom: unknown field (did you mean momentum?)"),
    ("integer expected", ("batch_size_per_gpu: 16", "batch_size_per_gpu: sixteen"), "sixteen",
     "train_config.batch_size_per_gpu: sixteen is not a whole number"),
    ("negative count", ("n_epochs: 80", "n_epochs: -5"), "n_epochs",
     "train_config.n_epochs: -5 is out of range"),
    ("unquoted string", ('arch: "resnet"', "arch: resnet"), "arch",
     'model_config.arch: text values go in double quotes (write "resnet")'),
    ("written twice", ("n_epochs: 80", "n_epochs: 80\n  n_epochs: 20"), "n_epochs: 20",
     "train_config.n_epochs: written more than once"),
    ("two optimizers", ("    sgd {", "    adam { lr: 0.1 }\n    sgd {"), "    sgd {",
     "train_config.optimizer.sgd: adam and sgd cannot both be set"),
    ("bad enum", ("n_layers: 18", "n_layers: 18\n  resize_interpolation_method: NEAREST"),
     "NEAREST", "resize_interpolation_method: NEAREST is not a valid value (use one of BILI"),
    ("missing required", ("  n_epochs: 80\n", ""), "train_config {",
     "train_config.n_epochs: missing (required: e.g. n_epochs: 80)"),
    ("missing block", (LR_CONFIG, ""), "train_config {", "train_config.lr_config: missing"),
    ("unknown arch", ('arch: "resnet"', 'arch: "resnett"'), "arch",
     '"resnett" is not a TAO classification architecture (did you mean resnet?)'),
    ("bad depth", ("n_layers: 18", "n_layers: 17"), "n_layers",
     "model_config.n_layers: 17 is not a depth TAO builds for resnet"),
    ("image size form", ('"3,224,224"', '"3x224x224"'), "input_image_size",
     'model_config.input_image_size: "3x224x224" is not C,H,W'),
    ("image channels", ('"3,224,224"', '"4,224,224"'), "input_image_size",
     "has 4 channels (C must be 1 for grayscale or 3 for colour images)"),
    ("image too small", ('"3,224,224"', '"3,8,224"'), "input_image_size",
     "is too small (H and W must be at least 16)"),
    ("preprocess mode", ('preprocess_mode: "caffe"', 'preprocess_mode: "keras"'),
     "preprocess_mode", '"keras" is not a preprocessing mode (use one of tf, caffe, torch'),
    ("regularizer", ('type: "L2"', 'type: "l2"'), "type:",
     'train_config.reg_config.type: "l2" is not a regularizer (use one of "L1", "L2", "None")'),
    ("weight decay", ("weight_decay: 0.00005", "weight_decay: 1.5"), "weight_decay",
     "train_config.reg_config.weight_decay: 1.5 is not in (0, 1)"),
    ("no optimizer", (SGD, ""), "optimizer {",
     "train_config.optimizer: names no optimizer (add one of sgd { ... }, adam { ... }"),
    ("zero lr", ("lr: 0.01", "lr: 0"), "lr: 0", "train_config.optimizer.sgd.lr: 0 must be > 0"),
    ("zero learning rate", ("learning_rate: 0.006", "learning_rate: 0.0"), "learning_rate",
     "train_config.lr_config.step.learning_rate: 0 must be > 0"),
    ("no schedule", (STEP, ""), "lr_config {",
     "train_config.lr_config: names no schedule (add one of step { ... }, soft_anneal { ... }"),
    ("zero epochs", ("n_epochs: 80", "n_epochs: 0"), "n_epochs",
     "train_config.n_epochs: 0 must be at least 1"),
    ("zero batch", ("batch_size_per_gpu: 16", "batch_size_per_gpu: 0"), "batch_size_per_gpu: 0",
     "train_config.batch_size_per_gpu: 0 must be at least 1"),
    ("zero workers", ("n_workers: 16", "n_workers: 0"), "n_workers: 0",
     "train_config.n_workers: 0 must be > 0"),
    ("zero top_k", ("top_k: 3", "top_k: 0"), "top_k", "eval_config.top_k: 0 must be at least 1"),
    ("relative path", ('"/mnt/workspace/tao-experiments/data/split/val"',
     '"tao-experiments/data/split/val"'), "val_dataset_path",
     'train_config.val_dataset_path: "tao-experiments/data/split/val" is relative'),
]


@pytest.mark.parametrize("edit, line_fragment, expected",
                         [case[1:] for case in SPEC_MISTAKES],
                         ids=[case[0] for case in SPEC_MISTAKES])
def test_each_spec_mistake_is_reported_once_with_its_line(edit, line_fragment, expected):
    text = edited(*edit)
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"spec.cfg:{line_of(text, line_fragment)}: "), problems
    assert expected in problems[0]


def test_missing_blocks_are_one_problem_each():
    problems = problems_of("")
    assert [problem.split(" (")[0] for problem in problems] == [
        "spec.cfg: model_config: missing",
        "spec.cfg: train_config: missing",
        "spec.cfg: eval_config: missing",
    ]


def test_tao_3_and_5_head_fields_are_both_accepted():
    for field in ("use_imagenet_head: true", "retain_head: true"):
        assert problems_of(edited("n_layers: 18", "n_layers: 18\n  " + field)) == []


def test_missing_file_and_folder_are_problems_not_tracebacks(tmp_path):
    assert [str(p) for p in specs.check_spec_file(str(tmp_path / "nope.cfg"))[1]] == [
        f"{tmp_path / 'nope.cfg'}: no such file (check the path)"]
    assert [str(p) for p in specs.check_spec_file(str(tmp_path))[1]] == [
        f"{tmp_path}: is a folder, not a spec file"]


def run_cli(*arguments):
    return subprocess.run([PYTHON, "-m", "tao_step", "spec-check", *arguments],
                          cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)


def test_cli_ok_problems_and_usage(tmp_path):
    good = run_cli(TRAIN_SPEC, RETRAIN_SPEC)
    assert good.returncode == 0
    assert good.stdout.splitlines() == [f"{TRAIN_SPEC}: OK", f"{RETRAIN_SPEC}: OK"]

    bad_spec = tmp_path / "bad.cfg"
    bad_spec.write_text(edited("n_epochs: 80", "n_epochs: 0"))
    missing = str(tmp_path / "missing.cfg")
    bad = run_cli(TRAIN_SPEC, str(bad_spec), missing)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f"{TRAIN_SPEC}: OK",
        f"{bad_spec}:26: train_config.n_epochs: 0 must be at least 1",
        f"{missing}: no such file (check the path)",
    ]
    assert "Traceback" not in bad.stderr

    for usage in ([], ["--frobnicate", TRAIN_SPEC]):
        result = run_cli(*usage)
        assert result.returncode == 2
        assert "usage: python3 -m tao_step spec-check [--tao-version" in result.stderr


def tool(name):
    """A console script installed next to the running Python (the venv's)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    assert os.path.exists(path), f"{name} is not installed next to {sys.executable}"
    return path


VERMIN_36 = ["-t=3.6-", "--no-tips", "--violations", "--eval-annotations"]


def test_in_container_package_runs_on_python_3_6():
    result = subprocess.run([tool("vermin"), *VERMIN_36, "tao_step"], cwd=ROOT,
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_check_catches_newer_python(tmp_path):
    """The vermin flags above do reject what Python 3.6 lacks."""
    newer = [
        "from dataclasses import dataclass\n",
        "x = 1\nprint(f'{x=}')\n",
        "if (n := 1):\n    pass\n",
        "import subprocess\nsubprocess.run(['true'], capture_output=True)\n",
    ]
    for source in newer:
        (tmp_path / "new.py").write_text(source)
        result = subprocess.run([tool("vermin"), *VERMIN_36, str(tmp_path / "new.py")],
                                check=False, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, source


def test_ruff_clean():
    # The whole project, as pyproject.toml configures it (tao_step/ has its own py36 rules).
    result = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=ROOT,
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
