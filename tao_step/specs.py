"""Check TAO image-classification spec files before TAO reads them.

``python3 -m tao_step spec-check FILE [FILE...]`` prints one line per problem,
``FILE:LINE: field.path: what is wrong (how to fix)``, or ``FILE: OK``; it exits 0 when every
file is good, 1 when any has a problem and 2 on a usage error.

protobuf's own text-format parser reads a spec against the release's schema, declared as a
protobuf descriptor, and reports syntax errors, unknown fields and wrong value types with
their line (``tao_step.spec_text``). What a proto cannot say (required fields, allowed
strings, ranges, absolute paths) is checked afterwards (``tao_step.spec_rules``). Two
schemas, named by the TAO release (``tao_step.spec_schema``): "3.0" and TAO 5's "5.0";
``spec-check --tao-version 5.0`` picks the latter. This module checks whole files and is the
one import for all of it.

Runs inside the TAO 3.0 image (Python 3.6, protobuf 3.x) and on the host: standard library
and protobuf 3.6 to 3.20 APIs only.
"""

import os
import sys

from tao_step import profiles
from tao_step.spec_rules import (
    checkpoint_name,
    checkpoint_problems,
    image_size_error,
    last_checkpoint,
    parse_image_size,
    semantic_problems,
)
from tao_step.spec_schema import DEFAULT_SCHEMA, PATH_FIELDS, SCHEMAS, schema_of
from tao_step.spec_text import Problem, Spec, parse_spec_text, parse_with_repairs

__all__ = [
    "DEFAULT_SCHEMA", "PATH_FIELDS", "SCHEMAS", "Problem", "Spec", "check_spec_file",
    "check_spec_text", "checkpoint_name", "checkpoint_problems", "image_size_error",
    "last_checkpoint", "main", "parse_image_size", "parse_spec_text", "schema_of",
    "semantic_problems",
]


def check_spec_text(text, file="<spec>", schema=DEFAULT_SCHEMA):
    """``(spec_or_None, [Problem])`` for spec text; ``file`` names it in the problems;
    ``schema`` is the TAO release whose format applies ("3.0" or "5.0").

    After a syntax error the spec is None, yet the rest of the file is still checked where
    the error could be repaired or its lines dropped (problems of dropped fields are left
    out); where it could not, one more Problem says that the rest was not checked.
    """
    spec, repaired, problems, dropped = parse_with_repairs(text, file, schema_of(schema))
    if spec is not None:
        return spec, semantic_problems(spec)
    if repaired is None:
        return None, problems + [Problem(file, None, None, "the rest of the file could not be "
                                         "checked after the syntax error%s above; fix %s and "
                                         "check again" % ("s" if len(problems) > 1 else "",
                                                          "them" if len(problems) > 1
                                                          else "it"))]

    def dropped_field(problem):
        # What a dropped line held, or (a misspelt name) what its block then misses.
        return problem.field and any(
            problem.field == d or problem.field.startswith(d + ".")
            or (problem.message.startswith("missing")
                and problem.field.startswith(d.rpartition(".")[0] + "."))
            for d in dropped)

    later = [p for p in semantic_problems(repaired) if not dropped_field(p)]
    return None, sorted(problems + later, key=lambda problem: problem.line or 0)


def check_spec_file(path, name=None, schema=DEFAULT_SCHEMA):
    """Check one spec file: ``(spec_or_None, [Problem])``.

    The spec is None when the file cannot be read or parsed; otherwise it is returned even
    when it has semantic problems, so callers can still cross-check it. ``name`` is how the
    file is named in the problems (default: ``path``).
    """
    name = name or path
    if not os.path.exists(path):
        return None, [Problem(name, None, None, "no such file (check the path)")]
    if os.path.isdir(path):
        return None, [Problem(name, None, None, "is a folder, not a spec file")]
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [Problem(name, None, None,
                              f"is not UTF-8 text ({error.reason}); save it as UTF-8 text")]
    except OSError as error:
        return None, [Problem(name, None, None, f"cannot be read ({error.strerror})")]
    return check_spec_text(text, name, schema)


USAGE = "usage: python3 -m tao_step spec-check [--tao-version {%s}] FILE [FILE...]" % ",".join(
    SCHEMAS)


def main(argv):
    """``spec-check [--tao-version V] FILE...``: 0 if every file is good, 1 if any has
    problems, 2 on usage."""
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    argv = list(argv)
    schema = DEFAULT_SCHEMA
    error = None
    if argv[:1] == ["--tao-version"]:
        if len(argv) < 2 or argv[1] not in SCHEMAS:
            given = repr(argv[1]) if len(argv) > 1 else "nothing"
            error = f"--tao-version: {given} is not one of {', '.join(SCHEMAS)}"
        else:
            schema, argv = argv[1], argv[2:]
    options = [arg for arg in argv if arg.startswith("-")]
    if error is None and (not argv or options):
        error = f"unknown option {options[0]}" if options else "no file given"
    if error:
        sys.stderr.write(f"spec-check: {error}\n{USAGE}\n")
        return 2
    profile = profiles.get(schema)
    status = 0
    for path in argv:
        spec, problems = check_spec_file(path, schema=schema)
        if spec is not None:  # every check that needs no workspace; preflight does the rest
            problems = sorted(problems + checkpoint_problems(spec, profile),
                              key=lambda problem: problem.line or 0)
        for problem in problems:
            print(problem)
        if problems:
            status = 1
        else:
            print(f"{path}: OK")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
