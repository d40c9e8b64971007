"""Container paths to host directories, matched on whole path components.

``/data`` maps ``/data`` and ``/data/x`` but never ``/database`` or ``/x/data/y``: a prefix
is a prefix of path components, never of characters. The runner maps volume mounts with it;
the rehearsal maps the workspace's ``tao_mount_dir`` with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class StepFailure(Exception):
    """A step cannot run, the way a pod fails to start; the message says why."""


class PathMap:
    """Container path prefixes to host directories, longest prefix first."""

    def __init__(self, pairs: Mapping[str, Path]):
        self.pairs = sorted(((p.rstrip("/") or "/", h) for p, h in pairs.items()),
                            key=lambda ph: len(ph[0]), reverse=True)

    def lookup(self, path: str) -> str | None:
        for prefix, host in self.pairs:
            if under(path, prefix):
                rest = path[len(prefix):].lstrip("/")
                return str(host / rest) if rest else str(host)
        return None

    def host(self, path: str) -> Path:
        """The host path of a container path known to be mapped."""
        mapped = self.lookup(path)
        assert mapped is not None, path
        return Path(mapped)

    def rewrite(self, text: str) -> str:
        """Map an absolute container path, or the value of a ``--flag=/path`` argument."""
        if text.startswith("/"):
            return self.lookup(text) or text
        if text.startswith("-") and "=" in text:
            flag, value = text.split("=", 1)
            mapped = self.lookup(value) if value.startswith("/") else None
            return f"{flag}={mapped}" if mapped else text
        return text
