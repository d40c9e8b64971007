"""Each step's results, kept on the workspace for the run's summary.

The summary is the pipeline's exit handler (Argo's ``onExit``), so it runs however the run
ends; but an exit handler cannot read the steps' output parameters, only what Argo gives
every exit handler (``workflow.status``, ``workflow.failures``) and the workspace. So every
``tao_step report`` step also writes what it found, as one small JSON file per step in a
folder of its run:

    <workspace>/.tao-run-claims/results/<workflow uid>/<step name>.json

with ``kind``, ``label``, ``step``, ``status`` (what the report exited with), ``wrote``
(the paths the step wrote, as given) and ``finished`` (UTC), plus what the kind found
(see ``report.py``). A step removes its own file first, so a step that fails now never
leaves the result of an earlier attempt behind. The folder is kept after the run: KFP's
Retry resumes a run with the same uid, and its summary needs the results of the steps
that are not run again. The files are a few kB; delete the folders of old runs at will.

The run comes from ``TAO_RUN_WORKSPACE`` and ``TAO_RUN_UID`` (``claims.RUN_ENV``), the
step's name from ``TAO_RUN_STEP``; the pipeline sets all of them on every step. Without
them nothing is kept (a step run by hand).

Python 3.6, standard library only.
"""

import json
import os
import re
import time
from typing import List, Optional, Tuple

from tao_step import claims

STEP_ENV = "TAO_RUN_STEP"
FOLDER = "results"
SUFFIX = ".json"
# A step name as the file is named after it (kfp step names are DNS-label-like).
STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The format of a result file; a summary reading another one says so.
FORMAT = 1


def run_folder(workspace: str, uid: str) -> str:
    return os.path.join(claims.folder_of(workspace), FOLDER, uid)


def own_file() -> Optional[str]:
    """This step's result file, from the environment the pipeline sets; None without it."""
    workspace, _, uid = (os.environ.get(name, "") for name in claims.RUN_ENV)
    step = os.environ.get(STEP_ENV, "")
    if not (workspace and claims.UID.match(uid) and STEP_NAME.match(step)):
        return None
    return os.path.join(run_folder(workspace, uid), step + SUFFIX)


def forget() -> Optional[str]:
    """Remove what an earlier attempt of this step kept; the problem, or None."""
    path = own_file()
    if path is None or not os.path.lexists(path):
        return None
    try:
        os.remove(path)
    except OSError as error:
        return "cannot remove the earlier result %s (%s)" % (path, error.strerror)
    return None


def keep(result: dict) -> Optional[str]:
    """Write this step's result (atomically); the problem, or None. Nothing without the
    pipeline's environment."""
    path = own_file()
    if path is None:
        return None
    record = dict(result, format=FORMAT, step=os.environ[STEP_ENV],
                  finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    temporary = "%s.tmp-%d" % (path, os.getpid())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(record, handle, allow_nan=False, indent=1)
        os.rename(temporary, path)
    except (OSError, ValueError) as error:
        return "cannot keep this step's result for the summary in %s (%s)" % (
            path, getattr(error, "strerror", None) or error)
    return None


def read_run(workspace: str, uid: str) -> Tuple[List[dict], List[str]]:
    """Every step result of run ``uid`` (oldest first) and a line per file that could not
    be read."""
    folder = run_folder(workspace, uid)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return [], []
    except OSError as error:
        return [], ["the results folder %s cannot be read (%s)" % (folder, error.strerror)]
    found, problems = [], []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError) as error:
            problems.append("%s cannot be read (%s)" % (path, error))
            continue
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            problems.append("%s is not a result this version of tao_step writes" % path)
            continue
        found.append(record)
    found.sort(key=lambda r: (str(r.get("finished", "")), str(r.get("step", ""))))
    return found, problems
