"""docker/: the image definition and its scripts, checked without a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
