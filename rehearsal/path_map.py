"""Container paths to host directories, matched on whole path components, and back.

``/data`` maps ``/data`` and ``/data/x`` but never ``/database`` or ``/x/data/y``: a prefix
is a prefix of path components, never of characters. The runner maps volume mounts with it;
the rehearsal maps the workspace's ``tao_mount_dir`` with it. What a step publishes names
the host folders it was given; :meth:`PathMap.unmap` spells them as the container would.
"""

from __future__ import annotations

import json
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
        """Map an absolute container path, the value of a ``--flag=/path`` argument, or the
        path of a ``NAME=/path`` one (a named file, as ``report summary --artifact`` takes
        it) when it lies below a mount: ``NAME=`` and the mount itself is a value a step
        compares, not a file it opens (preflight's ``--param tao_mount_dir=/mnt/workspace``
        is the form's value, checked as typed)."""
        if text.startswith("/"):
            return self.lookup(text) or text
        name, equals, value = text.partition("=")
        if not equals or not value.startswith("/") or "/" in name:
            return text
        if not name.startswith("-") and any(value.rstrip("/") == prefix
                                            for prefix, _ in self.pairs):
            return text
        mapped = self.lookup(value)
        return f"{name}={mapped}" if mapped else text

    def unmap(self, text: str) -> str:
        """``text`` with each mapped host folder, as written or JSON-escaped, spelled as its
        container path again; a host folder is matched only as whole path components."""
        for prefix, host in sorted(self.pairs, key=lambda ph: len(str(ph[1])), reverse=True):
            for spelled, container in {(str(host), prefix),
                                       (json.dumps(str(host))[1:-1],
                                        json.dumps(prefix)[1:-1])}:
                # not inside a longer name: "ws2", "ws.bak" (a sentence's "ws." is fine)
                text = re.sub(re.escape(spelled) + r"(?![\w-]|\.[\w-])",
                              lambda _, c=container: c, text)
        return text
