"""The default build, as a cluster receives it, against a committed copy.

Any change to the compiled workflow shows up here and in review. After an intended change:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os

import yaml
from conftest import REPO, compile_workflow

GOLDEN = REPO / "tests" / "golden" / "default-pipeline.yaml"
VOLATILE = "pipelines.kubeflow.org/pipeline_compilation_time"


def stable(doc: dict) -> dict:
    doc["metadata"]["annotations"].pop(VOLATILE)
    return doc


def test_default_build_matches_the_committed_workflow(tmp_path):
    compiled = stable(compile_workflow(tmp_path))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(yaml.safe_dump(compiled, sort_keys=True, width=100))
    expected = yaml.safe_load(GOLDEN.read_text())
    assert compiled == expected, (
        "the compiled default pipeline changed; if intended, regenerate with "
        "UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py")
