"""What a local run records: the status of every DAG task and of the workflow."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

# kfp's annotation holding a step's display name (the name the KFP UI shows).
DISPLAY_NAME_ANNOTATION = "pipelines.kubeflow.org/task_display_name"

SUCCEEDED = "Succeeded"
FAILED = "Failed"
SKIPPED = "Skipped"
OMITTED = "Omitted"


@dataclasses.dataclass
class StepRecord:
    """What happened to one DAG task (a container step or a nested DAG such as a condition)."""

    name: str  # the task name
    path: str  # task names from the entrypoint DAG down, joined by "."
    template: str
    display_name: str  # kfp's task_display_name annotation, else the template name
    kind: str  # "container" or "dag"
    depth: int  # 0 for tasks of the entrypoint DAG
    status: str = ""
    message: str = ""  # why it failed, was skipped or omitted
    exit_code: int | None = None
    argv: list[str] = dataclasses.field(default_factory=list)  # as the container runs it
    host_argv: list[str] = dataclasses.field(default_factory=list)  # as run on this host
    duration: float = 0.0
    finished_at: str = ""  # UTC, as Argo's finishedAt (RFC 3339, seconds)
    log_path: Path | None = None
    mounts: dict[str, Path] = dataclasses.field(default_factory=dict)  # container -> host
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, Path | None] = dataclasses.field(default_factory=dict)
    resources: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    retry_strategy: dict[str, Any] | None = None
    timeout: int | None = None
    error_tail: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunResult:
    """The outcome of :func:`run_workflow`: the workflow status and every step in order."""

    workflow_name: str
    status: str
    message: str
    steps: list[StepRecord]
    workdir: Path

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def step(self, name: str) -> StepRecord:
        """The one step whose task name, display name or path is ``name``."""
        found = [s for s in self.steps if name in (s.name, s.display_name, s.path)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} steps are named {name!r}")
        return found[0]

    def format_report(self, *, tail_lines: int = 20) -> str:
        """A status line per step, then for each failed container step its command and the
        last lines of its error output (secret values masked)."""
        lines = [f"Workflow {self.workflow_name}: {self.status}"
                 + (f" ({self.message})" if self.message else "")]
        for s in self.steps:
            label = s.name if s.display_name == s.name else f"{s.name} ({s.display_name})"
            details = []
            if s.exit_code and f"exit code {s.exit_code}" not in s.message:
                details.append(f"exit code {s.exit_code}")
            if s.status in (SUCCEEDED, FAILED):
                details.append(f"{s.duration:.1f}s")
            if s.message:
                details.append(s.message)
            lines.append(f"{'  ' * (s.depth + 1)}{s.status:<9} {label}"
                         + (f": {'; '.join(details)}" if details else ""))
        for s in self.steps:
            if s.status != FAILED or s.kind != "container":
                continue
            lines += ["", f"Step {s.path} (template {s.template}) failed: {s.message}"]
            if s.argv:
                lines.append(f"  command: {shlex.join(s.argv)}")
            if s.log_path is not None:
                lines.append(f"  log: {s.log_path}")
            tail = s.error_tail[-tail_lines:]
            if tail:
                lines.append("  last lines of its error output (stdout if stderr was empty):")
                lines += [f"    {line}" for line in tail]
        return "\n".join(lines)
