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
  ``{{workflow.uid}}``, ``{{workflow.namespace}}``, ``{{workflow.status}}`` and
  ``{{pod.name}}`` (fake, deterministic values), in every string of a container template:
  command, args, env, volumes, mount paths, podSpecPatch, outputs, activeDeadlineSeconds.
- ``when`` is evaluated like Argo 3.3 (govaluate, with bare words turned into strings):
  quoted operands are strings, ``>``/``>=``/``<``/``<=`` compare two numbers or two strings
  and fail the task for a number against a word (``85%``, ``1e-3`` or an empty value do not
  parse at all). A false condition marks the task Skipped; a skipped dependency counts as
  done, so tasks after it still run (tasks inside the skipped group never start).
- A failed task marks every task downstream of it Omitted; all other tasks still run, the
  workflow fails and ``spec.onExit`` runs at the end with ``{{workflow.status}}`` set.
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
  the KFP v1 API server marks optional when it submits a run.
- podSpecPatch is parsed to report the step's resources; they are not enforced, but resource
  names or quantities Kubernetes would reject (a limit named ``nvidia``) fail the step as
  the pod would. A parameter in ``container.resources``, which Argo cannot load (what
  ``set_gpu_limit(<param>)`` compiles to), is rejected up front.

Each process also gets ``LOCAL_RUNNER_PATH_MAP``, a JSON object mapping container path
prefixes to host directories, so fake executables can translate container paths they read
from files (spec files name paths inside the container).

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

import collections
import dataclasses
import heapq
import json
import math
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "StepRecord", "UnsupportedWorkflowError", "evaluate_when",
           "expand_k8s", "run_workflow"]

DISPLAY_NAME_ANNOTATION = "pipelines.kubeflow.org/task_display_name"
PATH_MAP_ENV = "LOCAL_RUNNER_PATH_MAP"
FAKE_NAMESPACE = "kubeflow"
# The KFP v1 API server marks these output artifacts optional when it submits a run
# (PatchTemplateOutputArtifacts); the compiled YAML does not.
KFP_OPTIONAL_ARTIFACTS = frozenset({"mlpipeline-ui-metadata", "mlpipeline-metrics"})
# Seconds between SIGTERM and SIGKILL when a step outlives its deadline.
KILL_GRACE_SECONDS = 5.0
SECRET_MASK = "******"

SUCCEEDED = "Succeeded"
FAILED = "Failed"
SKIPPED = "Skipped"
OMITTED = "Omitted"

PathLike = str | os.PathLike[str]


class UnsupportedWorkflowError(Exception):
    """The workflow uses a construct this runner does not execute, or is invalid for Argo."""


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
    ``masked`` values (e.g. a key passed as a plain parameter) are hidden like secrets in
    every recorded command and error line.

    Raises :class:`UnsupportedWorkflowError` for a workflow this runner cannot execute and
    ``ValueError`` for a missing secret, volume mapping or an unknown argument, before
    anything runs when the names involved do not depend on a parameter.
    """
    run_dir = Path(workdir).absolute()  # steps run in their own working directory
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"workdir {run_dir} is not empty")
    runner = _Runner(
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
        masked=[m for m in masked if m],
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    return runner.run(dict(arguments or {}))


# ---------------------------------------------------------------------------------------
# Argo template substitution

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TASK_OUTPUT = re.compile(r"tasks\.([^.]+)\.outputs\.parameters\.(.+)")
_WORKFLOW_VARIABLES = ("workflow.name", "workflow.uid", "workflow.namespace",
                       "workflow.status", "workflow.serviceAccountName")


class _Unresolved(Exception):
    def __init__(self, tag: str):
        super().__init__(tag)
        self.tag = tag


def _substitute(value: Any, scope: Mapping[str, str], *, keep: Callable[[str], bool]) -> Any:
    """Replace ``{{tag}}`` in every string of ``value``; unknown tags raise ``_Unresolved``
    unless ``keep(tag)``, in which case they stay for a later pass."""

    def replace(match: re.Match[str]) -> str:
        tag = match.group(1).strip()
        if tag in scope:
            return scope[tag]
        if keep(tag):
            return match.group(0)
        raise _Unresolved(tag)

    if isinstance(value, str):
        return _TAG.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(v, scope, keep=keep) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, scope, keep=keep) for k, v in value.items()}
    return value


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Yield ``(field path, string)`` for every string inside ``value``."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else k)


# ---------------------------------------------------------------------------------------
# Argo 3.3 "when": govaluate with variables turned into strings


class _WhenError(Exception):
    pass


_PREFIX_OPS = {"-", "!", "~"}
_MODIFIER_OPS = {"+", "-", "*", "/", "%", "**", "&", "|", "^", ">>", "<<"}
_LOGICAL_OPS = {"&&", "||"}
_COMPARATOR_OPS = {"==", "!=", ">", ">=", "<", "<=", "=~", "!~"}
_TERNARY_OPS = {"?", ":", "??"}
_VALUE_KINDS = {"number", "string", "bool", "accessor"}


def _go_value(v: Any) -> str:
    """Format like Go's %v, for messages and string concatenation."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text.removesuffix(".0")
    return str(v)


def _lex_when(expr: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        after_value = bool(tokens) and (tokens[-1][0] in _VALUE_KINDS or tokens[-1][0] == ")")
        if ch.isdigit() or ch == ".":
            if expr.startswith(("0x", "0X"), i):
                j = i + 2
                while j < n and expr[j] in "0123456789abcdefABCDEF":
                    j += 1
                tokens.append(("number", float(int(expr[i + 2:j] or "0", 16))))
            else:
                j = i
                while j < n and (expr[j].isdigit() or expr[j] == "."):
                    j += 1
                try:
                    tokens.append(("number", float(expr[i:j])))
                except ValueError:
                    raise _WhenError(
                        f"Unable to parse numeric value '{expr[i:j]}' to float64") from None
            i = j
        elif ch.isalpha():
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_."):
                j += 1
            word = expr[i:j]
            if word in ("true", "false"):
                tokens.append(("bool", word == "true"))
            elif word in ("in", "IN"):
                tokens.append(("op", "in"))
            elif "." in word:
                tokens.append(("accessor", word))
            else:  # a govaluate variable, which Argo turns into a string
                tokens.append(("string", word))
            i = j
        elif ch == "[":
            j = expr.find("]", i)
            if j < 0:
                raise _WhenError("unclosed parameter bracket")
            tokens.append(("string", expr[i + 1:j]))
            i = j + 1
        elif ch in "'\"":
            j, chars = i + 1, []
            while j < n and expr[j] not in "'\"":
                if expr[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(expr[j])
                j += 1
            if j >= n:
                raise _WhenError("unclosed string literal")
            tokens.append(("string", "".join(chars)))
            i = j + 1
        elif ch in "()":
            tokens.append((ch, ch))
            i += 1
        else:
            j = i
            while j < n and not (expr[j].isalnum() or expr[j].isspace()
                                 or expr[j] in "()[]'\""):
                j += 1
            symbol = expr[i:j]
            if not after_value and symbol in _PREFIX_OPS:
                tokens.append(("prefix", symbol))
            elif symbol in _MODIFIER_OPS | _LOGICAL_OPS | _COMPARATOR_OPS | _TERNARY_OPS:
                tokens.append(("op", symbol))
            else:
                raise _WhenError(f"Invalid token: '{symbol}'")
            i = j
    return tokens


class _WhenParser:
    """Recursive descent over govaluate's precedence: || < && < comparators < + - < * / %."""

    _LEVELS = (_LOGICAL_OPS - {"&&"}, {"&&"}, _COMPARATOR_OPS, {"+", "-"}, {"*", "/", "%"})

    def __init__(self, tokens: list[tuple[str, Any]]):
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> Any:
        if not self.tokens:
            raise _WhenError("empty expression")
        tree = self._binary(0)
        if self.pos < len(self.tokens):
            raise self._unexpected()
        return tree

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _unexpected(self) -> _WhenError:
        token = self._peek()
        if token is None:
            return _WhenError("Unexpected end of expression")
        kind, value = token
        if kind == "op" and value not in _LOGICAL_OPS | _COMPARATOR_OPS | set("+-*/%"):
            return _WhenError(f"operator '{value}' is not implemented by local_runner")
        return _WhenError(f"Unexpected token '{_go_value(value)}'")

    def _binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (token := self._peek()) and token[0] == "op" and token[1] in self._LEVELS[level]:
            self.pos += 1
            left = ("binary", token[1], left, self._binary(level + 1))
        return left

    def _unary(self) -> Any:
        token = self._peek()
        if token is None:
            raise self._unexpected()
        kind, value = token
        self.pos += 1
        if kind == "prefix":
            if value == "~":
                raise _WhenError("operator '~' is not implemented by local_runner")
            return ("prefix", value, self._unary())
        if kind == "(":
            tree = self._binary(0)
            if self._peek() != (")", ")"):
                raise self._unexpected()
            self.pos += 1
            return tree
        if kind == "accessor":
            raise _WhenError(f"accessor '{value}' is not implemented by local_runner")
        if kind in _VALUE_KINDS:
            return ("value", value)
        self.pos -= 1
        raise self._unexpected()


def _evaluate(tree: Any) -> Any:
    kind = tree[0]
    if kind == "value":
        return tree[1]
    if kind == "prefix":
        operand = _evaluate(tree[2])
        if tree[1] == "-":
            if type(operand) is not float:
                raise _WhenError(f"Value '{_go_value(operand)}' cannot be used with the "
                                 "prefix '-'")
            return -operand
        if type(operand) is not bool:
            raise _WhenError(f"Value '{_go_value(operand)}' cannot be used with the prefix '!'")
        return not operand
    _, op, left_tree, right_tree = tree
    left = _evaluate(left_tree)
    if op in _LOGICAL_OPS:
        if type(left) is not bool:
            raise _WhenError(f"Value '{_go_value(left)}' cannot be used with the logical "
                             f"operator '{op}', it is not a bool")
        if left == (op == "||"):  # govaluate short-circuits
            return left
        right = _evaluate(right_tree)
        if type(right) is not bool:
            raise _WhenError(f"Value '{_go_value(right)}' cannot be used with the logical "
                             f"operator '{op}', it is not a bool")
        return right
    right = _evaluate(right_tree)
    if op == "==":
        return type(left) is type(right) and left == right
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if op in ("=~", "!~"):
        if type(left) is not str or type(right) is not str:
            raise _WhenError(f"Value '{_go_value(left)}' cannot be used with the comparator "
                             f"'{op}', it is not a string")
        return (re.search(right, left) is not None) == (op == "=~")
    both_numbers = type(left) is float and type(right) is float
    if op in (">", ">=", "<", "<="):
        if not both_numbers and not (type(left) is str and type(right) is str):
            raise _WhenError(f"Value '{_go_value(left)}' cannot be used with the comparator "
                             f"'{op}', it is not a number")
        return {">": left > right, ">=": left >= right,
                "<": left < right, "<=": left <= right}[op]
    if op == "+" and not both_numbers and (type(left) is str or type(right) is str):
        return _go_value(left) + _go_value(right)
    if not both_numbers:
        raise _WhenError(f"Value '{_go_value(left)}' cannot be used with the modifier "
                         f"'{op}', it is not a number")
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:  # Go float division
        return math.nan if op == "%" or left == 0 else math.copysign(math.inf, left)
    return left / right if op == "/" else math.fmod(left, right)


def evaluate_when(expression: str) -> bool:
    """Evaluate an already substituted Argo ``when`` expression as Argo 3.3 does."""
    try:
        result = _evaluate(_WhenParser(_lex_when(expression)).parse())
    except _WhenError as e:
        raise _WhenError(f"Invalid 'when' expression '{expression}': {e}") from None
    if type(result) is not bool:
        raise _WhenError(f"Expected boolean evaluation for '{expression}'. "
                         f"Got {_go_value(result)}")
    return result


# ---------------------------------------------------------------------------------------
# Kubernetes $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion)


def expand_k8s(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` becomes VAR's value if defined in ``env``, else stays; ``$$`` is ``$``."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i] == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close >= 0:
                    name = text[i + 2:close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Static validation: everything reachable is checked before anything runs

_SPEC_KEYS = {
    "entrypoint", "templates", "arguments", "onExit", "activeDeadlineSeconds", "volumes",
    # scheduling and bookkeeping, irrelevant on one host
    "serviceAccountName", "parallelism", "imagePullSecrets", "nodeSelector", "tolerations",
    "affinity", "securityContext", "podGC", "ttlStrategy", "ttlSecondsAfterFinished",
    "priority", "priorityClassName", "podPriorityClassName", "schedulerName",
    "podMetadata", "podDisruptionBudget", "hostNetwork", "dnsPolicy", "dnsConfig",
    "artifactRepositoryRef", "automountServiceAccountToken", "executor",
}
_TEMPLATE_KEYS = {
    "name", "container", "dag", "inputs", "outputs", "metadata", "volumes", "podSpecPatch",
    "activeDeadlineSeconds", "retryStrategy",
    "nodeSelector", "tolerations", "affinity", "securityContext", "serviceAccountName",
    "automountServiceAccountToken", "priorityClassName", "schedulerName", "hostAliases",
    "archiveLocation", "parallelism",
}
_CONTAINER_KEYS = {
    "name", "image", "command", "args", "env", "resources", "volumeMounts", "workingDir",
    "imagePullPolicy", "securityContext", "ports", "terminationMessagePath",
    "terminationMessagePolicy",
}
_TASK_KEYS = {"name", "template", "arguments", "dependencies", "when"}
_CONTAINER_ONLY_VARIABLES = ("pod.name",)


def _fail(template: str, field: str, problem: str) -> UnsupportedWorkflowError:
    return UnsupportedWorkflowError(f"template {template!r}, {field}: {problem}")


def _input_names(tmpl: Mapping[str, Any]) -> list[str]:
    return [p["name"] for p in (tmpl.get("inputs") or {}).get("parameters") or []]


def _output_parameters(tmpl: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((tmpl.get("outputs") or {}).get("parameters") or [])


def _check_supplied(tmpl: Mapping[str, Any], supplied: set[str], where: str) -> None:
    for p in (tmpl.get("inputs") or {}).get("parameters") or []:
        if p["name"] not in supplied and "default" not in p and "value" not in p:
            raise UnsupportedWorkflowError(
                f"{where}: input parameter {p['name']!r} of template {tmpl['name']!r} "
                "is not supplied")


def _check_tags(template: str, value: Any, where: str,
                allowed: Callable[[str], str | None]) -> None:
    """``allowed(tag)`` returns None if the tag resolves here, else why it does not."""
    for field, text in _strings(value, where):
        for match in _TAG.finditer(text):
            tag = match.group(1).strip()
            problem = allowed(tag)
            if problem:
                raise _fail(template, field, f"{{{{{tag}}}}}: {problem}")


def _validate(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if workflow.get("kind") != "Workflow":
        raise UnsupportedWorkflowError(f"kind is {workflow.get('kind')!r}, not 'Workflow'")
    spec = workflow.get("spec") or {}
    for key in spec:
        if key not in _SPEC_KEYS:
            raise UnsupportedWorkflowError(f"spec.{key} is not supported")
    templates: dict[str, dict[str, Any]] = {}
    for tmpl in spec.get("templates") or []:
        if tmpl["name"] in templates:
            raise UnsupportedWorkflowError(f"template {tmpl['name']!r} is defined twice")
        templates[tmpl["name"]] = tmpl
    global_params = {p["name"] for p in (spec.get("arguments") or {}).get("parameters") or []}
    roots = [spec.get("entrypoint"), spec.get("onExit")]
    if roots[0] not in templates:
        raise UnsupportedWorkflowError(f"spec.entrypoint {roots[0]!r} is not a template")
    if roots[1] is not None and roots[1] not in templates:
        raise UnsupportedWorkflowError(f"spec.onExit {roots[1]!r} is not a template")
    for root in filter(None, roots):
        _check_supplied(templates[root], global_params, f"spec.arguments for {root!r}")

    def allowed_common(tag: str, tmpl: Mapping[str, Any]) -> str | None:
        if tag.startswith("inputs.parameters."):
            name = tag[len("inputs.parameters."):]
            return None if name in _input_names(tmpl) else "no such input parameter"
        if tag.startswith("workflow.parameters."):
            name = tag[len("workflow.parameters."):]
            return None if name in global_params else "no such workflow parameter"
        if tag in _WORKFLOW_VARIABLES:
            return None
        return "not supported by local_runner"

    seen: set[str] = set()
    pending = [r for r in roots if r]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        tmpl = templates[name]
        for key in tmpl:
            if key not in _TEMPLATE_KEYS:
                raise _fail(name, key, "not supported by local_runner")
        kinds = [k for k in ("container", "dag") if k in tmpl]
        if len(kinds) != 1:
            raise _fail(name, "kind", "only container and dag templates can run locally")
        if (tmpl.get("inputs") or {}).get("artifacts"):
            raise _fail(name, "inputs.artifacts", "input artifacts are not supported")
        if kinds[0] == "container":
            _validate_container(tmpl, spec)
            _check_tags(name, tmpl, "", lambda tag, t=tmpl: (
                None if tag in _CONTAINER_ONLY_VARIABLES else allowed_common(tag, t)))
        else:
            pending += _validate_dag(tmpl, templates, allowed_common)
    return {name: templates[name] for name in seen}


def _validate_container(tmpl: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    name = tmpl["name"]
    container = tmpl["container"]
    for key in container:
        if key not in _CONTAINER_KEYS:
            raise _fail(name, f"container.{key}", "not supported by local_runner")
    command = container.get("command")
    if not command:
        raise _fail(name, "container.command",
                    "missing: the image's entrypoint cannot run locally")
    for field in ("command", "args"):
        if not all(isinstance(a, str) for a in container.get(field) or []):
            raise _fail(name, f"container.{field}", "every item must be a string")
    for env in container.get("env") or []:
        value_from = env.get("valueFrom")
        if value_from is not None and set(value_from) != {"secretKeyRef"}:
            raise _fail(name, f"container.env[{env['name']}].valueFrom",
                        "only secretKeyRef is supported")
    if "{{" in json.dumps(container.get("resources") or {}):
        raise _fail(name, "container.resources",
                    "Argo does not substitute parameters in resource quantities: "
                    "use podSpecPatch (op.container.add_resource_limit)")
    volumes = {v["name"]: v for v in (spec.get("volumes") or []) + (tmpl.get("volumes") or [])}
    for volume in volumes.values():
        kinds = set(volume) - {"name"}
        if kinds not in ({"hostPath"}, {"persistentVolumeClaim"}, {"emptyDir"}):
            raise _fail(name, f"volumes[{volume['name']}]",
                        f"{', '.join(sorted(kinds))} volumes are not supported")
        host_type = (volume.get("hostPath") or {}).get("type", "")
        if host_type not in ("", "Directory", "DirectoryOrCreate"):
            raise _fail(name, f"volumes[{volume['name']}].hostPath.type",
                        f"{host_type!r} is not supported")
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise _fail(name, f"container.volumeMounts[{mount['name']}]", "no such volume")
    for param in _output_parameters(tmpl):
        if not (param.get("valueFrom") or {}).get("path"):
            raise _fail(name, f"outputs.parameters[{param['name']}]",
                        "only valueFrom.path is supported")
    for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
        if not art.get("path"):
            raise _fail(name, f"outputs.artifacts[{art['name']}]", "needs a path")


def _validate_dag(tmpl: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]],
                  allowed_common: Callable[[str, Mapping[str, Any]], str | None]) -> list[str]:
    name = tmpl["name"]
    for key in tmpl["dag"]:
        if key != "tasks":
            raise _fail(name, f"dag.{key}", "not supported by local_runner")
    tasks = {t["name"]: t for t in tmpl["dag"].get("tasks") or []}
    for task in tasks.values():
        where = f"dag.tasks[{task['name']}]"
        for key in task:
            if key not in _TASK_KEYS:
                raise _fail(name, f"{where}.{key}", "not supported by local_runner")
        if task.get("template") not in templates:
            raise _fail(name, f"{where}.template", f"no template {task.get('template')!r}")
        for dep in task.get("dependencies") or []:
            if dep not in tasks:
                raise _fail(name, f"{where}.dependencies", f"no task {dep!r}")
        args = (task.get("arguments") or {})
        if args.get("artifacts"):
            raise _fail(name, f"{where}.arguments.artifacts", "artifacts are not supported")
        _check_supplied(templates[task["template"]],
                        {p["name"] for p in args.get("parameters") or []}, f"template "
                        f"{name!r}, {where}.arguments")
    _topological_order(tasks, name)

    def allowed(tag: str) -> str | None:
        match = _TASK_OUTPUT.fullmatch(tag)
        if not match:
            return allowed_common(tag, tmpl)
        task_name, param = match.groups()
        if task_name not in tasks:
            return f"no task {task_name!r} in this DAG"
        producer = templates[tasks[task_name]["template"]]
        if param not in {p["name"] for p in _output_parameters(producer)}:
            return (f"template {producer['name']!r} declares no output parameter {param!r} "
                    "(Argo rejects this workflow)")
        return None

    _check_tags(name, tmpl.get("dag"), "dag", allowed)
    for param in _output_parameters(tmpl):
        if not (param.get("valueFrom") or {}).get("parameter"):
            raise _fail(name, f"outputs.parameters[{param['name']}]",
                        "a DAG output needs valueFrom.parameter")
    _check_tags(name, tmpl.get("outputs"), "outputs", allowed)
    if (tmpl.get("outputs") or {}).get("artifacts"):
        raise _fail(name, "outputs.artifacts", "DAG output artifacts are not supported")
    return [t["template"] for t in tasks.values()]


def _topological_order(tasks: Mapping[str, Mapping[str, Any]], template: str) -> list[str]:
    """Kahn's algorithm, taking the alphabetically first ready task each time."""
    waiting = {n: len(set(t.get("dependencies") or [])) for n, t in tasks.items()}
    dependents: dict[str, list[str]] = collections.defaultdict(list)
    for n, t in tasks.items():
        for dep in set(t.get("dependencies") or []):
            dependents[dep].append(n)
    ready = [n for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for d in dependents[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, d)
    if len(order) != len(tasks):
        raise _fail(template, "dag.tasks", "the dependencies form a cycle")
    return order


# ---------------------------------------------------------------------------------------
# Kubernetes checks a pod would fail on

_STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage", "pods"}
# The pattern Kubernetes quotes when it rejects a quantity.
_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")


def _resource_problem(name: str, quantity: str) -> str | None:
    if name not in _STANDARD_RESOURCES and not name.startswith("hugepages-") and "/" not in name:
        return (f"resource name {name!r} must be a standard resource type or fully "
                "qualified (e.g. nvidia.com/gpu)")
    if not _QUANTITY.fullmatch(quantity):
        return f"quantity {quantity!r} of {name} is not a valid Kubernetes quantity"
    if "/" in name and not quantity.isdigit():
        return f"extended resource {name} must be a whole number, not {quantity!r}"
    return None


def _fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class _StepFailure(Exception):
    """A step cannot run, the way a pod fails to start; the message says why."""


class _PathMap:
    """Container path prefixes to host directories, longest prefix first."""

    def __init__(self, pairs: Mapping[str, Path]):
        self.pairs = sorted(((p.rstrip("/") or "/", h) for p, h in pairs.items()),
                            key=lambda ph: len(ph[0]), reverse=True)

    def lookup(self, path: str) -> str | None:
        for prefix, host in self.pairs:
            if _under(path, prefix):
                rest = path[len(prefix):].lstrip("/")
                return str(host / rest) if rest else str(host)
        return None

    def host(self, path: str) -> Path:
        """The host path of a container path known to be mapped."""
        mapped = self.lookup(path)
        assert mapped is not None, path
        return Path(mapped)

    def rewrite(self, text: str) -> str:
        """Map an absolute container path, or the value of a ``--flag=/path`` argument."""
        if text.startswith("/"):
            return self.lookup(text) or text
        if text.startswith("-") and "=" in text:
            flag, value = text.split("=", 1)
            mapped = self.lookup(value) if value.startswith("/") else None
            return f"{flag}={mapped}" if mapped else text
        return text


# ---------------------------------------------------------------------------------------
# Execution


@dataclasses.dataclass
class _Node:
    name: str  # Argo node name: workflow name, then task names, joined by "."
    path: str
    depth: int


class _Runner:
    def __init__(self, workflow: Mapping[str, Any], *, run_dir: Path,
                 host_paths: Mapping[str, PathLike] | Callable[[str], PathLike] | None,
                 claims: dict[str, PathLike], per_step_dirs: list[str],
                 base_env: dict[str, str], secrets: dict[tuple[str, str], str],
                 path_prefix: list[str], executables: dict[str, str],
                 echo: Callable[[str], None] | None, masked: list[str]):
        self.templates = _validate(workflow)
        self.masked = masked
        self.spec = workflow["spec"]
        meta = workflow.get("metadata") or {}
        self.name = meta.get("name") or f"{meta.get('generateName', 'workflow-')}local"
        self.run_dir = run_dir
        self.host_paths = host_paths
        self.claims = claims
        self.per_step_dirs = per_step_dirs
        self.base_env = base_env
        self.secrets = secrets
        self.path_prefix = path_prefix
        self.executables = executables
        self.echo = echo
        self.steps: list[StepRecord] = []
        self.globals: dict[str, str] = {
            "workflow.name": self.name,
            "workflow.uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-runner/{self.name}")),
            "workflow.namespace": FAKE_NAMESPACE,
            "workflow.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "workflow.status": "Running",
        }
        self.deadline: float | None = None
        self.deadline_hit = False
        self.started: dict[int, float] = {}  # id(StepRecord) -> time.monotonic()
        self._check_configuration()

    def _check_configuration(self) -> None:
        """Fail before running anything on a missing secret or volume mapping, where the
        names do not depend on parameters (those are checked when their step starts)."""
        for tmpl in self.templates.values():
            container = tmpl.get("container") or {}
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and "{{" not in ref["name"] + ref["key"] and not ref.get("optional") \
                        and (ref["name"], ref["key"]) not in self.secrets:
                    raise ValueError(f"template {tmpl['name']!r}: env {env['name']} needs key "
                                     f"{ref['key']!r} of secret {ref['name']!r}: pass it in "
                                     "secrets=")
            volumes = {v["name"]: v for v in (self.spec.get("volumes") or [])
                       + (tmpl.get("volumes") or [])}
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                if "emptyDir" not in volume and "{{" not in json.dumps(volume):
                    self._volume_host_dir(volume, tmpl["name"])

    def run(self, arguments: dict[str, str | int | float]) -> RunResult:
        defaults = {p["name"]: str(p.get("value", ""))
                    for p in (self.spec.get("arguments") or {}).get("parameters") or []}
        for key in arguments:
            if key not in defaults:
                raise ValueError(f"unknown pipeline parameter {key!r}; the pipeline has: "
                                 f"{', '.join(defaults) or 'none'}")
        params = {**defaults, **{k: str(v) for k, v in arguments.items()}}
        self.globals.update({f"workflow.parameters.{k}": v for k, v in params.items()})
        if "activeDeadlineSeconds" in self.spec:
            self.deadline = time.monotonic() + int(self.spec["activeDeadlineSeconds"])

        entrypoint = self.spec["entrypoint"]
        if "dag" in self.templates[entrypoint]:
            status, message, _ = self._run_template(
                entrypoint, params, _Node(self.name, "", -1), None)
        else:
            node = _Node(self.name, entrypoint, 0)
            record = self._new_record(entrypoint, node, entrypoint)
            status, message, _ = self._run_template(entrypoint, params, node, record)
            self._finish(record, status, message)
        if self.deadline_hit:
            status, message = FAILED, (f"workflow activeDeadlineSeconds "
                                       f"({self.spec['activeDeadlineSeconds']}) exceeded")
        elif status == FAILED:
            failed = [s.path for s in self.steps if s.status == FAILED]
            message = "failed: " + ", ".join(  # the failures, not the groups holding them
                p for p in failed if not any(q.startswith(p + ".") for q in failed))
        if self.spec.get("onExit"):
            self.globals["workflow.status"] = status
            self.deadline = None
            exit_node = _Node(f"{self.name}.onExit", "onExit", 0)
            record = self._new_record("onExit", exit_node, self.spec["onExit"])
            exit_status, exit_message, _ = self._run_template(
                self.spec["onExit"], params, exit_node, record)
            self._finish(record, exit_status, exit_message)
            if exit_status != SUCCEEDED and status == SUCCEEDED:
                status, message = FAILED, f"exit handler failed: {exit_message}"
        return RunResult(self.name, status, message, self.steps, self.run_dir)

    # -- templates ----------------------------------------------------------------------

    def _run_template(self, name: str, args: Mapping[str, str], node: _Node,
                      record: StepRecord | None) -> tuple[str, str, dict[str, str]]:
        """Run a template with its arguments; returns (status, message, output parameters)."""
        tmpl = self.templates[name]
        inputs = {}
        for p in (tmpl.get("inputs") or {}).get("parameters") or []:
            value = args.get(p["name"], p.get("default", p.get("value")))
            if value is None:
                return FAILED, f"inputs.parameters.{p['name']} was not supplied", {}
            inputs[f"inputs.parameters.{p['name']}"] = str(value)
        if "dag" in tmpl:
            return self._run_dag(tmpl, inputs, node)
        assert record is not None
        return self._run_container(tmpl, inputs, node, record)

    def _run_dag(self, tmpl: Mapping[str, Any], inputs: Mapping[str, str],
                 node: _Node) -> tuple[str, str, dict[str, str]]:
        scope = {**self.globals, **inputs}
        dag = _substitute(tmpl["dag"], scope, keep=lambda tag: tag.startswith("tasks."))
        tasks = {t["name"]: t for t in dag.get("tasks") or []}
        status: dict[str, str] = {}
        outputs: dict[str, str] = {}  # "tasks.T.outputs.parameters.P" -> value
        for task_name in _topological_order(tasks, tmpl["name"]):
            if self._deadline_passed():
                break
            task = tasks[task_name]
            child = _Node(f"{node.name}.{task_name}",
                          f"{node.path}.{task_name}" if node.path else task_name,
                          node.depth + 1)
            record = self._new_record(task_name, child, task["template"])
            not_done = [d for d in task.get("dependencies") or []
                        if status[d] not in (SUCCEEDED, SKIPPED)]
            if not_done:
                status[task_name] = OMITTED
                self._finish(record, OMITTED, "upstream "
                             + ", ".join(f"{d} {status[d].lower()}" for d in not_done))
                continue
            try:
                resolved = _substitute({k: task.get(k) for k in ("arguments", "when")},
                                       outputs, keep=lambda tag: False)
            except _Unresolved as e:
                producer = _TASK_OUTPUT.fullmatch(e.tag)
                status[task_name] = FAILED
                self._finish(record, FAILED, f"unable to resolve {{{{{e.tag}}}}}: task "
                             f"{producer.group(1) if producer else '?'} produced no outputs")
                continue
            if resolved["when"]:
                try:
                    proceed = evaluate_when(resolved["when"])
                except _WhenError as e:
                    status[task_name] = FAILED
                    self._finish(record, FAILED, str(e))
                    continue
                if not proceed:
                    status[task_name] = SKIPPED
                    self._finish(record, SKIPPED, f"when '{resolved['when']}' evaluated false")
                    continue
            args = {p["name"]: str(p.get("value", ""))
                    for p in (resolved["arguments"] or {}).get("parameters") or []}
            task_status, message, task_outputs = self._run_template(
                task["template"], args, child, record)
            status[task_name] = task_status
            self._finish(record, task_status, message)
            outputs.update({f"tasks.{task_name}.outputs.parameters.{k}": v
                            for k, v in task_outputs.items()})
        if self.deadline_hit:
            return FAILED, "workflow deadline exceeded", {}
        failed = sorted(n for n, s in status.items() if s == FAILED)
        if failed:
            return FAILED, f"failed: {', '.join(failed)}", {}
        dag_outputs = {}
        for param in _output_parameters(tmpl):
            ref = _substitute(param["valueFrom"]["parameter"], scope,
                              keep=lambda tag: tag.startswith("tasks."))
            try:
                dag_outputs[param["name"]] = _substitute(ref, outputs, keep=lambda tag: False)
            except _Unresolved as e:
                if "default" not in param["valueFrom"]:
                    return FAILED, (f"output parameter {param['name']}: unable to resolve "
                                    f"{{{{{e.tag}}}}}"), {}
                dag_outputs[param["name"]] = str(param["valueFrom"]["default"])
        return SUCCEEDED, "", dag_outputs

    def _run_container(self, tmpl: Mapping[str, Any], inputs: Mapping[str, str],
                       node: _Node, record: StepRecord) -> tuple[str, str, dict[str, str]]:
        pod_name = f"{self.name}-{_fnv32a(node.name)}"
        scope = {**self.globals, **inputs, "pod.name": pod_name}
        tmpl = _substitute(tmpl, scope, keep=lambda tag: False)
        container = tmpl["container"]
        record.annotations = dict((tmpl.get("metadata") or {}).get("annotations") or {})
        record.retry_strategy = tmpl.get("retryStrategy")
        step_dir = self.run_dir / f"{len(self.steps):03d}-{_safe(node.path)}"
        record.log_path = step_dir / "log.txt"
        step_dir.mkdir(parents=True)
        try:
            record.resources = self._resources(tmpl)
            if "activeDeadlineSeconds" in tmpl:
                try:
                    record.timeout = int(tmpl["activeDeadlineSeconds"])
                except ValueError:
                    raise _StepFailure("activeDeadlineSeconds is not a whole number: "
                                       f"{tmpl['activeDeadlineSeconds']!r}") from None
            path_map = self._mounts(tmpl, step_dir)
            record.mounts = {prefix: host for prefix, host in path_map.pairs}
            for output in _output_parameters(tmpl) + list(
                    (tmpl.get("outputs") or {}).get("artifacts") or []):
                path = output.get("path") or output["valueFrom"]["path"]
                if path_map.lookup(path) is None:
                    raise _fail(tmpl["name"], f"outputs[{output['name']}]",
                                f"{path} is not under a volume mount or one of "
                                "per_step_dirs, so it cannot be read back")
            container_env, env, secret_values = self._env(container, path_map)
        except _StepFailure as e:
            return FAILED, str(e), {}

        def mask(text: str) -> str:
            for secret in secret_values + self.masked:
                text = text.replace(secret, SECRET_MASK)
            return text

        argv = [expand_k8s(a, container_env) for a in
                list(container.get("command") or []) + list(container.get("args") or [])]
        record.argv = [mask(a) for a in argv]
        host_argv = [path_map.rewrite(a) for a in argv]
        host_argv[0] = self.executables.get(argv[0], host_argv[0])
        record.host_argv = [mask(a) for a in host_argv]
        env[PATH_MAP_ENV] = json.dumps({p: str(h) for p, h in record.mounts.items()})
        env["PATH"] = os.pathsep.join(self.path_prefix + [env.get("PATH", os.defpath)])
        executable = (host_argv[0] if "/" in host_argv[0]
                      else shutil.which(host_argv[0], path=env["PATH"]))
        if not executable or not os.access(executable, os.X_OK):
            return FAILED, (f'exec: "{host_argv[0]}": executable file not found in $PATH '
                            f"({env['PATH']})"), {}
        cwd = path_map.lookup(container["workingDir"]) if container.get("workingDir") \
            else str(step_dir / "cwd")
        if cwd is None:
            raise _fail(tmpl["name"], "container.workingDir",
                        f"{container['workingDir']} is not under a mapped path")
        Path(cwd).mkdir(parents=True, exist_ok=True)

        timeout = self._timeout(record.timeout)
        if self.echo is not None:
            self.echo(f"[{record.display_name}] started: {shlex.join(record.argv)}")
        exit_code, timed_out, tail = self._execute(
            [executable] + host_argv[1:], env, cwd, record, timeout)
        record.exit_code = exit_code
        record.error_tail = [mask(line) for line in tail]
        if timed_out:
            if record.timeout is not None and timeout == record.timeout:
                return FAILED, ("Pod was active on the node longer than the specified "
                                f"deadline (activeDeadlineSeconds={record.timeout})"), {}
            self.deadline_hit = True
            return FAILED, "stopped: workflow activeDeadlineSeconds exceeded", {}
        if exit_code is None:
            return FAILED, record.error_tail[-1], {}
        if exit_code != 0:
            return FAILED, f"Error (exit code {exit_code})", {}
        return self._collect_outputs(tmpl, path_map, record)

    # -- container helpers --------------------------------------------------------------

    def _resources(self, tmpl: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        resources = {kind: {k: str(v) for k, v in values.items()}
                     for kind, values in (tmpl["container"].get("resources") or {}).items()
                     if kind in ("limits", "requests") and values}
        if tmpl.get("podSpecPatch"):
            try:
                patch = json.loads(tmpl["podSpecPatch"])
            except json.JSONDecodeError as e:
                raise _StepFailure(
                    f"podSpecPatch is not valid JSON after substitution: {e}") from None
            for container in patch.get("containers") or []:
                if container.get("name") == "main":
                    for kind, values in (container.get("resources") or {}).items():
                        resources.setdefault(kind, {}).update(
                            {k: str(v) for k, v in values.items()})
        for values in resources.values():
            for name, quantity in values.items():
                problem = _resource_problem(name, quantity)
                if problem:
                    raise _StepFailure(f"pod spec invalid: {problem}")
        return resources

    def _mounts(self, tmpl: Mapping[str, Any], step_dir: Path) -> _PathMap:
        volumes = {v["name"]: v for v in (self.spec.get("volumes") or [])
                   + (tmpl.get("volumes") or [])}
        pairs: dict[str, Path] = {}
        for prefix in self.per_step_dirs:
            pairs[prefix] = step_dir / "fs" / _safe(prefix.strip("/"))
            pairs[prefix].mkdir(parents=True)
        for mount in tmpl["container"].get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                host = step_dir / "volumes" / _safe(mount["name"])
            else:
                host = self._volume_host_dir(volume, tmpl["name"])
            if (volume.get("hostPath") or {}).get("type") == "Directory" and not host.is_dir():
                raise _StepFailure(f"hostPath type check failed: {volume['hostPath']['path']} "
                                   f"is not a directory (mapped to {host})")
            host.mkdir(parents=True, exist_ok=True)
            if mount.get("subPath"):
                host = host / mount["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            pairs[mount["mountPath"]] = host
        return _PathMap(pairs)

    def _volume_host_dir(self, volume: Mapping[str, Any], template: str) -> Path:
        """The host directory of a hostPath or persistentVolumeClaim volume."""
        if "hostPath" in volume:
            path = volume["hostPath"]["path"]
            if callable(self.host_paths):
                return Path(self.host_paths(path)).absolute()
            found = _PathMap({k: Path(v).absolute()
                              for k, v in (self.host_paths or {}).items()}).lookup(path)
            if found is None:
                raise ValueError(f"template {template!r} mounts hostPath {path!r}: "
                                 "pass its host directory in host_paths=")
            return Path(found)
        claim = volume["persistentVolumeClaim"]["claimName"]
        if claim not in self.claims:
            raise ValueError(f"template {template!r} mounts claim {claim!r}: "
                             "pass its host directory in claims=")
        return Path(self.claims[claim]).absolute()

    def _env(self, container: Mapping[str, Any], path_map: _PathMap
             ) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """The container env (container paths, for $(VAR) in command and args), the process
        env (base env plus the container env with host paths) and the secret values."""
        container_env: dict[str, str] = {}
        secret_values = []
        for entry in container.get("env") or []:
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                key = (ref["name"], ref["key"])
                if key not in self.secrets:
                    if ref.get("optional"):
                        continue
                    raise ValueError(f"env {entry['name']} needs key {ref['key']!r} of "
                                     f"secret {ref['name']!r}: pass it in secrets=")
                container_env[entry["name"]] = self.secrets[key]
                if self.secrets[key]:
                    secret_values.append(self.secrets[key])
            else:  # Kubernetes expands references to the entries before this one
                container_env[entry["name"]] = expand_k8s(entry.get("value", ""),
                                                          container_env)
        process_env = {**self.base_env,
                       **{k: path_map.rewrite(v) for k, v in container_env.items()}}
        return container_env, process_env, secret_values

    def _timeout(self, step_timeout: int | None) -> float | None:
        if self.deadline is None:
            return step_timeout
        remaining = max(self.deadline - time.monotonic(), 0.0)
        return remaining if step_timeout is None else min(step_timeout, remaining)

    def _deadline_passed(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline_hit = True
        return self.deadline_hit

    def _execute(self, argv: list[str], env: dict[str, str], cwd: str, record: StepRecord,
                 timeout: float | None) -> tuple[int | None, bool, list[str]]:
        """Run one process; returns (exit code as Kubernetes reports it, timed out, the last
        lines of stderr, or of stdout if stderr was empty)."""
        lock = threading.Lock()
        stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        stdout_tail: collections.deque[str] = collections.deque(maxlen=200)
        assert record.log_path is not None
        with open(record.log_path, "w", encoding="utf-8") as log:
            try:
                proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
            except OSError as e:
                return None, False, [f"cannot start {argv[0]}: {e}"]

            def pump(stream, tail: collections.deque[str]) -> None:
                for raw in stream:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    tail.append(line)
                    with lock:
                        log.write(line + "\n")
                        log.flush()
                        if self.echo is not None:
                            self.echo(f"[{record.display_name}] {line}")

            readers = [threading.Thread(target=pump, args=(proc.stdout, stdout_tail)),
                       threading.Thread(target=pump, args=(proc.stderr, stderr_tail))]
            for reader in readers:
                reader.start()
            # Wait on a pidfd so the exited process stays unreaped: its process group id
            # cannot be reused while its leftover processes are killed.
            pidfd = os.pidfd_open(proc.pid)
            try:
                timed_out = not select.select([pidfd], [], [], timeout)[0]
                if timed_out:
                    self._kill(proc, signal.SIGTERM)
                    select.select([pidfd], [], [], KILL_GRACE_SECONDS)
                # A container's leftover processes die with it.
                self._kill(proc, signal.SIGKILL)
                proc.wait()
            finally:
                os.close(pidfd)
            for reader in readers:
                reader.join()
        code = proc.returncode
        exit_code = 128 - code if code < 0 else code
        return exit_code, timed_out, list(stderr_tail or stdout_tail)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _collect_outputs(self, tmpl: Mapping[str, Any], path_map: _PathMap,
                         record: StepRecord) -> tuple[str, str, dict[str, str]]:
        outputs = {}
        for param in _output_parameters(tmpl):
            value_from = param["valueFrom"]
            try:
                value = path_map.host(value_from["path"]).read_bytes().decode("utf-8", "replace")
            except OSError as e:
                if "default" not in value_from:
                    return FAILED, (f"failed to save outputs: output parameter "
                                    f"{param['name']}: open {value_from['path']}: "
                                    f"{e.strerror.lower() if e.strerror else e}"), {}
                value = str(value_from["default"])
            outputs[param["name"]] = value.removesuffix("\n")
        record.outputs = outputs
        for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
            host = path_map.host(art["path"])
            if host.exists():
                record.artifacts[art["name"]] = host
            elif art.get("optional") or art["name"] in KFP_OPTIONAL_ARTIFACTS:
                record.artifacts[art["name"]] = None
            else:
                return FAILED, (f"failed to save outputs: output artifact {art['name']}: "
                                f"{art['path']} does not exist"), {}
        return SUCCEEDED, "", outputs

    # -- records ------------------------------------------------------------------------

    def _new_record(self, task_name: str, node: _Node, template: str) -> StepRecord:
        tmpl = self.templates[template]
        annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
        record = StepRecord(
            name=task_name, path=node.path, template=template,
            display_name=annotations.get(DISPLAY_NAME_ANNOTATION, template),
            kind="dag" if "dag" in tmpl else "container", depth=node.depth)
        self.started[id(record)] = time.monotonic()
        self.steps.append(record)
        return record

    def _finish(self, record: StepRecord, status: str, message: str) -> None:
        record.status = status
        record.message = message
        record.duration = time.monotonic() - self.started[id(record)]
        if self.echo is not None and (record.kind == "container" or status != SUCCEEDED):
            self.echo(f"[{record.display_name}] {status}" + (f": {message}" if message else ""))
