"""TAO's command wrapper re-reading a subtask's arguments with bash, as the fakes do it too.

What the wrapper does (tao_tensorflow1_backend@d73dcfc,
``nvidia_tao_tf1/cv/common/entrypoint/entrypoint.py``: ``launch_job``,
``format_command_line_args``; tao_deploy@a285787 ``entrypoint_proto.py`` alike; TAO 3.0's
closed wrapper is their ancestor):

1. parse argv with argparse (the wrapper's options and the subtask's);
2. write every parsed option except the wrapper's own as ``--<name> <value> `` into one
   string, unquoted: None and "" are left out, a true flag is ``--<name>``, a list is its
   items joined by spaces;
3. ``shlex.split`` of ``bash -c '<env> python <script> <that string>'`` (a ``'`` in a value
   ends the quoting: "No closing quotation" crashes the wrapper, or the line is cut
   apart), and run it: bash reads every value as shell text.

The fake does 1 and 2 as written there and hands the string to the real bash in step 3, with
a shell function standing in for ``python <script>``: it writes the arguments bash gave it
to a file the fake reads back, and the subtask's parser reads them, as the script's would.
So a value bash splits, expands, rewrites or runs a command from does here what it would do
in TAO's pod (commands run in the step's working folder). Two differences: the subtask runs
after bash returns rather than inside it, so commands a value injects run before it; and
when bash fails (a syntax error, an injected command that fails) the subtask does not run
and the step fails, while TAO would have run the script first.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile

# The wrapper's own options, which it does not pass on (entrypoint.py lists gpus,
# gpu_index, log_file, use_amp, multi_node, mpirun_arg, num_processes,
# launch_cuda_blocking); the fake's parsers also keep the chosen subtask.
WRAPPER_OPTIONS = ("gpus", "gpu_index", "log_file", "use_amp", "num_processes", "subtask")
# The environment the TF1 wrapper puts before the script on a single-GPU node.
ENV = "TF_ENABLE_AUTO_MIXED_PRECISION=0 CUDA_VISIBLE_DEVICES=0"
# Stands in for "python <script>": a function bash takes from its environment.
SCRIPT = "tao_script"


def _script_function(fd: int) -> str:
    """SCRIPT's body: write its name and each argument, each followed by a NUL, to ``fd``,
    wherever a value redirected its output."""
    return "() { printf '%s\\0' " + SCRIPT + f' "$@" >&{fd}; }}'


class Crash(Exception):
    """The wrapper itself fails (a traceback, no Execution status line)."""


class ScriptFailed(Exception):
    """The subtask's script would fail on what bash made of its arguments."""


def _flag(action: argparse.Action) -> str:
    """How the wrapper writes an option: ``--<dest>``. TAO's options are named after their
    long form; the fake names some values differently, so it writes that long form."""
    long = [option for option in action.option_strings if option.startswith("--")]
    return (long or action.option_strings)[0]


def options_text(parsed: dict, parser: argparse.ArgumentParser) -> str:
    """``format_command_line_args``: the parsed options as the wrapper joins them."""
    flags = {action.dest: _flag(action) for action in parser._actions  # no public list
             if action.option_strings}
    text = ""
    for dest, value in parsed.items():
        if dest in WRAPPER_OPTIONS or value in [None, ""]:
            continue
        flag = flags.get(dest, "--" + dest)
        if isinstance(value, bool):
            if value:
                text += f"{flag} "
        elif isinstance(value, list):
            text += f"{flag} {' '.join(value)} "
        else:
            text += f"{flag} {value} "
    return text


def through_bash(text: str) -> tuple[list[str] | None, int]:
    """What the script would receive from ``bash -c '<env> python <script> TEXT'``, and
    bash's exit status. None when bash ran no script (a syntax error); Crash when the
    wrapper's ``shlex.split`` fails."""
    with tempfile.TemporaryFile() as received:
        line = f"bash -c '{ENV} {SCRIPT} {text}'"
        try:
            words = shlex.split(line)
        except ValueError as error:
            raise Crash(f"ValueError: {error}") from None
        env = {**os.environ, f"BASH_FUNC_{SCRIPT}%%": _script_function(received.fileno())}
        status = subprocess.run(words, pass_fds=(received.fileno(),), env=env,
                                check=False).returncode
        received.seek(0)
        printed = received.read().decode("utf-8", "surrogateescape").split("\0")[:-1]
    if not printed or printed[0] != SCRIPT:
        return None, status
    return printed[1:], status


def reread(arguments: argparse.Namespace,
           subtask_parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The subtask's arguments as its script would parse them after the wrapper's round
    through bash, keeping the wrapper's own options. Crash as the wrapper crashes;
    ScriptFailed when bash fails or the script's parser refuses what bash gave it."""
    received, status = through_bash(options_text(vars(arguments), subtask_parser))
    if received is None or status != 0:
        raise ScriptFailed(f"bash exited with status {status} running the subtask's command "
                           "line (a value held shell syntax)")
    try:
        reparsed = subtask_parser.parse_args(received)
    except SystemExit:  # argparse has printed its usage error
        raise ScriptFailed("the subtask's arguments, as bash re-read them, do not parse: "
                           f"{received}") from None
    for name in WRAPPER_OPTIONS:
        if hasattr(arguments, name):
            setattr(reparsed, name, getattr(arguments, name))
    return reparsed
