"""The interpreter the tests run the in-container code (``python3 -m tao_step``) on.

``tao_step`` runs on the TAO 3.0 image's Python 3.6 with protobuf 3.19. Set
``TAO_STEP_PYTHON`` to such an interpreter (``.ci/run`` builds one in ``.venv36`` from
``requirements-py36.txt`` when pyenv has CPython 3.6.15) and every test that starts
``tao_step`` as a process uses it, and so do the steps of every dry run the tests start
(``rehearsal/dry_run.py`` reads the same variable). Unset, they run on the interpreter
running pytest, and the test session's header and summary say that 3.6 was not tested.
"""

import os
import subprocess
import sys

PYTHON = os.environ.get("TAO_STEP_PYTHON") or sys.executable

_PROBE = (
    "import platform, sys\n"
    "try:\n"
    "    from google.protobuf import __version__ as pb\n"
    "except ImportError:\n"
    "    pb = 'absent'\n"
    "print('Python %s, protobuf %s' % (platform.python_version(), pb))\n"
)


def describe() -> str:
    """One line saying which interpreter runs tao_step in this session, or what is missing."""
    if not os.access(PYTHON, os.X_OK):
        return f"TAO_STEP_PYTHON={PYTHON} is not an executable interpreter"
    probe = subprocess.run([PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"TAO_STEP_PYTHON={PYTHON} does not start: {probe.stderr.strip()[-200:]}"
    found = probe.stdout.strip()
    if not found.startswith("Python 3.6."):
        return (f"tao_step ran on {found} ({PYTHON}), NOT on Python 3.6 as in the TAO "
                "3.0 image: set TAO_STEP_PYTHON to a 3.6 interpreter (.ci/run builds .venv36)")
    return f"tao_step ran on the TAO 3.0 image's {found} ({PYTHON})"
