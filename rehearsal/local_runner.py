"""Run a compiled KFP v1 (Argo) workflow on this machine, one container step at a time.

For the ``--dry-run`` of a pipeline against fake executables on a machine with no cluster.
``kfp.LocalClient`` (kfp 1.8.22) cannot be used for that: it reports success as None, stops
after the first condition group, never evaluates conditions and ignores volumes, env,
secrets and resources. This module instead executes the Argo ``Workflow`` that
``kfp.compiler.Compiler().compile(...)`` writes (the dict from ``yaml.safe_load``), the way
Argo 3.3 would:

- DAG templates: tasks run once their ``dependencies`` are done, one at a time, in a
  deterministic topological order (alphabetical among ready tasks). Argo would run ready
  tasks in parallel; the statuses come out the same because a failure stops only its
  descendants. Nested DAGs (kfp's ``condition-N`` and ``exit-handler-N`` groups) get their
  inputs through task arguments, and DAG outputs (``valueFrom.parameter``) are supported.
- Parameters are substituted as Argo does: ``{{inputs.parameters.x}}``,
  ``{{workflow.parameters.x}}``, ``{{tasks.T.outputs.parameters.P}}``, ``{{workflow.name}}``,
  ``{{workflow.uid}}``, ``{{workflow.namespace}}``, ``{{workflow.status}}``,
  ``{{workflow.failures}}`` (the exit handler's, Go-quoted JSON as Argo gives it) and
  ``{{pod.name}}``, in every string of a container template (the name and uid are new for
  every run, as a cluster makes them: :mod:`rehearsal.workflow_identity`):
  command, args, env, volumes, mount paths, podSpecPatch, outputs, activeDeadlineSeconds.
- ``when`` is evaluated like Argo 3.3 (govaluate, with bare words turned into strings):
  quoted operands are strings, ``>``/``>=``/``<``/``<=`` compare two numbers or two strings
  and fail the task for a number against a word (``85%``, ``1e-3`` or an empty value do not
  parse at all). A false condition marks the task Skipped; a skipped dependency counts as
  done, so tasks after it still run (tasks inside the skipped group never start).
- A failed task marks every task downstream of it Omitted; all other tasks still run, the
  workflow fails and ``spec.onExit`` runs at the end with ``{{workflow.status}}`` set.
  A DAG's ``failFast`` (true or false) changes none of this, as in Argo v3.3.8 (see
  :mod:`rehearsal.dag_scheduler`).
  Once the workflow's own ``activeDeadlineSeconds`` passes, the running step is stopped and
  no further task starts or is recorded (Argo never creates their nodes); onExit still runs.
- A container step runs ``command + args`` as a local process (never through a shell) with
  the caller's base environment plus the container's ``env`` (secret references are read
  from ``secrets``), Kubernetes ``$(VAR)`` expansion, volume mounts mapped to host
  directories and container paths rewritten to them where an argument or env value is an
  absolute path under a mount (or a ``--flag=/path`` argument). The image is ignored.
  ``activeDeadlineSeconds`` (step and workflow) is enforced as a timeout.
  ``retryStrategy`` is recorded but steps are not retried.
- Output parameters are read from their (mapped) ``valueFrom.path`` with one trailing newline
  dropped, as Argo does; a missing file fails the step. Missing output artifacts fail it
  too, except optional ones and ``mlpipeline-ui-metadata``/``mlpipeline-metrics``, which
  the KFP v1 API server marks optional when it submits a run. A step that fails still
  records the output artifacts it wrote: Argo's wait container saves them, and Kubeflow
  shows a failed step's metrics and UI metadata.
- podSpecPatch is parsed to report the step's resources; they are not enforced, but resource
  names or quantities Kubernetes would reject (a limit named ``nvidia``) fail the step as
  the pod would. A parameter in ``container.resources``, which Argo cannot load (what
  ``set_gpu_limit(<param>)`` compiles to), is rejected up front.

Each process also gets ``LOCAL_RUNNER_PATH_MAP``, a JSON object mapping container path
prefixes to host directories, so fake executables can translate container paths they read
from files (spec files name paths inside the container).

The pieces, one module each: :mod:`rehearsal.workflow_check` (static checks before anything
runs), :mod:`rehearsal.dag_scheduler` (DAG order, ``when``, Skipped/Omitted, onExit,
deadline), :mod:`rehearsal.argo_when` (``when`` expressions), :mod:`rehearsal.substitution`
(``{{tags}}`` and ``$(VAR)``), :mod:`rehearsal.step_executor` (one container step as a local
process), :mod:`rehearsal.path_map` (container paths to host paths),
:mod:`rehearsal.run_record` (what a run records) and :mod:`rehearsal.workflow_identity` (the
run's name and uid). This module is the entry point.

Not supported, rejected with :class:`UnsupportedWorkflowError` naming the template and
field before anything runs: ``steps``/``script``/``resource`` (``dsl.VolumeOp``)/``suspend``
templates, ``withItems``/``withParam`` (``dsl.ParallelFor``), ``depends`` (kfp 1.8 never
emits it), ``continueOn``, sidecars and init containers, ``envFrom``, env from config maps or
fields, volume kinds other than hostPath/persistentVolumeClaim/emptyDir, input or output
artifacts other than container output files, and references Argo would not resolve.
Argo's Error phase is reported as Failed (the message says why). In ``when``, ternaries,
bitwise operators, ``**``, ``in`` and accessors fail the task with a message saying the
runner does not implement them, and quoted dates compare as strings (govaluate would turn
them into times); kfp emits none of these.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rehearsal.argo_when import WhenError, evaluate_when
from rehearsal.dag_scheduler import DagScheduler
from rehearsal.run_record import FAILED, OMITTED, SKIPPED, SUCCEEDED, RunResult, StepRecord
from rehearsal.step_executor import PATH_MAP_ENV, PathLike
from rehearsal.substitution import expand_k8s
from rehearsal.workflow_check import UnsupportedWorkflowError

__all__ = ["FAILED", "OMITTED", "PATH_MAP_ENV", "SKIPPED", "SUCCEEDED", "RunResult",
           "StepRecord", "UnsupportedWorkflowError", "WhenError", "evaluate_when",
           "expand_k8s", "run_workflow"]


def run_workflow(
    workflow: Mapping[str, Any],
    arguments: Mapping[str, str | int | float] | None = None,
    *,
    workdir: PathLike,
    host_paths: Mapping[str, PathLike] | Callable[[str], PathLike] | None = None,
    claims: Mapping[str, PathLike] | None = None,
    per_step_dirs: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
    secrets: Mapping[tuple[str, str], str] | None = None,
    path_prefix: Sequence[PathLike] = (),
    executables: Mapping[str, PathLike] | None = None,
    echo: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    masked: Sequence[str] = (),
) -> RunResult:
    """Execute ``workflow`` (a compiled KFP v1 Argo Workflow) locally.

    ``arguments`` override the defaults in ``spec.arguments.parameters``; an unknown name is
    a ``ValueError``. ``workdir`` (absent or empty) receives a directory per step with its
    log, its working directory, its emptyDir volumes and its ``per_step_dirs``.

    Volumes: a hostPath volume's ``path`` is mapped through ``host_paths`` (a function, or a
    dict matched on whole path components, longest prefix first); a persistentVolumeClaim
    through ``claims`` by claim name; an emptyDir is a fresh directory. ``per_step_dirs``
    are container path prefixes (``"/tmp/outputs"``) that get a fresh host directory for each
    step: output files outside the volumes must live under one of them.

    Processes get ``base_env`` (default: only the host's ``PATH``) plus the container env,
    with ``path_prefix`` prepended to ``PATH``; ``secrets`` maps ``(secret name, key)`` to
    the value of a ``secretKeyRef``; ``executables`` replaces a command's ``argv[0]``
    (``{"python3": sys.executable}``). ``echo``, if given, receives each step's start (with
    its command), every line it prints and its end, prefixed with its display name.
    ``progress``, if given, receives one line when a container step starts and one when a
    step ends (display name, status, seconds), for a user waiting on a long run.
    ``masked`` values (e.g. a key passed as a plain parameter) are hidden like secrets in
    every recorded command and error line.

    Raises :class:`UnsupportedWorkflowError` for a workflow this runner cannot execute and
    ``ValueError`` for a missing secret, volume mapping or an unknown argument, before
    anything runs when the names involved do not depend on a parameter.
    """
    run_dir = Path(workdir).absolute()  # steps run in their own working directory
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"workdir {run_dir} is not empty")
    runner = DagScheduler(
        workflow,
        run_dir=run_dir,
        host_paths=host_paths,
        claims=dict(claims or {}),
        per_step_dirs=list(per_step_dirs),
        base_env=dict(base_env) if base_env is not None
        else {"PATH": os.environ.get("PATH", os.defpath)},
        secrets=dict(secrets or {}),
        path_prefix=[str(Path(p).absolute()) for p in path_prefix],
        executables={k: str(v) for k, v in (executables or {}).items()},
        echo=echo,
        progress=progress,
        masked=[m for m in masked if m],
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    return runner.run(dict(arguments or {}))

