"""Claims: which run is writing where in a shared workspace.

Several runs may use one workspace (Start clicked twice, a colleague's run, a recurring
run). Every step moves what an earlier run left at its outputs aside before it writes
(``report --keep-previous``), so two runs writing to the same place would move each other's
results away mid-write. The preflight step therefore *claims* every path the run will
write, before any GPU step, and refuses the run when another run holds an equal or nested
path; the pipeline's exit handler releases the claim however the run ends.

A claim is one JSON file per run, ``<workspace>/.tao-run-claims/<workflow uid>.json``:
``{"workflow": name, "uid": uid, "started": UTC time, "host": pod name, "paths": [...]}``,
paths relative to the workspace *as the file system reaches them*: every symbolic link in
a path is followed first, so ``b/output`` with ``b -> .`` is claimed, and conflicts, as
``output``; a path that a link leads out of the workspace is refused (a step's container
sees nothing but the workspace volume there). Taking one is atomic: under an exclusive
POSIX lock on ``.tao-run-claims/.lock`` (``fcntl.lockf``, which the kernel drops when a
holder dies, on local file systems and on NFS alike) the other claims are read, and ours is
written with a rename only when none overlaps, so of two runs started in the same second
exactly one proceeds. A run's claim is all or nothing: one file.

Every step that writes re-takes the claim on its own outputs before moving anything
(``report`` reads the run from ``TAO_RUN_WORKSPACE``, ``TAO_RUN_NAME`` and ``TAO_RUN_UID``,
which the pipeline sets), so a run resumed by KFP's Retry, whose first attempt's exit
handler released everything, is covered again from its first writing step.

A file among the claims that is not a readable claim (cut short, a folder, a FIFO, not
JSON) names no paths, so it blocks no run: it is reported, with the command removing it,
and the run it belonged to is covered again when its next writing step re-takes the claim
under the same file name. A FIFO or device is never opened, so reading never waits.

A claim left by a run that no longer exists (terminated from the KFP UI, whose Terminate
does not reliably let the exit handler finish, or a deleted run) is only ever removed on
request::

    python3 -m tao_step release --workspace WS --run WORKFLOW_NAME

which fails, listing the claims there are, when that run holds none. The exit handler adds
``--run-uid UID``: a run refused by preflight holds nothing, which is then no error.

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
import shlex
import socket
import stat
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
# A claim is some 60 bytes a path; a file far larger is not one, and is not read.
MAX_CLAIM_BYTES = 1 << 20


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


class Damaged(object):
    """A file among the claims that is not a readable claim: it names no paths."""

    def __init__(self, file, reason, folder=False):
        self.file = file
        self.reason = reason
        self.folder = folder
        self.uid = os.path.basename(file)[:-len(SUFFIX)]

    def describe(self):
        return ("claim file %s is damaged (%s), so it blocks no run, and the run of uid %s "
                "that wrote it is not protected until its next step re-takes its claim; "
                "remove it: %s" % (self.file, self.reason, self.uid, _removal(self.file,
                                                                              self.folder)))


def folder_of(workspace):
    return os.path.join(workspace, FOLDER)


def overlaps(first, second):
    """Whether two workspace-relative paths are the same or one lies inside the other."""
    first, second = posixpath.normpath(first), posixpath.normpath(second)
    return (first == second or "." in (first, second) or first.startswith(second + "/")
            or second.startswith(first + "/"))


def resolve(workspace, path):
    """Workspace-relative ``path`` as the file system reaches it: relative to the
    workspace with every symbolic link followed, or None when a link leads out of it."""
    root = os.path.realpath(workspace)
    real = os.path.realpath(os.path.join(root, path))
    if real == root:
        return "."
    if not real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return os.path.relpath(real, root).replace(os.sep, "/")


def _removal(path, folder=False):
    return "%s %s" % ("rm -r" if folder else "rm", shlex.quote(path))


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device")):
        if test(mode):
            return name
    return "file"


def _cannot(what, error, folder):
    """One line: what could not be done in the claims ``folder``, and the fix."""
    if error.errno == errno.EROFS:
        fix = ("the workspace is mounted read-only: mount it read-write (the steps write "
               "their outputs there too)")
    elif error.errno in (errno.EACCES, errno.EPERM):
        fix = ("every run records its claim in %s, so the steps (root in the TAO image, "
               "nobody on an NFS export with root_squash) must be able to write there: "
               "chmod a+rwx %s, or export the share with no_root_squash"
               % (folder, shlex.quote(folder)))
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on the workspace"
    else:
        fix = "every run records its claim in %s, so it must be a writable folder" % folder
    return "cannot %s (%s): %s" % (what, error.strerror or error, fix)


def folder_problem(folder):
    """Why ``folder``, present, cannot hold claims (a file, a dangling link), or None."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as error:
        return _cannot("look at the claims folder %s" % folder, error, folder)
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(folder)
        if not os.path.exists(folder):
            return ("the claims folder %s is a symbolic link to %s, which does not exist: "
                    "create that folder, or remove the link (%s) and start the run again"
                    % (folder, target, _removal(folder)))
        if not os.path.isdir(folder):
            return ("the claims folder %s is a symbolic link to %s, which is not a folder: "
                    "remove the link (%s) and start the run again"
                    % (folder, target, _removal(folder)))
        return None
    if not stat.S_ISDIR(info.st_mode):
        return ("the claims folder %s is a %s, not a folder: runs record their claims in a "
                "folder of that name, so move it away (mv %s %s) and start the run again"
                % (folder, _kind(info.st_mode), shlex.quote(folder),
                   shlex.quote(folder + ".moved")))
    return None


def _open_lock(folder):
    problem = folder_problem(folder)
    if problem:
        raise ClaimError(problem)
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except OSError as error:
        raise ClaimError(_cannot("create the claims folder %s" % folder, error,
                                 folder)) from None
    path = os.path.join(folder, LOCK)
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise ClaimError("%s is a %s, not the claims' lock file: remove it (%s) and start the "
                         "run again" % (path, _kind(info.st_mode),
                                        _removal(path, stat.S_ISDIR(info.st_mode))))
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as error:
        raise ClaimError(_cannot("open the lock file %s" % path, error, folder)) from None


@contextmanager
def _locked(folder, timeout=LOCK_TIMEOUT):
    handle = _open_lock(folder)
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


def _read_bytes(path):
    # No O_NONBLOCK needed for a regular file, but it keeps a FIFO swapped in after the
    # lstat from blocking the open while the lock is held.
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks, size = [], 0
        while size <= MAX_CLAIM_BYTES:
            chunk = os.read(handle, MAX_CLAIM_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(handle)


def _read_claim(path):
    """The Claim in file ``path``, a Damaged saying why there is none, or None if the file
    has gone. Never waits: only a regular file is opened."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return Damaged(path, "cannot be looked at: %s" % error.strerror)
    if not stat.S_ISREG(info.st_mode):
        return Damaged(path, "a %s, not a file" % _kind(info.st_mode),
                       stat.S_ISDIR(info.st_mode))
    try:
        data = _read_bytes(path)
    except OSError as error:
        return Damaged(path, "unreadable: %s" % error.strerror)
    if len(data) > MAX_CLAIM_BYTES:
        return Damaged(path, "over %d bytes, far more than a claim" % MAX_CLAIM_BYTES)
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return Damaged(path, "not UTF-8 text")
    except ValueError as error:
        return Damaged(path, "not complete JSON: %s" % error)
    fields = ("workflow", "uid", "started")
    if (not isinstance(record, dict)
            or not all(isinstance(record.get(name), str) for name in fields)
            or not isinstance(record.get("paths"), list)
            or not all(isinstance(item, str) for item in record["paths"])):
        return Damaged(path, "JSON, but not a claim: it needs workflow, uid and started "
                             "texts and a list of paths")
    return Claim(path, record["workflow"], record["uid"], record["started"],
                 str(record.get("host", "")), record["paths"])


def read_claims(folder):
    """``(claims, damaged)``: the claims in ``folder``, and the files there that are not."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return [], []
    except OSError as error:
        raise ClaimError(_cannot("read the claims folder %s" % folder, error,
                                 folder)) from None
    found, damaged = [], []
    for name in names:
        if name.endswith(SUFFIX):
            claim = _read_claim(os.path.join(folder, name))
            if claim is not None:
                (found if isinstance(claim, Claim) else damaged).append(claim)
    return found, damaged


def _write(folder, uid, record):
    final = os.path.join(folder, uid + SUFFIX)
    if os.path.isdir(final) and not os.path.islink(final):
        raise ClaimError("%s is a folder where this run's claim file belongs: remove it (%s) "
                         "and start the run again" % (final, _removal(final, True)))
    temporary = "%s.tmp-%d" % (final, os.getpid())
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                         0o666)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temporary, final)
    except OSError as error:
        try:
            os.remove(temporary)
        except OSError:
            pass  # never created
        raise ClaimError(_cannot("write the claim file %s" % final, error, folder)) from None


def take(workspace, workflow, uid, paths, now=None):
    """Claim ``paths`` (workspace-relative) for run ``workflow``/``uid``, all or nothing.

    Returns ``(conflicts, damaged)``: the conflicts as ``(my path, other claim, its path)``,
    none meaning the claim is ours, and the damaged files among the claims. Taking it again
    with the same uid (a retried preflight pod, or a step re-taking the claim after a KFP
    Retry) adds to it and keeps its start time."""
    if not UID.match(uid):
        raise ClaimError("--run-uid %r is not a workflow uid" % uid)
    real = {}
    for path in set(paths):
        real[path] = resolve(workspace, path)
        if real[path] is None:
            raise ClaimError("%s leads out of the workspace through a symbolic link (to %s): "
                             "a step's container sees only the workspace volume; replace "
                             "the link by a folder"
                             % (path, os.path.realpath(os.path.join(workspace, path))))
    folder = folder_of(workspace)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    with _locked(folder):
        found, damaged = read_claims(folder)
        own = [c for c in found if c.uid == uid]
        others = [c for c in found if c.uid != uid]
        conflicts = [(mine, other, theirs) for mine in sorted(real) for other in others
                     for theirs in other.paths if overlaps(real[mine], theirs)]
        if not conflicts:
            _write(folder, uid, {
                "workflow": workflow, "uid": uid,
                "started": own[0].started if own else started,
                "host": socket.gethostname(),
                "paths": sorted(set(real.values()).union(*(c.paths for c in own)))})
    return conflicts, [d for d in damaged if conflicts or d.uid != uid]


def release(workspace, workflow, uid=None):
    """Remove the claim of run ``workflow`` (and ``uid``, when given).

    Returns ``(removed, claims, damaged)``: the Claim removed (or, given ``uid``, the
    Damaged file of that uid) or None, the claims left, and the damaged files left."""
    folder = folder_of(workspace)
    if not os.path.isdir(folder):
        return None, [], []
    with _locked(folder):
        found, damaged = read_claims(folder)
        removed = [c for c in found if c.workflow == workflow and uid in (None, c.uid)]
        removed = removed[:1] or [d for d in damaged if d.uid == uid and not d.folder]
        for item in removed:
            try:
                os.remove(item.file)
            except OSError as error:
                raise ClaimError(_cannot("remove the claim file %s" % item.file, error,
                                         folder)) from None
    return ((removed[0] if removed else None), [c for c in found if c not in removed],
            [d for d in damaged if d not in removed])


def listing(claims):
    """The claims there are, in one sentence."""
    if not claims:
        return "no run holds a claim there"
    return "the claims there: " + "; ".join(c.describe() for c in claims)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "release: %s\nusage: python3 -m tao_step release --workspace WS --run "
                     "WORKFLOW_NAME [--run-uid UID]\n" % message)


def main(argv):
    """``release --workspace WS --run NAME [--run-uid UID]``: drop that run's claim."""
    parser = _Parser(prog="python3 -m tao_step release",
                     description="Release the output paths a run claimed in the workspace: "
                                 "the pipeline's exit handler does it when a run ends; do it "
                                 "by hand only for a run that no longer exists. Exits 1 when "
                                 "that run holds no claim, listing the claims there are.")
    parser.add_argument("--workspace", required=True, help="the workspace folder")
    parser.add_argument("--run", required=True, metavar="WORKFLOW_NAME",
                        help="the run's workflow name, as preflight's refusal names it")
    parser.add_argument("--run-uid", metavar="UID",
                        help="release only the claim of this uid; how the exit handler "
                             "calls it, so a run that holds nothing (refused by preflight) "
                             "is no error")
    arguments = parser.parse_args(argv)
    return release_and_say(arguments.workspace, arguments.run, arguments.run_uid)


def release_and_say(workspace, run, uid=None):
    """``release``, saying on stdout what was released; the exit status (1: a name or
    workspace given by hand that holds no claim)."""
    def say(line):
        print(line, flush=True)  # before whatever the caller prints next

    if not os.path.isdir(workspace):
        if uid:  # the exit handler's form: a run with no workspace holds nothing
            say("release: run %s (uid %s) holds no claim: there is no folder %s"
                % (run, uid, workspace))
            return 0
        say("release: --workspace %s: no such folder; give the workspace folder the "
            "refusal names" % workspace)
        return 1
    folder = folder_of(workspace)
    try:
        removed, claims, damaged = release(workspace, run, uid)
    except ClaimError as error:
        say("release: " + str(error))
        return 1
    for item in damaged:
        say("release: warning: " + item.describe())
    if isinstance(removed, Claim):
        say("release: released the claim of %s on %d paths: %s"
              % (removed.describe(), len(removed.paths), ", ".join(removed.paths)))
        return 0
    if removed is not None:
        say("release: removed this run's damaged claim file %s (%s)"
              % (removed.file, removed.reason))
        return 0
    if uid:
        say("release: run %s (uid %s) holds no claim in %s"
              % (run, uid, workspace))
        return 0
    if not os.path.isdir(folder):
        why = folder_problem(folder) or "there is no %s folder" % FOLDER
        say("release: %s holds no claims (%s); is it the workspace the refusal names?"
              % (workspace, why))
        return 1
    say("release: run %s holds no claim in %s; %s" % (run, workspace,
                                                        listing(claims)))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
