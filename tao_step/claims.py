"""Claims: which run is writing where in a shared workspace.

Several runs may use one workspace (Start clicked twice, a colleague's run, a recurring
run). Every step moves what an earlier run left at its outputs aside before it writes
(``report --keep-previous``), so two runs writing to the same place would move each other's
results away mid-write. The preflight step therefore *claims* every path the run will
write, before any GPU step, and refuses the run when another run holds an equal or nested
path; the pipeline's exit handler releases the claim however the run ends.

A claim is one JSON file per run, ``<workspace>/.tao-run-claims/<workflow uid>.json``:
``{"workflow": name, "uid": uid, "started": UTC time, "host": pod name, "paths": [...]}``,
paths relative to the workspace. Taking one is atomic: under an exclusive POSIX lock on
``.tao-run-claims/.lock`` (``fcntl.lockf``, which the kernel drops when a holder dies, on
local file systems and on NFS alike) the other claims are read, and ours is written with a
rename only when none overlaps, so of two runs started in the same second exactly one
proceeds. A run's claim is all or nothing: one file.

Every step that writes re-takes the claim on its own outputs before moving anything
(``report`` reads the run from ``TAO_RUN_WORKSPACE``, ``TAO_RUN_NAME`` and ``TAO_RUN_UID``,
which the pipeline sets), so a run resumed by KFP's Retry, whose first attempt's exit
handler released everything, is covered again from its first writing step.

A claim left by a run that no longer exists (terminated from the KFP UI, whose Terminate
does not reliably let the exit handler finish, or a deleted run) is only ever removed on
request::

    python3 -m tao_step release --workspace WS --run WORKFLOW_NAME [--run-uid UID]

(The exit handler, ``python3 -m tao_step summary``, releases with ``release_and_say``.)

Runs inside the TAO 3.0 image (Python 3.6) and on the host: standard library only.
"""

import argparse
import errno
import fcntl
import json
import os
import posixpath
import re
import socket
import sys
import time
from contextlib import contextmanager

FOLDER = ".tao-run-claims"
# Where the pipeline tells every step its run's workspace, workflow name and uid.
RUN_ENV = ("TAO_RUN_WORKSPACE", "TAO_RUN_NAME", "TAO_RUN_UID")
LOCK = ".lock"
SUFFIX = ".json"
# Argo's workflow uid is a Kubernetes UID (a UUID); the claim file is named after it.
UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# How long to wait for another run that is taking or releasing a claim (milliseconds' work).
LOCK_TIMEOUT = 60.0


class ClaimError(Exception):
    """The claims folder cannot be used; the message says why and what to do."""


class Claim(object):
    """One run's claim, as read from its file."""

    def __init__(self, file, workflow, uid, started, host, paths):
        self.file = file
        self.workflow = workflow
        self.uid = uid
        self.started = started
        self.host = host
        self.paths = paths

    def describe(self):
        return "run %s (started %s, claim file %s)" % (self.workflow, self.started, self.file)


def folder_of(workspace):
    return os.path.join(workspace, FOLDER)


def overlaps(first, second):
    """Whether two workspace-relative paths are the same or one lies inside the other."""
    first, second = posixpath.normpath(first), posixpath.normpath(second)
    return (first == second or first.startswith(second + "/")
            or second.startswith(first + "/"))


@contextmanager
def _locked(folder, timeout=LOCK_TIMEOUT):
    try:
        os.makedirs(folder, exist_ok=True)
        handle = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise ClaimError("cannot create %s (%s): the workspace must be writable"
                         % (folder, error.strerror)) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EAGAIN):
                    raise ClaimError(
                        "cannot lock %s (%s): the workspace's file system must support "
                        "POSIX file locks (local disks and NFS do)"
                        % (os.path.join(folder, LOCK), error.strerror)) from None
                if time.monotonic() > deadline:
                    raise ClaimError("%s stayed locked for %d s: another run is stuck taking "
                                     "its claim; start this run again"
                                     % (os.path.join(folder, LOCK), timeout)) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(handle)  # closing drops the lock


def read_claims(folder):
    """Every claim in ``folder``; an unreadable claim file is reported, never ignored."""
    claims = []
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return claims
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            claims.append(Claim(path, str(data["workflow"]), str(data["uid"]),
                                str(data["started"]), str(data.get("host", "")),
                                [str(p) for p in data["paths"]]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClaimError("claim file %s cannot be read (%s): look at it and delete it if "
                             "no run is using this workspace" % (path, error)) from None
    return claims


def take(workspace, workflow, uid, paths, now=None):
    """Claim ``paths`` (workspace-relative) for run ``workflow``/``uid``, all or nothing.

    Returns the conflicts as ``(my path, other claim, its path)``; an empty list means the
    claim is ours. Taking it again with the same uid (a retried preflight pod, or a step
    re-taking the claim after a KFP Retry) adds to it and keeps its start time."""
    if not UID.match(uid):
        raise ClaimError("--run-uid %r is not a workflow uid" % uid)
    folder = folder_of(workspace)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    with _locked(folder):
        found = read_claims(folder)
        own = [c for c in found if c.uid == uid]
        others = [c for c in found if c.uid != uid]
        record = {"workflow": workflow, "uid": uid,
                  "started": own[0].started if own else started,
                  "host": socket.gethostname(),
                  "paths": sorted(set(paths).union(*(c.paths for c in own)))}
        conflicts = [(mine, other, theirs) for mine in sorted(set(paths)) for other in others
                     for theirs in other.paths if overlaps(mine, theirs)]
        if conflicts:
            return conflicts
        final = os.path.join(folder, uid + SUFFIX)
        temporary = "%s.tmp-%d" % (final, os.getpid())
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
    return []


def release(workspace, workflow, uid=None):
    """Remove the claim of run ``workflow`` (and ``uid``, when given); returns it or None."""
    folder = folder_of(workspace)
    if not os.path.isdir(folder):
        return None
    with _locked(folder):
        for claim in read_claims(folder):
            if claim.workflow == workflow and (uid is None or claim.uid == uid):
                os.remove(claim.file)
                return claim
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "release: %s\nusage: python3 -m tao_step release --workspace WS --run "
                     "WORKFLOW_NAME [--run-uid UID]\n" % message)


def main(argv):
    """``release --workspace WS --run NAME [--run-uid UID]``: drop that run's claim."""
    parser = _Parser(prog="python3 -m tao_step release",
                     description="Release the output paths a run claimed in the workspace: "
                                 "the pipeline's exit handler does it when a run ends; do it "
                                 "by hand only for a run that no longer exists.")
    parser.add_argument("--workspace", required=True, help="the workspace folder")
    parser.add_argument("--run", required=True, metavar="WORKFLOW_NAME",
                        help="the run's workflow name, as preflight's refusal names it")
    parser.add_argument("--run-uid", metavar="UID", help="release only the claim of this uid")
    arguments = parser.parse_args(argv)
    return release_and_say(arguments.workspace, arguments.run, arguments.run_uid)


def release_and_say(workspace, workflow, uid=None):
    """``release``, saying on stdout what was released; the exit status (1: not released)."""
    try:
        claim = release(workspace, workflow, uid)
    except ClaimError as error:
        print("release: " + str(error), flush=True)
        return 1
    if claim is None:
        print("release: run %s holds no claim in %s" % (workflow, workspace), flush=True)
    else:
        print("release: released the claim of %s on %d paths: %s"
              % (claim.describe(), len(claim.paths), ", ".join(claim.paths)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
