"""One container step run as a local process, the way its pod would run it.

``command + args`` run without a shell, with the caller's base environment plus the
container's ``env`` (secret references read from a local table), Kubernetes ``$(VAR)``
expansion, volume mounts mapped to host directories (:mod:`rehearsal.path_map`) and
container paths in arguments and env values rewritten to them. ``activeDeadlineSeconds`` is a
timeout; output parameters and artifacts are read back from their mapped paths.
"""

from __future__ import annotations

import collections
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rehearsal import interrupts
from rehearsal.path_map import PathMap, safe
from rehearsal.run_record import FAILED, SUCCEEDED, StepRecord
from rehearsal.substitution import expand_k8s, substitute
from rehearsal.workflow_check import fail, output_parameters, resource_problem

PATH_MAP_ENV = "LOCAL_RUNNER_PATH_MAP"
# The KFP v1 API server marks these output artifacts optional when it submits a run
# (PatchTemplateOutputArtifacts); the compiled YAML does not.
KFP_OPTIONAL_ARTIFACTS = frozenset({"mlpipeline-ui-metadata", "mlpipeline-metrics"})
# Seconds between SIGTERM and SIGKILL when a step outlives its deadline.
KILL_GRACE_SECONDS = 5.0
SECRET_MASK = "******"

PathLike = str | os.PathLike[str]


class StepFailure(Exception):
    """The step fails, the way Argo would mark its pod Failed; the message says why."""


class WorkflowDeadlineExceeded(Exception):
    """The workflow's activeDeadlineSeconds ran out while a step ran; the step was stopped."""


class StepExecutor:
    """Runs container templates; holds what every step shares (volumes, env, secrets)."""

    def __init__(self, spec: Mapping[str, Any], *,
                 host_paths: Mapping[str, PathLike] | Callable[[str], PathLike] | None,
                 claims: dict[str, PathLike], per_step_dirs: list[str],
                 base_env: dict[str, str], secrets: dict[tuple[str, str], str],
                 path_prefix: list[str], executables: dict[str, str],
                 echo: Callable[[str], None] | None, masked: list[str]):
        self.spec = spec
        self.host_paths = host_paths
        self.claims = claims
        self.per_step_dirs = per_step_dirs
        self.base_env = base_env
        self.secrets = secrets
        self.path_prefix = path_prefix
        self.executables = executables
        self.echo = echo
        self.masked = masked

    def check_configuration(self, templates: Mapping[str, Mapping[str, Any]]) -> None:
        """Fail before running anything on a missing secret or volume mapping, where the
        names do not depend on parameters (those are checked when their step starts)."""
        for tmpl in templates.values():
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

    def run(self, tmpl: Mapping[str, Any], scope: Mapping[str, str], step_dir: Path,
            record: StepRecord, workflow_remaining: float | None
            ) -> tuple[str, str, dict[str, str]]:
        """Run one container template whose ``{{tags}}`` resolve in ``scope``; its log,
        working directory and emptyDirs go under ``step_dir``. Returns (status, message,
        output parameters): every way a step fails (its pod cannot start, its command is
        missing, exits non-zero, outlives its deadline, or leaves an output unwritten) is a
        :class:`StepFailure` inside, reported here as (FAILED, why, {}). What is not the
        step's failure is raised: :class:`WorkflowDeadlineExceeded` when the workflow's
        remaining time (``workflow_remaining`` seconds) ran out while it ran, and the
        errors of a workflow or a runner configuration that cannot run at all."""
        try:
            return SUCCEEDED, "", self._run(substitute(tmpl, scope, keep=lambda tag: False),
                                            step_dir, record, workflow_remaining)
        except StepFailure as failure:
            return FAILED, str(failure), {}

    def _run(self, tmpl: Mapping[str, Any], step_dir: Path, record: StepRecord,
             workflow_remaining: float | None) -> dict[str, str]:
        record.annotations = dict((tmpl.get("metadata") or {}).get("annotations") or {})
        record.retry_strategy = tmpl.get("retryStrategy")
        record.log_path = step_dir / "log.txt"
        step_dir.mkdir(parents=True)
        path_map, container_env, env, secret_values = self._pod(tmpl, step_dir, record)

        def mask(text: str) -> str:
            for secret in secret_values + self.masked:
                text = text.replace(secret, SECRET_MASK)
            return text

        argv, cwd = self._command(tmpl, path_map, container_env, env, step_dir, record, mask)
        timeout = record.timeout if workflow_remaining is None else (
            workflow_remaining if record.timeout is None
            else min(record.timeout, workflow_remaining))
        if self.echo is not None:
            self.echo(f"[{record.display_name}] started: {shlex.join(record.argv)}")
        exit_code, timed_out, tail = self._execute(argv, env, cwd, record, timeout)
        record.exit_code = exit_code
        record.error_tail = [mask(line) for line in tail]
        if timed_out:
            if record.timeout is None or timeout != record.timeout:
                raise WorkflowDeadlineExceeded("stopped: workflow activeDeadlineSeconds "
                                               "exceeded")
            self._keep_failed_artifacts(tmpl, path_map, record)
            raise StepFailure("Pod was active on the node longer than the specified "
                              f"deadline (activeDeadlineSeconds={record.timeout})")
        if exit_code is None:
            raise StepFailure(record.error_tail[-1])
        if exit_code != 0:
            self._keep_failed_artifacts(tmpl, path_map, record)
            raise StepFailure(f"Error (exit code {exit_code})")
        return self._collect_outputs(tmpl, path_map, record)

    def _pod(self, tmpl: Mapping[str, Any], step_dir: Path, record: StepRecord
             ) -> tuple[PathMap, dict[str, str], dict[str, str], list[str]]:
        """What the pod starts with: (its mounts, the container env, the process env, the
        secret values). StepFailure where Kubernetes would refuse the pod."""
        record.resources = self._resources(tmpl)
        if "activeDeadlineSeconds" in tmpl:
            try:
                record.timeout = int(tmpl["activeDeadlineSeconds"])
            except ValueError:
                raise StepFailure("activeDeadlineSeconds is not a whole number: "
                                  f"{tmpl['activeDeadlineSeconds']!r}") from None
        path_map = self._mounts(tmpl, step_dir)
        record.mounts = {prefix: host for prefix, host in path_map.pairs}
        for output in output_parameters(tmpl) + list(
                (tmpl.get("outputs") or {}).get("artifacts") or []):
            path = output.get("path") or output["valueFrom"]["path"]
            if path_map.lookup(path) is None:
                raise fail(tmpl["name"], f"outputs[{output['name']}]",
                           f"{path} is not under a volume mount or one of "
                           "per_step_dirs, so it cannot be read back")
        return (path_map, *self._env(tmpl["container"], path_map))

    def _command(self, tmpl: Mapping[str, Any], path_map: PathMap,
                 container_env: dict[str, str], env: dict[str, str], step_dir: Path,
                 record: StepRecord, mask: Callable[[str], str]) -> tuple[list[str], str]:
        """The host argv and working folder of the container's command (``env`` gets the
        path map and PATH); StepFailure when the executable is not found."""
        container = tmpl["container"]
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
            raise StepFailure(f'exec: "{host_argv[0]}": executable file not found in $PATH '
                              f"({env['PATH']})")
        cwd = path_map.lookup(container["workingDir"]) if container.get("workingDir") \
            else str(step_dir / "cwd")
        if cwd is None:
            raise fail(tmpl["name"], "container.workingDir",
                       f"{container['workingDir']} is not under a mapped path")
        Path(cwd).mkdir(parents=True, exist_ok=True)
        return [executable] + host_argv[1:], cwd

    # -- container helpers --------------------------------------------------------------

    def _resources(self, tmpl: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        resources = {kind: {k: str(v) for k, v in values.items()}
                     for kind, values in (tmpl["container"].get("resources") or {}).items()
                     if kind in ("limits", "requests") and values}
        if tmpl.get("podSpecPatch"):
            try:
                patch = json.loads(tmpl["podSpecPatch"])
            except json.JSONDecodeError as e:
                raise StepFailure(
                    f"podSpecPatch is not valid JSON after substitution: {e}") from None
            for container in patch.get("containers") or []:
                if container.get("name") == "main":
                    for kind, values in (container.get("resources") or {}).items():
                        resources.setdefault(kind, {}).update(
                            {k: str(v) for k, v in values.items()})
        for values in resources.values():
            for name, quantity in values.items():
                problem = resource_problem(name, quantity)
                if problem:
                    raise StepFailure(f"pod spec invalid: {problem}")
        return resources

    def _mounts(self, tmpl: Mapping[str, Any], step_dir: Path) -> PathMap:
        volumes = {v["name"]: v for v in (self.spec.get("volumes") or [])
                   + (tmpl.get("volumes") or [])}
        pairs: dict[str, Path] = {}
        for prefix in self.per_step_dirs:
            pairs[prefix] = step_dir / "fs" / safe(prefix.strip("/"))
            pairs[prefix].mkdir(parents=True)
        for mount in tmpl["container"].get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                host = step_dir / "volumes" / safe(mount["name"])
            else:
                host = self._volume_host_dir(volume, tmpl["name"])
            if (volume.get("hostPath") or {}).get("type") == "Directory" and not host.is_dir():
                raise StepFailure(f"hostPath type check failed: {volume['hostPath']['path']} "
                                   f"is not a directory (mapped to {host})")
            host.mkdir(parents=True, exist_ok=True)
            if mount.get("subPath"):
                host = host / mount["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            pairs[mount["mountPath"]] = host
        return PathMap(pairs)

    def _volume_host_dir(self, volume: Mapping[str, Any], template: str) -> Path:
        """The host directory of a hostPath or persistentVolumeClaim volume."""
        if "hostPath" in volume:
            path = volume["hostPath"]["path"]
            if callable(self.host_paths):
                return Path(self.host_paths(path)).absolute()
            found = PathMap({k: Path(v).absolute()
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

    def _env(self, container: Mapping[str, Any], path_map: PathMap
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
                with interrupts.deferred() as interrupted:
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
            pidfd = None
            try:
                if interrupted:
                    raise interrupted[0]
                for reader in readers:
                    reader.start()
                # Wait on a pidfd so the exited process stays unreaped: its process group id
                # cannot be reused while its leftover processes are killed.
                pidfd = os.pidfd_open(proc.pid)
                timed_out = not select.select([pidfd], [], [], timeout)[0]
                if timed_out:
                    self._kill(proc, signal.SIGTERM)
                    select.select([pidfd], [], [], KILL_GRACE_SECONDS)
            except BaseException:
                # Ctrl-C and SIGTERM reach only this process (the step has its own session),
                # at any point after the start: stop the step's processes too before giving
                # up, so nothing runs on or writes into a folder being removed.
                self._kill(proc, signal.SIGKILL)
                proc.wait()
                for reader in readers:
                    if reader.ident is not None:
                        reader.join()
                raise
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            # A container's leftover processes die with it.
            self._kill(proc, signal.SIGKILL)
            proc.wait()
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

    @staticmethod
    def _keep_failed_artifacts(tmpl: Mapping[str, Any], path_map: PathMap,
                               record: StepRecord) -> None:
        """Argo's wait container saves the artifacts of a main container that failed too
        (cmd/argoexec/commands/wait.go@v3.3.8), so the KFP UI shows a failed step's
        metrics and UI metadata: record those that exist; a missing one fails nothing."""
        for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
            host = path_map.host(art["path"])
            if host.exists():
                record.artifacts[art["name"]] = host

    def _collect_outputs(self, tmpl: Mapping[str, Any], path_map: PathMap,
                         record: StepRecord) -> dict[str, str]:
        """The output parameters, read back as Argo's wait container does; StepFailure for
        one that is missing without a default, or a missing required artifact."""
        outputs = {}
        for param in output_parameters(tmpl):
            value_from = param["valueFrom"]
            try:
                value = path_map.host(value_from["path"]).read_bytes().decode("utf-8", "replace")
            except OSError as e:
                if "default" not in value_from:
                    raise StepFailure(f"failed to save outputs: output parameter "
                                      f"{param['name']}: open {value_from['path']}: "
                                      f"{e.strerror.lower() if e.strerror else e}") from None
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
                raise StepFailure(f"failed to save outputs: output artifact {art['name']}: "
                                  f"{art['path']} does not exist")
        return outputs
