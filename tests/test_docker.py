"""docker/: the image definition and its scripts, checked without a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import tao_iva_classification_ops as ops

BIN = Path(sys.executable).parent
DOCKER = REPO / "docker"


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)


def test_dockerfile_is_clean_under_hadolint():
    result = run([str(BIN / "hadolint"), str(DOCKER / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_on_the_tao_3_image_and_puts_ngc_on_path():
    text = (DOCKER / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tao/tao-toolkit-tf:v3.21.08-py3" in text
    assert "/usr/local/bin/ngc" in text and "ngc --version" in text


def test_image_carries_the_in_container_runtime():
    text = (DOCKER / "Dockerfile").read_text()
    assert "COPY tao_step /opt/tao-kfp/tao_step" in text
    # the build fails unless the code imports on the image's own Python
    assert 'python3 -c "import tao_step.report, tao_step.preflight, tao_step.specs"' in text


def test_scripts_are_clean_under_shellcheck():
    scripts = sorted(str(p) for p in DOCKER.glob("*.sh"))
    result = run([str(BIN / "shellcheck"), *scripts])
    assert result.returncode == 0, result.stdout


def fake_docker(tmp_path: Path) -> dict:
    """A `docker` on PATH that records its arguments instead of building."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    script = bin_dir / "docker"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}


def test_build_tags_the_image_the_pipeline_uses_by_default(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "build.sh")], env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 0, result.stderr
    calls = Path(env["LOG"]).read_text().splitlines()
    assert calls == [f"build -t {ops.DEFAULT_IMAGE} -f {DOCKER}/Dockerfile {REPO}"]


def test_build_with_registry_tags_and_pushes(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "build.sh"), "registry.example.com/ml/", "--push"],
                 env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 0, result.stderr
    image = f"registry.example.com/ml/{ops.DEFAULT_IMAGE}"
    assert Path(env["LOG"]).read_text().splitlines() == [
        f"build -t {image} -f {DOCKER}/Dockerfile {REPO}", f"push {image}"]


def test_build_usage_error_exits_2(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "build.sh"), "--push"], env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 2 and "usage" in result.stderr
    assert not Path(env["LOG"]).exists()


def test_run_refuses_a_missing_workspace(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "run.sh"), str(tmp_path / "missing")],
                 env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_run_mounts_the_workspace_where_the_pipeline_does(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "run.sh"), str(tmp_path)], env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 0, result.stderr
    (call,) = Path(env["LOG"]).read_text().splitlines()
    assert f"-v {tmp_path}:/mnt/workspace" in call and "--gpus all" in call


def test_build_context_admits_only_what_the_image_needs():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "*"  # venvs, workspaces and compiled packages stay out
    assert {r for r in rules if r.startswith("!")} == {"!docker/", "!tao_step/*.py"}


def test_the_tag_changes_with_what_the_image_holds(tmp_path):
    for part in ("docker", "tao_step"):
        shutil.copytree(REPO / part, tmp_path / part)

    def tag() -> str:
        result = run([sys.executable, str(tmp_path / "docker" / "image_tag.py")])
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first = tag()
    assert first == ops.DEFAULT_IMAGE  # the same tag the pipeline uses by default
    assert first.startswith((DOCKER / "IMAGE").read_text().strip() + "-")
    for cache in ("__pycache__", ".ruff_cache"):
        (tmp_path / "tao_step" / cache).mkdir(exist_ok=True)
        (tmp_path / "tao_step" / cache / "x").write_bytes(b"cache")
    assert tag() == first  # caches do not enter the image
    report = tmp_path / "tao_step" / "report.py"
    report.write_text(report.read_text() + "\n# changed\n")
    assert tag() != first


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_docker_tao5.py
# docker/tao5/: the two TAO 5 images (TF1 training, deploy), checked without a Docker engine.


TF1 = DOCKER / "tao5" / "tf1"
DEPLOY = DOCKER / "tao5" / "deploy"


def tag(*args: str) -> str:
    result = run([sys.executable, str(DOCKER / "image_tag.py"), *args])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("folder", [TF1, DEPLOY])
def test_tao5_dockerfiles_are_clean_under_hadolint(folder):
    result = run([str(BIN / "hadolint"), str(folder / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_tf1_image_is_nvidias_5_0_tf1_image_with_ngc_and_the_runtime():
    text = (TF1 / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5" in text
    assert "/usr/local/bin/ngc" in text and "ngc --version" in text
    assert "md5sum -c --quiet ngc-cli.md5" in text  # the download is checked
    assert "COPY tao_step /opt/tao-kfp/tao_step" in text
    assert 'python3 -c "import tao_step.report, tao_step.preflight, tao_step.specs"' in text
    assert "command -v classification_tf1" in text


def test_deploy_image_is_nvidias_5_0_deploy_image_with_the_runtime():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tao/tao-toolkit:5.0.0-deploy" in text
    assert "COPY tao_step /opt/tao-kfp/tao_step" in text
    assert 'python3 -c "import tao_step.report"' in text
    assert "command -v classification_tf1" in text


def test_tags_are_content_addressed_per_folder():
    tf1, deploy = tag(str(TF1.relative_to(REPO))), tag(str(DEPLOY.relative_to(REPO)))
    assert tf1.startswith((TF1 / "IMAGE").read_text().strip() + "-")
    assert deploy.startswith((DEPLOY / "IMAGE").read_text().strip() + "-")
    assert tag("--tao-version", "5.0").splitlines() == [
        f"docker/tao5/tf1 {tf1}", f"docker/tao5/deploy {deploy}"]
    assert tag("--tao-version", "3.0") == f"docker {tag()}"
    wrong = run([sys.executable, str(DOCKER / "image_tag.py"), "--tao-version", "4.0"])
    assert wrong.returncode == 2 and "'4.0' is not supported" in wrong.stderr


def test_build_tao5_builds_and_pushes_both_images_and_prints_the_compile_options(tmp_path):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "build.sh"), "--tao-version", "5.0", "reg.example.com/ml",
                  "--push"], env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 0, result.stderr
    tf1 = "reg.example.com/ml/" + tag("docker/tao5/tf1")
    deploy = "reg.example.com/ml/" + tag("docker/tao5/deploy")
    assert Path(env["LOG"]).read_text().splitlines() == [
        f"build -t {tf1} -f {TF1}/Dockerfile {REPO}", f"push {tf1}",
        f"build -t {deploy} -f {DEPLOY}/Dockerfile {REPO}", f"push {deploy}"]
    assert result.stdout.splitlines()[-1] == (
        "compile with: .venv/bin/python tao_iva_classification_pipeline.py --tao-version 5.0 "
        f"--image {tf1} --deploy-image {deploy}")


@pytest.mark.parametrize("args", [["--tao-version"], ["--tao-version", "4.0"],
                                  ["--tao-version", "5.0", "--push"]])
def test_build_usage_errors_exit_2_without_building(tmp_path, args):
    env = fake_docker(tmp_path)
    result = run([str(DOCKER / "build.sh"), *args], env={**os.environ, "PATH": env["PATH"]})
    assert result.returncode == 2, result.stdout + result.stderr
    assert not Path(env["LOG"]).exists()


def test_the_tao5_tags_change_with_the_in_container_code(tmp_path):
    import shutil

    for part in ("docker", "tao_step"):
        shutil.copytree(REPO / part, tmp_path / part)
    script = tmp_path / "docker" / "image_tag.py"
    before = subprocess.run([sys.executable, str(script), "--tao-version", "5.0"],
                            capture_output=True, text=True, check=True).stdout
    report = tmp_path / "tao_step" / "report.py"
    report.write_text(report.read_text() + "\n# changed\n")
    after = subprocess.run([sys.executable, str(script), "--tao-version", "5.0"],
                           capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in after.splitlines()] == [
        line.split()[0] for line in before.splitlines()]
    assert all(a != b for a, b in zip(after.splitlines(), before.splitlines(), strict=True))
