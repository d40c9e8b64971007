"""Shared helpers: compile through the user's entry point and read the Argo workflow."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from workflow_view import CompiledWorkflow

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINT = REPO / "tao_iva_classification_pipeline.py"

# The eleven steps of the original sample, by the name the UI shows.
ORIGINAL_STEPS = (
    "download-model", "train-model", "evaluate-model", "prune-model", "retrain-model",
    "reevaluate-model", "test-infer", "export-model", "calibrate-model",
    "export-int8-model", "convert-trt",
)


def run_compiler(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the compile command exactly as a user types it."""
    return subprocess.run(
        [sys.executable, str(ENTRY_POINT), *args], cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )


def compile_workflow(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "pipeline.yaml"
    result = run_compiler("--output", str(out), *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(out.read_text())


@pytest.fixture(scope="session")
def default_workflow(tmp_path_factory) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path_factory.mktemp("compiled")))


def read_package(path: Path) -> dict:
    with tarfile.open(path) as tar:
        (member,) = tar.getmembers()
        return yaml.safe_load(tar.extractfile(member).read())
