"""``--dry-run --outputs DIR``: keep what a rehearsed run would show in Kubeflow.

After a rehearsal (``rehearsal.dry_run.Rehearsal.run``), :func:`write_outputs` fills DIR with

- ``<task name>/mlpipeline-metrics.json`` and ``<task name>/mlpipeline-ui-metadata.json``
  for every step that wrote them, failed steps included (Argo's wait container saves a
  failed main container's artifacts too, so Kubeflow shows them), and ``<task name>/log.txt``,
  with the local folders the steps ran on spelled as the container paths a pod sees;
- ``run.json``: the workflow's name and phase, and per DAG task its path, template, status
  (Succeeded, Failed, Skipped, Omitted), exit code, message, log and kept files (paths
  relative to DIR), and whether it has a retry strategy;
- ``run-output.html``: ``rehearsal.run_page``'s preview of what a KFP release shows: each
  step's Visualizations, the summary first, then the Run output tab, the run list row and
  Compare runs as that release fills them (``--kfp-release``, default 2.15).

DIR must be new or an empty directory (not a symbolic link), and its parent must exist:
nothing is ever overwritten. Everything is written into a hidden sibling directory first
and renamed to DIR at the end, so DIR is either complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rehearsal import run_page
from rehearsal.kfp_releases import DEFAULT_MINOR
from rehearsal.path_map import PathMap
from rehearsal.run_record import RunResult

# Output artifact name -> the file name kept (the names Kubeflow's UI and agent read).
KFP_ARTIFACTS = {"mlpipeline-metrics": run_page.METRICS_FILE,
                 "mlpipeline-ui-metadata": run_page.UI_METADATA_FILE}
LOG_FILE = "log.txt"


def outputs_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot receive the outputs (one line naming ``--outputs``), or None."""
    if path.is_symlink():  # the finished folder replaces DIR by a rename, not through a link
        return (f"--outputs: {path} is a symbolic link (to {os.readlink(path)}); name a new "
                "or empty directory itself")
    if path.is_dir():
        if any(path.iterdir()):
            return (f"--outputs: {path} is not empty; give a new or empty directory "
                    "(nothing in it is overwritten)")
        return None
    if path.exists() or path.is_symlink():
        return f"--outputs: {path} exists and is not a directory; give a new directory"
    if not path.parent.is_dir():
        return f"--outputs: directory {path.parent} does not exist; create it first"
    if not os.access(path.parent, os.W_OK):
        return f"--outputs: cannot write in {path.parent}"
    return None


def staging_folder(dest: Path, purpose: str) -> Path:
    """A new hidden sibling of ``dest``, ``.<name>.<purpose>-*``, to fill and then rename
    to ``dest``: ``dest`` is then either complete or absent."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{purpose}-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    return staging


def as_published(content: bytes, mounts: PathMap) -> bytes:
    """A kept file as the step's pod would have written it: the steps ran on the mounts'
    host folders, a pod on the container paths (``/mnt/workspace/...``), so the UI
    metadata and logs name those."""
    text = content.decode("utf-8", "surrogateescape")
    return mounts.unmap(text).encode("utf-8", "surrogateescape")


def run_record(result: RunResult, workflow: Mapping[str, Any],
               kept: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """``run.json``: ``kept`` maps a task name to {artifact or "log": path relative to DIR}."""
    meta = workflow.get("metadata") or {}
    tasks = []
    for step in result.steps:
        files = dict(kept.get(step.name, {}))
        log = files.pop("log", None)
        tasks.append({
            "name": step.name,
            "path": step.path,
            "template": step.template,
            "display_name": step.display_name,
            "kind": step.kind,
            "status": step.status,
            "exit_code": step.exit_code,
            "message": step.message,
            "log": log,
            "outputs": files,
            "retry": step.retry_strategy is not None,
        })
    return {"workflow": {"name": result.workflow_name, "phase": result.status,
                         "message": result.message,
                         "generate_name": meta.get("generateName")},
            "tasks": tasks}


def write_outputs(result: RunResult, workflow: Mapping[str, Any], dest: Path,
                  kfp_release: str = DEFAULT_MINOR) -> None:
    """Write DIR (see the module docstring), the page as KFP ``kfp_release`` shows it;
    raises ``ValueError`` if ``dest`` is taken."""
    problem = outputs_dir_problem(dest)
    if problem:
        raise ValueError(problem)
    staging = staging_folder(dest, "partial")
    try:
        kept: dict[str, dict[str, str]] = {}
        names = [step.name for step in result.steps]
        for step in result.steps:
            # kfp v1 gives every op a unique task name; a nested path stands in otherwise
            folder = step.name if names.count(step.name) == 1 else step.path
            files = {}
            for artifact, file_name in KFP_ARTIFACTS.items():
                source = step.artifacts.get(artifact)
                if source is not None and source.is_file():
                    files[artifact] = f"{folder}/{file_name}"
            if step.log_path is not None and step.log_path.is_file():
                files["log"] = f"{folder}/{LOG_FILE}"
            if not files:
                continue
            (staging / folder).mkdir(parents=True)
            mounts = PathMap(step.mounts)
            for artifact, relative in files.items():
                source = step.log_path if artifact == "log" else step.artifacts[artifact]
                (staging / relative).write_bytes(as_published(source.read_bytes(), mounts))
            kept[step.name] = files
        record = run_record(result, workflow, kept)
        (staging / run_page.RUN_JSON).write_text(json.dumps(record, indent=2) + "\n",
                                                 encoding="utf-8")
        (staging / run_page.PAGE_FILE).write_text(
            run_page.render_folder(staging, kfp_release), encoding="utf-8")
        if dest.is_dir():
            dest.rmdir()  # empty, checked above; fails rather than lose anything new in it
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
