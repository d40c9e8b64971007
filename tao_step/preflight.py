"""Preflight: check a run's Create Run values and its workspace before any TAO step runs.

``python3 -m tao_step preflight --workspace WS [--mount-dir DIR] [--run NAME --run-uid UID]
[--bash-read NAME,...] [--key-from-env] --param NAME=VALUE ...``

``--param`` is given once per Create Run parameter (every one the pipeline has, values as
typed in the form). ``--bash-read`` names those whose values reach a TAO command wrapper,
which re-reads them with bash (``tao_step.shell``); they may hold only characters bash
passes unchanged. The pipeline derives the list from its steps' command lines; without it,
every value is held to that rule. ``--mount-dir`` is the path the spec files' absolute
paths were written against; it defaults to the ``tao_mount_dir`` value (in the pipeline,
WS itself), and differs from it only in tests. A dry run mounts a local folder at
``tao_mount_dir`` and maps WS onto it, so the specs are read as they are.

Every problem is printed as one line naming the parameter or the spec file and line, with
what to change; warnings (outputs a step would replace or refuse to overwrite) follow,
prefixed ``warning:``. Exit status: 0 when there is no problem, 1 when there is, 2 on a
usage error. It only reads the workspace (listings and spec files), so it takes seconds.

With ``--run``/``--run-uid`` (the pipeline passes its workflow name and uid) and no problem,
it finally claims every path the run writes (``tao_step.claims``): a run whose outputs
overlap those of a run still holding its claim is refused, naming that run. In
``--key-secret`` builds the key is in ``$TAO_API_KEY`` and ``--key-from-env`` makes it the
api_key value (never an argument): it is checked like one, a value holding it is refused,
and the key is masked in everything printed.

The checks live in two modules: ``tao_step.values`` (the form values alone, pure, so the
host runs them at compile time on the defaults) and ``tao_step.workspace``
(``Preflight(...).run()`` looks at the workspace); this module is the command.
Runs inside the TAO 3.0 image (Python 3.6) and on the host: standard library and protobuf.
"""

import argparse
import os
import shlex
import sys

from tao_step import claims, profiles
from tao_step.form import KEY_ENV
from tao_step.values import (  # noqa: F401  (the checks, as this command's API)
    NGC_NAME,
    PARAMETERS,
    checkpoint_name,
    ngc_download_dir,
    ngc_model_file,
    output_paths,
    outputs_of,
    parameters_of,
    validate_values,
    value_error,
)
from tao_step.workspace import (  # noqa: F401
    IMAGE_EXTENSIONS,
    INFERENCE_EXTENSIONS,
    Preflight,
    listed,
)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def _parse_arguments(argv):
    parser = _Parser(prog="python3 -m tao_step preflight",
                     description="Check the Create Run values and the workspace of a run.")
    parser.add_argument("--workspace", required=True, help="the workspace folder as mounted")
    parser.add_argument("--mount-dir", help="the path the spec files were written against "
                                            "(default: the tao_mount_dir value)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="one Create Run value; give every parameter")
    parser.add_argument("--tao-version", choices=tuple(profiles.PROFILES),
                        default=profiles.DEFAULT_VERSION,
                        help="the TAO release the pipeline was built for (its form and specs)")
    parser.add_argument("--run", metavar="WORKFLOW_NAME",
                        help="with --run-uid: claim the run's output paths in the workspace "
                             "when every check passes (see tao_step.claims)")
    parser.add_argument("--run-uid", metavar="UID", help="the run's workflow uid")
    parser.add_argument("--bash-read", metavar="NAME[,NAME...]",
                        help="the parameters whose values reach a TAO command wrapper, which "
                             "re-reads them with bash (default: all)")
    parser.add_argument("--key-from-env", action="store_true",
                        help=f"api_key is the key in ${KEY_ENV} (a --key-secret build), not "
                             "a --param")
    arguments = parser.parse_args(argv)
    if bool(arguments.run) != bool(arguments.run_uid):
        raise _UsageError("--run and --run-uid go together")
    values = {}
    for item in arguments.param:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise _UsageError(f"--param {item}: write NAME=VALUE")
        if name in values:
            raise _UsageError(f"--param {name} given twice")
        values[name] = value
    if arguments.key_from_env and "api_key" in values:
        raise _UsageError("--param api_key does not go with --key-from-env")
    if arguments.bash_read is not None:
        arguments.bash_read = [name for name in arguments.bash_read.split(",") if name]
        known = parameters_of(profiles.get(arguments.tao_version))
        for name in arguments.bash_read:
            if name not in known:
                raise _UsageError(f"--bash-read {name}: not a parameter of this pipeline")
    return arguments, values


def key_problems(values, key):
    """With --key-secret, Kubernetes puts the key into every ``$(TAO_API_KEY)``, so a form
    value holding it would carry it into logs and file names: refused, never quoted."""
    if not key:
        return []
    return [f"{name}: the value contains the TAO key from the Secret (Kubernetes expanded "
            f"$({KEY_ENV}) into it); remove it from {name}"
            for name in sorted(values) if name != "api_key" and key in values[name]]


def _claim(arguments, values, profile):
    """Claim the run's outputs: ``(problems, warnings)``, the problems naming the runs that
    hold any of them, the warnings the damaged files among the claims."""
    workspace = arguments.workspace
    outputs = output_paths(values, profile)
    try:
        conflicts, damaged = claims.take(workspace, arguments.run, arguments.run_uid,
                                         sorted(set(path for _, _, path in outputs)))
    except claims.ClaimError as error:
        return [f"--workspace {workspace}: {error}"], []
    problems = []
    for name, _, path in outputs:
        for mine, other, theirs in conflicts:
            if mine == path:
                real = claims.resolve(workspace, path)
                linked = f" ({real} once its symbolic links are followed)" if (
                    real != path) else ""
                problems.append(
                    f"{name}: {path}{linked} is being written by {other.describe()}, whose "
                    f"output {theirs} overlaps it; wait until that run ends, or give this run "
                    f"other output paths. If that run no longer exists (terminated or "
                    f"deleted), release its claim: python3 -m tao_step release --workspace "
                    f"{shlex.quote(workspace)} --run {other.workflow}")
                break
    return problems, [item.describe() for item in damaged]


def main(argv):
    """``preflight --workspace WS [--mount-dir DIR] [--run NAME --run-uid UID]
    [--bash-read NAMES] [--key-from-env] --param NAME=VALUE...``."""
    try:
        arguments, values = _parse_arguments(argv)
    except _UsageError as error:
        sys.stderr.write(f"preflight: {error}\nusage: python3 -m tao_step preflight "
                         "--workspace WS [--mount-dir DIR] [--run NAME --run-uid UID] "
                         "--param NAME=VALUE ...\n")
        return 2
    profile = profiles.get(arguments.tao_version)
    key = os.environ.get(KEY_ENV, "")
    if arguments.key_from_env:
        # The key Secret's value, from the environment: never an argument, which any
        # process on the node could read.
        values["api_key"] = key
    problems = key_problems(values, key) + validate_values(values, profile, arguments.bash_read)
    if arguments.key_from_env and not key and "api_key" not in profile.optional_parameters:
        problems = [problem for problem in problems if not problem.startswith("api_key: ")]
        problems.append(f"api_key: the key Secret is empty (${KEY_ENV} has no value); put "
                        "the TAO model key into the Secret named when compiling (--key-secret)")
    check = Preflight(arguments.workspace, values, arguments.mount_dir, profile,
                      arguments.bash_read).run()
    problems += check.problems
    warnings = list(check.warnings)
    if not problems and arguments.run:
        problems, damaged = _claim(arguments, values, profile)
        warnings += damaged
    lines = problems + ["warning: " + line for line in warnings]
    warned = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    if problems:
        lines.append(f"preflight: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
                     f"{warned}; fix them and start the run again")
    else:
        classes = (f", {len(check.classes)} classes ({listed(check.classes)})"
                   if check.classes else "")
        claimed = f"; outputs claimed for run {arguments.run}" if arguments.run else ""
        lines.append(f"preflight OK: {len(values)} values, "
                     f"{len(list(check.distinct_specs()))} spec files{classes}{warned}"
                     f"{claimed}")
    for line in lines:
        print(line.replace(key, "***") if key else line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
