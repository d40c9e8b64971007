"""Steps run the in-container code the way the image does; an old image says to rebuild."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO
from in_container import PYTHON

import tao_iva_classification_ops as ops


def run_step_argv(argv: list, *, pythonpath: str, cwd) -> subprocess.CompletedProcess:
    assert argv[0] == "python3"
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([PYTHON, *argv[1:]], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_an_image_without_the_runtime_says_to_rebuild(default_workflow, tmp_path):
    template = default_workflow.step("preflight")
    argv = template["container"]["command"] + template["container"]["args"]
    result = run_step_argv(argv, pythonpath=str(tmp_path), cwd=tmp_path)  # no tao_step here
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "no tao_step runtime" in line and "docker/build.sh" in line


def test_an_older_runtime_than_the_pipeline_needs_says_to_rebuild(tmp_path):
    argv = ops.runtime_command("report", "run", "--out-dir", str(tmp_path), "--", "true")
    at = argv.index("--require-runtime")
    argv[at + 1] = "99"
    result = run_step_argv(argv, pythonpath=str(REPO), cwd=tmp_path)
    assert result.returncode == 2
    assert "needs 99" in result.stderr and "rebuild" in result.stderr


def test_the_current_runtime_runs_the_command(tmp_path):
    marker = tmp_path / "ran"
    argv = ops.runtime_command("report", "run", "--out-dir", str(tmp_path / "out"), "--",
                               sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    result = run_step_argv(argv, pythonpath=str(REPO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker.exists()


def test_help_lists_every_command_and_exits_0():
    # through the image's interpreter, as `python3 -m tao_step --help` runs in a pod
    result = subprocess.run([PYTHON, "-m", "tao_step", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python3 -m tao_step")
    for command in ("preflight", "report", "spec-check", "release"):
        assert f"\n  {command} " in result.stdout
