"""Running one TAO command under the report step's guards.

Before it runs: a ``--require``d input must exist, the run re-takes its claim on what the
step writes (``tao_step.claims``), and what an earlier run left there is moved aside
(``keep_previous``). While it runs: its output is streamed to the step log line by line, the
key masked (``tao_step.console``), and SIGTERM is passed on. After it: its exit status, a
FAILURE it recorded in TAO 5's status.json, or a traceback or ``Execution status: FAIL``
printed although it exited 0, each fail the step before anything of its output is read.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from tao_step import parse
from tao_step.console import REDACTED, error, masked_keys, say, shown_command, warn


def with_switches(command: Sequence[str], switches: Sequence[str]
                  ) -> Tuple[List[str], Optional[str]]:
    """``command`` with ``--FLAG`` after its subtask (the second argument: TAO's wrappers
    read the subtask first) for each ``FLAG=true`` switch; or a problem for a switch whose
    value is not ``true`` or ``false``."""
    command = list(command)
    for switch in switches:
        flag, _, value = switch.partition("=")
        if not flag or value not in ("true", "false"):
            return command, ("--switch %r: give FLAG=true or FLAG=false (the form's value for "
                             "the flag)" % switch)
        if value == "true":
            command[2:2] = ["--" + flag]
    return command, None


def run_guarded(command: Sequence[str], *, require: Sequence[str], outputs: Sequence[str],
                status_json: Optional[str], env: dict,
                whole_arrays: bool = False) -> Tuple[int, str]:
    """Run ``command`` under the guards: ``(0, its output)`` when it ran and succeeded, else
    ``(the step's exit status, "")`` once an ERROR line said why. ``outputs`` are the paths
    the step writes (claimed, then moved aside); ``whole_arrays`` makes numpy print arrays
    whole in the command's Python processes (``NUMPY_HOOK``)."""
    missing = [path for path in require if not os.path.exists(path)]
    if missing:
        error("%s does not exist; this step needs it and TAO would carry on without it "
              "(e.g. INT8 calibration on random data): run the step that writes it first"
              % missing[0])
        return 1, ""
    refused = claim_outputs(outputs) or keep_previous(outputs)
    if refused is not None:
        error(refused)
        return 1, ""
    status_start = status_json_size(status_json)
    say("running: " + shown_command(command))
    status, output = _run(command, env, whole_arrays)
    if status != 0:
        return status, ""
    failure = recorded_failure(status_json, status_start)
    if failure is not None:
        error("%s exited 0 but recorded a failure in %s: %s; nothing is published"
              % (shlex.quote(command[0]), status_json, failure))
        return 1, ""
    crash = parse.crash_line(output)
    if crash:
        error("%s exited with status 0 but printed %r: it failed, so this step fails "
              "and nothing read from its output is published"
              % (shlex.quote(command[0]), crash))
        return 1, ""
    return 0, output


def _run(command: Sequence[str], env: dict, whole_arrays: bool) -> Tuple[int, str]:
    """``(the step's exit status, the output)`` of running ``command``, streamed."""
    env = dict(env)
    hook_dir = None
    if whole_arrays:
        hook_dir = tempfile.mkdtemp(prefix="tao_step-numpy-")
        env.update(numpy_hook_env(hook_dir))
    try:
        status, output = run_streaming(command, getattr(sys.stdout, "buffer", sys.stdout),
                                       masked_keys(), extra_env=env)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        error("%s: %s" % ("command not found" if missing else "cannot run",
                          shlex.quote(command[0])))
        return (127 if missing else 126), ""
    finally:
        if hook_dir:
            shutil.rmtree(hook_dir, ignore_errors=True)
    if status != 0:
        code = status if status > 0 else 128 - status  # killed by a signal: 128 + N
        error("%s exited with status %d; nothing is published"
              % (shlex.quote(command[0]), code))
        return code, ""
    return 0, output


def run_streaming(command: Sequence[str], sink, secrets: Sequence[str] = (),
                  extra_env: Optional[dict] = None) -> Tuple[int, str]:
    """Run ``command`` and copy its merged stdout/stderr to ``sink`` (a binary stream) line by
    line as it arrives; return its exit status and the full output as text.

    The copy returned is what was written to ``sink`` except that ``secrets`` are masked
    in ``sink``. ``PYTHONUNBUFFERED`` makes TAO's Python print as it goes rather than in
    blocks. SIGTERM (pod deletion) is passed on to the command: as PID 1 of the container
    we would otherwise ignore it.
    """
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra_env or {})
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env)
    masks = [(s.encode("utf-8"), REDACTED.encode("ascii")) for s in secrets]
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    except ValueError:  # not the main thread: nothing to forward from
        pass
    chunks = []
    try:
        for line in iter(process.stdout.readline, b""):
            chunks.append(line)
            for secret, mask in masks:
                line = line.replace(secret, mask)
            sink.write(line)
            sink.flush()
        process.stdout.close()
        status = process.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status, b"".join(chunks).decode("utf-8", "replace")


# TAO prints its confusion matrix with numpy, which abbreviates arrays of more than 1000
# cells ("..."). This startup hook, on the front of PYTHONPATH of the command evaluate
# runs, makes every Python process of it print arrays whole. It then runs the
# sitecustomize it shadows (Ubuntu's python ships one), so nothing of the image is lost.
NUMPY_HOOK = '''"""Written by tao_step report for one TAO command: numpy prints whole arrays."""
import os
import sys


def _tao_step_numpy_whole():
    try:
        import numpy
        numpy.set_printoptions(threshold=sys.maxsize, linewidth=2 ** 31 - 1)
    except Exception:  # no numpy, or an unexpected one: TAO runs as it would without us
        pass


def _tao_step_next_sitecustomize():
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals().update((k, v) for k, v in vars(module).items() if not k.startswith("__"))


_tao_step_numpy_whole()
_tao_step_next_sitecustomize()
'''


def numpy_hook_env(folder: str) -> dict:
    """Write the hook into ``folder``; the environment that puts it first on PYTHONPATH,
    keeping the image's PYTHONPATH after it."""
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(NUMPY_HOOK)
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": folder + (os.pathsep + existing if existing else "")}


def keep_previous(paths: Sequence[str]) -> Optional[str]:
    """The re-run policy: TAO refuses to overwrite some outputs and silently overwrites
    others, so what an earlier run left at a step's output paths is renamed, on the same
    filesystem, to ``<path>.previous-<UTC time>`` before the step runs. Returns a problem."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for path in paths:
        path = path.rstrip("/")
        if not os.path.lexists(path):
            continue
        target, n = "%s.previous-%s" % (path, stamp), 1
        while os.path.lexists(target):
            n += 1
            target = "%s.previous-%s-%d" % (path, stamp, n)
        try:
            os.rename(path, target)
        except OSError as exc:
            return ("cannot move the earlier run's %s aside (%s): free it or point the "
                    "output parameter elsewhere" % (path, exc.strerror))
        say("kept the earlier run's %s as %s" % (path, target))
    return None


def status_json_size(path: Optional[str]) -> int:
    """Bytes already in a status.json before the command runs (TAO 5 appends to it)."""
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def recorded_failure(path: Optional[str], start: int) -> Optional[str]:
    """The message of the first FAILURE line the command appended to ``path`` (TAO 5's
    status.json: JSON lines with "status" and "message"), or None.

    Some TAO 5 scripts catch their own exit, record FAILURE and end with "Execution
    status: PASS" and status 0, so the exit status alone would call them a success.
    """
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        handle.seek(start if start <= os.path.getsize(path) else 0)
        lines = handle.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("status") == "FAILURE":
            return str(record.get("message") or "no message")
    return None


def claim_outputs(paths: Sequence[str]) -> Optional[str]:
    """Re-take the run's claim on what this step writes (a KFP Retry resumes a run whose
    first attempt released it); the refusal when another run holds any of it, else None."""
    from tao_step import claims
    workspace, run, uid = (os.environ.get(name, "") for name in claims.RUN_ENV)
    if not (workspace and run and uid):
        return None
    relative = [os.path.relpath(path.rstrip("/"), workspace) for path in paths]
    relative = [path for path in relative if not path.startswith("..")]
    if not relative:
        return None
    try:
        conflicts, damaged = claims.take(workspace, run, uid, relative)
    except claims.ClaimError as exc:
        return str(exc)
    for item in damaged:
        warn(item.describe())
    if not conflicts:
        return None
    mine, other, theirs = conflicts[0]
    return ("%s is being written by %s (its output %s); nothing was run or moved: wait for "
            "that run, or if it no longer exists release its claim: python3 -m tao_step "
            "release --workspace %s --run %s" % (mine, other.describe(), theirs, workspace,
                                                 other.workflow))


def ngc_model_folder(args) -> List[str]:
    if getattr(args, "ngc_model", None) and getattr(args, "ngc_dest", None):
        from tao_step.preflight import ngc_download_dir
        folder = ngc_download_dir(args.ngc_dest, args.ngc_model)
        return [folder] if folder else []
    return []


def ngc_org_env(args) -> dict:
    """With an NGC API key but no NGC_CLI_ORG, the NGC CLI authenticates against no org and
    cannot see a private model: use the model's own org (org/[team/]model:version)."""
    model = getattr(args, "ngc_model", None)
    if not model or not os.environ.get("NGC_CLI_API_KEY") or os.environ.get("NGC_CLI_ORG"):
        return {}
    return {"NGC_CLI_ORG": model.split("/", 1)[0]} if "/" in model else {}
