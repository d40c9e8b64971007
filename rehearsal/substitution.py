"""Argo template substitution (``{{inputs.parameters.x}}`` and friends) and Kubernetes
``$(VAR)`` expansion, as the local runner applies them to a compiled workflow.

Argo replaces ``{{tag}}`` in every string of a template before the pod is created; Kubernetes
then expands ``$(VAR)`` in command and args from the container's env
(k8s.io/kubernetes third_party/forked/golang/expansion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
TASK_OUTPUT = re.compile(r"tasks\.([^.]+)\.outputs\.parameters\.(.+)")
WORKFLOW_VARIABLES = ("workflow.name", "workflow.uid", "workflow.namespace",
                       "workflow.status", "workflow.serviceAccountName")
# Set by Argo for a workflow with an exit handler only (workflow/validate/validate.go adds
# its placeholder under ``if wf.Spec.OnExit != ""``, v3.3.8 to v4.0.5).
EXIT_HANDLER_VARIABLES = ("workflow.failures",)


class Unresolved(Exception):
    def __init__(self, tag: str):
        super().__init__(tag)
        self.tag = tag


def substitute(value: Any, scope: Mapping[str, str], *, keep: Callable[[str], bool]) -> Any:
    """Replace ``{{tag}}`` in every string of ``value``; unknown tags raise ``Unresolved``
    unless ``keep(tag)``, in which case they stay for a later pass."""

    def replace(match: re.Match[str]) -> str:
        tag = match.group(1).strip()
        if tag in scope:
            return scope[tag]
        if keep(tag):
            return match.group(0)
        raise Unresolved(tag)

    if isinstance(value, str):
        return TAG.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, scope, keep=keep) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope, keep=keep) for k, v in value.items()}
    return value


def strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Yield ``(field path, string)`` for every string inside ``value``."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{where}.{k}" if where else k)



# ---------------------------------------------------------------------------------------
# Kubernetes $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion)


def expand_k8s(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` becomes VAR's value if defined in ``env``, else stays; ``$$`` is ``$``."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i] == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close >= 0:
                    name = text[i + 2:close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Go's encodings of ``{{workflow.failures}}``: ``strconv.Quote(json.Marshal(failures))``
# (workflow/controller/operator.go, v3.3.8 to v4.0.5)

_GO_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                     "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}
# encoding/json escapes these even in strings, for HTML safety (json.Marshal's default).
_GO_JSON_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}


def go_json(value: Any) -> str:
    """``json.Marshal``: compact, non-ASCII kept, ``<``, ``>``, ``&``, U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_GO_JSON_HTML.get(ch, ch) for ch in text)


def go_quote(text: str) -> str:
    """``strconv.Quote``: printable characters kept (Python's ``isprintable`` standing in
    for Go's ``unicode.IsPrint``), the rest escaped."""
    out = ['"']
    for ch in text:
        if ch in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out) + '"'
