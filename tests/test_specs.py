"""tao_step.specs: the spec schema, its line-numbered problems, the spec-check CLI, and the
Python 3.6 floor of the in-container package."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, ROOT, SPECS
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
    ("decimal comma", ("lr: 0.01", "lr: 0,01"), "lr: 0,01",
     "train_config.optimizer.sgd.lr: 0,01 is not a number (write a decimal point, not a comma"),
    ("decimal comma, commented", ("learning_rate: 0.006", "learning_rate: 0 , 006  # x"),
     "learning_rate", "train_config.lr_config.step.learning_rate: 0 , 006 is not a number"),
    ("thousands comma", ("n_epochs: 80", "n_epochs: 1,000"), "n_epochs",
     "train_config.n_epochs: 1,000 is not a whole number (write digits only, no comma"),
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
    if problems[-1].startswith("spec.cfg: the rest of the file could not be checked"):
        problems.pop()  # after an unexplained syntax error nothing else is checked
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


def without_closing_brace_of(text, block):
    """``text`` with the ``}`` that closes the first top-level ``block`` removed."""
    start = text.index(block + " {")
    end = text.index("\n}", start)
    return text[:end] + text[end + 2:]


def test_cli_reports_a_missing_brace_as_a_syntax_error_at_its_line(tmp_path):
    text = without_closing_brace_of(spec_text(), "model_config")
    path = tmp_path / "brace.cfg"
    path.write_text(text)
    result = run_cli(str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{path}:{line_of(text, 'train_config {')}: model_config: syntax "
                           f"error: the model_config block opened on line "
                           f"{line_of(text, 'model_config {')} is not closed"), line
    assert "unknown field" not in line


def test_a_missing_brace_at_the_end_is_a_syntax_error_at_the_open_block():
    text = spec_text().rstrip()
    problems = problems_of(text[:text.rindex("}")])
    assert problems == [f"spec.cfg:{line_of(text, 'eval_config {')}: eval_config: syntax "
                        "error: the eval_config block opened here is never closed (add its } "
                        "at the end of the block)"]


def test_an_extra_brace_is_a_syntax_error_at_that_brace():
    text = edited("n_layers: 18", "n_layers: 18\n}")
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"spec.cfg:{line_of(text, 'n_layers') + 1}: syntax error: "
                                  "this } closes its block before"), problems


def test_problems_after_a_syntax_error_are_still_reported():
    text = spec_text().replace("n_epochs: 80", "n_epochs: eighty", 1)
    text = text.replace('preprocess_mode: "caffe"', 'preprocess_mode: "keras"', 1)
    text = text.replace("batch_size_per_gpu: 16", "batch_size_per_gpu: 16\n  n_epoch: 3", 1)
    problems = problems_of(text)
    assert [p.split(": ")[0:2] for p in problems] == [
        [f"spec.cfg:{line_of(text, 'n_epoch: 3')}", "train_config.n_epoch"],
        [f"spec.cfg:{line_of(text, 'eighty')}", "train_config.n_epochs"],
        [f"spec.cfg:{line_of(text, 'keras')}", "train_config.preprocess_mode"],
    ], problems
    # a spec with a syntax error is never handed on, however much of it was checked
    assert specs.check_spec_text(text, "spec.cfg")[0] is None


def test_what_cannot_be_checked_after_a_syntax_error_is_said():
    text = "model_config {\n  arch: \"resnet\n}\n"  # an unclosed string
    problems = problems_of(text)
    assert problems[-1] == ("spec.cfg: the rest of the file could not be checked after the "
                            "syntax error above; fix it and check again"), problems


def test_cli_checks_the_evaluated_checkpoint_against_n_epochs(tmp_path):
    text = spec_text().replace("resnet_080.tlt", "resnet_020.tlt")
    path = tmp_path / "epochs.cfg"
    path.write_text(text)
    result = run_cli(str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:{line_of(text, '  model_path: ')}: eval_config.model_path: resnet_020.tlt is not "
        f"the checkpoint training writes last (resnet_080.tlt: arch resnet, n_epochs 80 in "
        f"{path} line {line_of(text, 'n_epochs: ')}); name resnet_080.tlt, or change n_epochs"]


def test_spec_check_and_preflight_share_the_checkpoint_rule(tmp_path):
    from tao_step import preflight, profiles

    spec, _ = specs.check_spec_text(spec_text().replace("resnet_080.tlt", "resnet_020.tlt"),
                                    "spec.cfg")
    (problem,) = specs.checkpoint_problems(spec, profiles.TAO_3_0)
    expected, _ = specs.last_checkpoint(spec, ".tlt")
    assert expected == preflight.checkpoint_name("resnet", 80) and expected in problem.message


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


@pytest.mark.parametrize("old, new, expected", [
    ("lr: 0.01", "lr: 1e309", "train_config.optimizer.sgd.lr: inf is not a finite number"),
    ("learning_rate: 0.006", "learning_rate: 1e39",
     "train_config.lr_config.step.learning_rate: inf is not a finite number"),
    ("batch_size_per_gpu: 16", "batch_size_per_gpu: 4000000000",
     "train_config.batch_size_per_gpu: 4000000000 is more than 4096"),
    ("n_epochs: 80", "n_epochs: 99999999", "train_config.n_epochs: 99999999 is more than 10000"),
    ('input_image_size: "3,224,224"', 'input_image_size: "3,99999,99999"',
     'model_config.input_image_size: "3,99999,99999" is too large (H and W must be at most '
     "4096"),
    ('input_image_size: "3,224,224"', 'input_image_size: "3,\uff12\uff12\uff14,224"',
     "is not C,H,W"),
])
def test_values_tao_cannot_use_are_refused(old, new, expected):
    """Infinite floats, absurd counts and sizes, non-ASCII digits: one line each."""
    problems = problems_of(edited(old, new))
    assert len(problems) == 1 and expected in problems[0], problems


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0): what its spec schema adds (merged from test_tao5_specs.py)
# The TAO 5 (TF1) spec schema and the specs shipped for it (specs/tao5/).
#
# The 5.0 rules are TAO 5's own (tao_tensorflow1_backend@d73dcfc,
# nvidia_tao_tf1/cv/makenet/spec_handling/constants.py and cv/common/spec_validator.py):
# a spec they reject must be rejected here, naming the field and line.


TAO5_SPECS = sorted((REPO / "specs" / "tao5").glob("*.cfg"))


def check(text: str, schema: str = "5.0") -> list:
    return [str(p) for p in specs.check_spec_text(text, "s.cfg", schema)[1]]


def shipped(name: str = "classification_spec.cfg") -> str:
    return (REPO / "specs" / "tao5" / name).read_text()


def test_tao5_specs_pass_the_5_0_checker_and_name_hdf5_models():
    assert [p.name for p in TAO5_SPECS] == ["classification_retrain_spec.cfg",
                                            "classification_spec.cfg"]
    for path in TAO5_SPECS:
        spec, problems = specs.check_spec_file(str(path), schema="5.0")
        assert problems == [], problems
        assert spec.field("eval_config.model_path")[0].endswith("/resnet_080.hdf5")
    retrain, _ = specs.check_spec_file(str(TAO5_SPECS[0]), schema="5.0")
    assert retrain.field("train_config.pretrained_model_path")[0].endswith("_pruned.hdf5")


def test_tao5_specs_differ_from_the_3_0_ones_only_in_file_names_and_comments():
    def body(path):
        return [line for line in path.read_text().splitlines()
                if not line.lstrip().startswith("#")]

    for path in TAO5_SPECS:
        old = body(REPO / "specs" / path.name)
        assert [line.replace(".tlt", ".hdf5") for line in old] == body(path)


def test_use_imagenet_head_is_reported_as_renamed_in_5_0_but_accepted_in_3_0():
    text = shipped().replace("use_batch_norm: true", "use_imagenet_head: true")
    line = text.splitlines().index("  use_imagenet_head: true") + 1
    assert check(text) == [f"s.cfg:{line}: model_config.use_imagenet_head: unknown in TAO "
                           "5.0: renamed retain_head (write retain_head instead)"]
    assert check(text, "3.0") == []
    assert check(shipped().replace("use_batch_norm: true", "retain_head: true")) == []


@pytest.mark.parametrize("old, field", [
    ('  preprocess_mode: "caffe"\n', "train_config.preprocess_mode"),
    ("  n_workers: 16\n", "train_config.n_workers"),
    ("  n_workers: 8\n", "eval_config.n_workers"),
    ('    scope: "Conv2D,Dense"\n', "train_config.reg_config.scope"),
    ("    weight_decay: 0.00005\n", "train_config.reg_config.weight_decay"),
])
def test_fields_tao5_requires_are_reported_missing_only_in_5_0(old, field):
    text = shipped()
    assert old in text
    text = text.replace(old, "")
    problems = check(text)
    assert len(problems) == 1 and f": {field}: missing (required: TAO 5 requires" in problems[0]
    if field != "train_config.reg_config.weight_decay":  # 3.0 too needs it with L2
        assert check(text, "3.0") == []


def test_zero_weight_decay_fails_in_5_0_even_without_a_regularizer():
    text = shipped().replace('type: "L2"', 'type: "None"').replace(
        "weight_decay: 0.00005", "weight_decay: 0.0")
    assert [p.split(": ", 2)[1] for p in check(text)] == ["train_config.reg_config.weight_decay"]
    assert check(text, "3.0") == []


def test_tao5_only_fields_parse_in_5_0_and_are_unknown_in_3_0():
    text = shipped().replace("  n_epochs: 80\n",
                             "  n_epochs: 80\n  visualizer {\n    enabled: false\n  }\n")
    assert check(text) == []
    assert "unknown field" in check(text, "3.0")[0]


def run_spec_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "tao_step", "spec-check", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_spec_check_cli_takes_the_tao_version(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(shipped().replace('  preprocess_mode: "caffe"\n', ""))
    result = run_spec_check("--tao-version", "5.0", str(bad), *map(str, TAO5_SPECS))
    assert result.returncode == 1
    assert "train_config.preprocess_mode: missing" in result.stdout
    assert result.stdout.count(": OK") == 2
    assert "preprocess_mode" not in run_spec_check(str(bad)).stdout  # 3.0 has no such rule
    wrong = run_spec_check("--tao-version", "4.0", str(bad))
    assert wrong.returncode == 2 and "'4.0' is not one of 3.0, 5.0" in wrong.stderr
    assert "Traceback" not in wrong.stderr


@pytest.mark.parametrize("release, other", [("5.0", "specs"), ("3.0", "specs/tao5")])
def test_spec_check_refuses_the_other_releases_checkpoint_names_as_preflight_does(
        capsys, release, other):
    files = [str(REPO / other / name) for name in ("classification_spec.cfg",
                                                   "classification_retrain_spec.cfg")]
    assert specs.main(["--tao-version", release, *files]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    wrong, right = ("resnet_080.tlt", "resnet_080.hdf5")[::1 if release == "5.0" else -1]
    for line, file in zip(lines, files, strict=True):
        assert line.startswith(f"{file}:")
        assert (f": eval_config.model_path: {wrong} is a TAO {'3.0' if release == '5.0' else '5.0'}"
                f" checkpoint name; TAO {release} training writes {right} (") in line
        assert line.endswith(f"; name {right}")
