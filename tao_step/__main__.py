"""``python3 -m tao_step [--require-runtime N] COMMAND ARGS...``: the in-container entry point."""

import importlib
import sys

from tao_step import RUNTIME_VERSION

# command name -> (module whose ``main(argv) -> int`` implements it, what it does)
COMMANDS = {
    "preflight": ("tao_step.preflight",
                  "check the Create Run values and the workspace, then claim the run's outputs"),
    "report": ("tao_step.report",
               "run a TAO command and publish what it produced to the Kubeflow UI"),
    "spec-check": ("tao_step.specs", "check TAO classification spec files"),
    "release": ("tao_step.claims",
                "release the claim a run holds on the workspace (the exit handler does it)"),
    "summary": ("tao_step.summary",
                "report the whole run and release its claim (the exit handler does it)"),
}

USAGE = "usage: python3 -m tao_step [--require-runtime N] {%s} ..." % ",".join(sorted(COMMANDS))


def help_text():
    lines = [USAGE, "", "The pipeline steps' in-container code. Commands (each has --help):"]
    lines += ["  %-11s %s" % (name, summary) for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv):
    argv = list(argv)
    if argv[:1] == ["--require-runtime"]:
        if len(argv) < 2 or not argv[1].isdigit():
            sys.stderr.write("tao_step: --require-runtime needs a whole number\n" + USAGE + "\n")
            return 2
        required = int(argv[1])
        argv = argv[2:]
        if RUNTIME_VERSION < required:
            sys.stderr.write(
                "tao_step: this image carries tao_step runtime %d but the pipeline needs %d: "
                "rebuild and push the image with docker/build.sh, or compile the pipeline "
                "with --image pointing at a current build\n" % (RUNTIME_VERSION, required)
            )
            return 2
    if argv[:1] in (["--help"], ["-h"]):
        sys.stdout.write(help_text())
        return 0
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(USAGE + "\n")
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
