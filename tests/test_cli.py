"""The compile command as users run it: the script for what only the script shows (where
the package goes, help, an error without a traceback, dsl-compile), in-process otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compile_workflow, main_error, read_package, run_compiler

import tao_iva_classification_cli as cli

PIPELINE_MODULES = ("tao_iva_classification_pipeline.py", "tao_iva_classification_ops.py")


def copy_without_rehearsal(folder: Path, *modules: str) -> None:
    """``modules`` and what they need in the image's build (tao_step/, docker/), and no
    rehearsal/: a fresh copy neither depends on nor clobbers the user's own build, and an
    import of the rehearsal fails in it."""
    for name in modules:
        shutil.copy(REPO / name, folder)
    shutil.copytree(REPO / "tao_step", folder / "tao_step")
    shutil.copytree(REPO / "docker", folder / "docker")


@pytest.mark.e2e
def test_default_run_writes_the_package_next_to_the_script(tmp_path):
    copy_without_rehearsal(tmp_path, *PIPELINE_MODULES, "tao_iva_classification_cli.py")
    result = subprocess.run([sys.executable, "tao_iva_classification_pipeline.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    package = tmp_path / "tao_iva_classification_pipeline.py.tar.gz"
    assert result.stdout.strip() == f"wrote {package}"
    # kfp's ContainerOp FutureWarning is not shown to users; one line says the default image
    # must be built and pushed first, and how to name the pushed one; one line says where
    # the default hostPath workspace is refused.
    image_note, hostpath_note = result.stderr.splitlines()
    assert "docker/build.sh" in image_note and "--push" in image_note and "--image" in image_note
    assert hostpath_note == cli.HOSTPATH_NOTE
    assert read_package(package)["kind"] == "Workflow"


def test_zip_and_yaml_outputs(tmp_path):
    assert cli.main(["--output", str(tmp_path / "p.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        assert yaml.safe_load(archive.read("pipeline.yaml"))["kind"] == "Workflow"
    assert cli.main(["-o", str(tmp_path / "p.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["kind"] == "Workflow"


def test_image_option_changes_every_step(tmp_path):
    doc = compile_workflow(tmp_path, "--image", "registry.example.com/ml/tao:7")
    images = {t["container"]["image"] for t in doc["spec"]["templates"] if "container" in t}
    assert images == {"registry.example.com/ml/tao:7"}


@pytest.mark.e2e
def test_help_explains_every_option():
    result = run_compiler("--help")
    assert result.returncode == 0
    for option in ("--output", "--image", ".tar.gz", ".zip", ".yaml", "docker/build.sh"):
        assert option in result.stdout


def one_error_line(result) -> str:
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.e2e
def test_bad_output_suffix_is_one_clear_line(tmp_path):
    # Through the script: one line, no traceback, and the script's name as the prefix.
    line = one_error_line(run_compiler("--output", str(tmp_path / "p.json")))
    assert line.startswith("tao_iva_classification_pipeline.py: error: argument --output")
    assert ".tar.gz" in line and "p.json" in line
    assert not (tmp_path / "p.json").exists()


def test_unknown_option_is_one_clear_line(capsys):
    line = main_error(capsys, "--outptu", "x.yaml")
    assert "--outptu" in line


def test_missing_output_directory_is_one_clear_line(tmp_path, capsys):
    line = main_error(capsys, "-o", str(tmp_path / "nope" / "p.yaml"))
    assert "nope" in line and "does not exist" in line


def test_image_with_spaces_is_rejected(capsys):
    line = main_error(capsys, "--image", "my image")
    assert "--image" in line


@pytest.mark.e2e
def test_dsl_compile_finds_the_pipeline_in_the_pipeline_module_alone(tmp_path):
    # Neither the command line nor the rehearsal is needed to compile.
    copy_without_rehearsal(tmp_path, *PIPELINE_MODULES)
    # The console script kfp installs next to this interpreter.
    dsl_compile = str(Path(sys.executable).with_name("dsl-compile"))
    out = tmp_path / "x.tar.gz"
    result = subprocess.run(
        [dsl_compile, "--py", str(tmp_path / PIPELINE_MODULES[0]), "--output", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = read_package(out)
    assert doc["spec"]["arguments"]["parameters"][0]["name"] == "pretrained_model_name"


def test_param_prefills_the_form(tmp_path):
    doc = compile_workflow(tmp_path, "--param", "train_num_gpus=4",
                             "--param", "min_accuracy=0.85")
    form = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert form["train_num_gpus"] == "4" and form["min_accuracy"] == "0.85"
    assert form["prune_threshold"] == "0.6"  # the rest keeps the defaults


def test_param_api_key_with_a_key_secret_is_refused(capsys):
    line = main_error(capsys, "--key-secret", "tao-key", "--param", "api_key=x")
    assert "--param api_key" in line and "--key-secret" in line


def test_rehearsal_options_need_dry_run(tmp_path, capsys):
    line = main_error(capsys, "--specs", str(tmp_path))
    assert "--specs goes with --dry-run" in line


def test_output_into_a_read_only_folder_is_one_line(capsys):
    # /sys refuses new files to every user, root included.
    line = main_error(capsys, "-o", "/sys/p.yaml", "--image", "r.example.com/t:1")
    assert "--output" in line and "/sys/p.yaml" in line and "Permission denied" in line


def test_output_under_proc_is_one_line(capsys):
    line = main_error(capsys, "-o", "/proc/p.yaml", "--image", "r.example.com/t:1")
    assert "--output" in line and "/proc/p.yaml" in line and "cannot write" in line


def test_output_onto_an_existing_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "p.yaml").mkdir()
    line = main_error(capsys, "-o", str(tmp_path / "p.yaml"))
    assert "--output" in line and "is a folder" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "p.yaml"]
    assert list((tmp_path / "p.yaml").iterdir()) == []


def test_with_image_and_claim_given_nothing_is_said(tmp_path, capsys):
    out = str(tmp_path / "p.yaml")
    assert cli.main(["-o", out, "--image", "r.example.com/t:1", "--pvc", "ws"]) == 0
    assert capsys.readouterr().err == ""


def test_the_hostpath_workspace_gets_one_line_on_pod_security(tmp_path, capsys):
    out = str(tmp_path / "p.yaml")
    assert cli.main(["-o", out, "--image", "r.example.com/t:1"]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line == cli.HOSTPATH_NOTE
    for words in ("Baseline Pod Security Standard", "Kubeflow 1.10.2+ profiles", "KFP >= 2.16",
                  "refuse hostPath", "--pvc", "docs/storage.md"):
        assert words in line
    assert (REPO / "docs" / "storage.md").is_file()


def test_ctrl_c_while_compiling_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as stopped:
        cli.run()
    assert stopped.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1].endswith(": interrupted")
