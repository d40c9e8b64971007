"""The TAO 5 (TF1) spec schema and the specs shipped for it (specs/tao5/).

The 5.0 rules are TAO 5's own (tao_tensorflow1_backend@d73dcfc,
nvidia_tao_tf1/cv/makenet/spec_handling/constants.py and cv/common/spec_validator.py):
a spec they reject must be rejected here, naming the field and line.
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import REPO
from in_container import PYTHON

from tao_step import specs

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
