"""What ``tao_step report`` prints: one line per message with its prefix, and the TAO key
masked in every line, also in a command shown or streamed.

The key comes from ``-k``/``--key`` in the command and from ``$TAO_API_KEY`` (a
``--key-secret`` build); ``protect_key`` sets what is masked before anything is printed.
"""

import shlex
import sys
from typing import List, Optional, Sequence

from tao_step import form

REDACTED = "***"
KEY_FLAGS = ("-k", "--key")
# Where a --key-secret build puts the TAO key (Kubernetes expands $(TAO_API_KEY) from it).
KEY_ENV = form.KEY_ENV
# Keys to mask in everything we print (set by protect_key from the command and the environment).
_SECRETS = []  # type: List[str]


def _write_out(data: bytes) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (some test harnesses)
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    stream.write(data)
    stream.flush()


def mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def say(message: str) -> None:
    # Encoded by hand: the TAO image may run with an ASCII locale.
    _write_out(("tao_step report: " + mask(message) + "\n").encode("utf-8", "replace"))


def warn(message: str) -> None:
    say("WARNING: " + message)


def error(message: str) -> None:
    say("ERROR: " + message)


def redact(command: Sequence[str]) -> List[str]:
    """The command with the TAO key replaced, for showing it (``-k K``, ``--key=K``, ``-kK``)."""
    shown, hide_next = [], False
    for arg in command:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
        elif arg in KEY_FLAGS:
            shown.append(arg)
            hide_next = True
        elif arg.startswith("--key="):
            shown.append("--key=" + REDACTED)
        elif arg.startswith("-k") and not arg.startswith("--"):
            shown.append("-k" + REDACTED)
        else:
            shown.append(arg)
    return shown


def secrets_in(command: Sequence[str]) -> List[str]:
    """The key values in ``command``; masked in the streamed output too, in case TAO echoes them."""
    values = []
    for i, arg in enumerate(command):
        if arg in KEY_FLAGS and i + 1 < len(command):
            values.append(command[i + 1])
        elif arg.startswith("--key="):
            values.append(arg[len("--key="):])
        elif arg.startswith("-k") and not arg.startswith("--") and len(arg) > 2:
            values.append(arg[2:])
    # A very short value would mask ordinary text; such a key is not worth hiding anyway.
    return [v for v in values if len(v) >= 4]


def key_outside_its_flag(argv: Sequence[str], key: str) -> bool:
    """Whether ``key`` appears anywhere in ``argv`` but as the value of ``-k``/``--key``: a
    path or name holding it would carry it into logs and file names."""
    hidden = [i + 1 for i, arg in enumerate(argv) if arg in KEY_FLAGS]
    return any(key in arg for i, arg in enumerate(argv)
               if i not in hidden and arg not in ("-k" + key, "--key=" + key))


def shown_command(command: Sequence[str]) -> str:
    """The command line to log: the key redacted, also where it is part of another argument."""
    line = " ".join(arg if REDACTED in arg else shlex.quote(arg) for arg in redact(command))
    for secret in secrets_in(command):
        line = line.replace(secret, REDACTED)
    return line


def masked_keys() -> List[str]:
    """The key values masked in what we print, longest first."""
    return list(_SECRETS)


def protect_key(argv: Sequence[str], command: Sequence[str], key: str) -> Optional[str]:
    """Mask the key values in ``command`` and ``key`` (``$TAO_API_KEY``) in every line printed
    from now on; the refusal when an argument other than the key itself holds ``key``."""
    _SECRETS[:] = sorted(set(secrets_in(command) + ([key] if key else [])),
                         key=len, reverse=True)
    if key and key_outside_its_flag(list(argv) + list(command), key):
        return ("an argument other than the TAO key itself contains the key (from the Secret, "
                "expanded by Kubernetes); nothing was run: take the key out of the Create Run "
                "values (preflight refuses them)")
    return None
