"""Argo 3.3 ``when``: govaluate with bare words turned into strings.

Quoted operands are strings, ``>``/``>=``/``<``/``<=`` compare two numbers or two strings
and fail the task for a number against a word (``85%``, ``1e-3`` or an empty value do not
parse at all). Ternaries, bitwise operators, ``**``, ``in`` and accessors raise
:class:`WhenError` saying the runner does not implement them; kfp emits none of these.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["WhenError", "evaluate_when"]


class WhenError(Exception):
    pass


_PREFIX_OPS = {"-", "!", "~"}
_MODIFIER_OPS = {"+", "-", "*", "/", "%", "**", "&", "|", "^", ">>", "<<"}
_LOGICAL_OPS = {"&&", "||"}
_COMPARATOR_OPS = {"==", "!=", ">", ">=", "<", "<=", "=~", "!~"}
_TERNARY_OPS = {"?", ":", "??"}
_VALUE_KINDS = {"number", "string", "bool", "accessor"}


def _go_value(v: Any) -> str:
    """Format like Go's %v, for messages and string concatenation."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text.removesuffix(".0")
    return str(v)


def _lex_when(expr: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        after_value = bool(tokens) and (tokens[-1][0] in _VALUE_KINDS or tokens[-1][0] == ")")
        if ch.isdigit() or ch == ".":
            if expr.startswith(("0x", "0X"), i):
                j = i + 2
                while j < n and expr[j] in "0123456789abcdefABCDEF":
                    j += 1
                tokens.append(("number", float(int(expr[i + 2:j] or "0", 16))))
            else:
                j = i
                while j < n and (expr[j].isdigit() or expr[j] == "."):
                    j += 1
                try:
                    tokens.append(("number", float(expr[i:j])))
                except ValueError:
                    raise WhenError(
                        f"Unable to parse numeric value '{expr[i:j]}' to float64") from None
            i = j
        elif ch.isalpha():
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_."):
                j += 1
            word = expr[i:j]
            if word in ("true", "false"):
                tokens.append(("bool", word == "true"))
            elif word in ("in", "IN"):
                tokens.append(("op", "in"))
            elif "." in word:
                tokens.append(("accessor", word))
            else:  # a govaluate variable, which Argo turns into a string
                tokens.append(("string", word))
            i = j
        elif ch == "[":
            j = expr.find("]", i)
            if j < 0:
                raise WhenError("unclosed parameter bracket")
            tokens.append(("string", expr[i + 1:j]))
            i = j + 1
        elif ch in "'\"":
            j, chars = i + 1, []
            while j < n and expr[j] not in "'\"":
                if expr[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(expr[j])
                j += 1
            if j >= n:
                raise WhenError("unclosed string literal")
            tokens.append(("string", "".join(chars)))
            i = j + 1
        elif ch in "()":
            tokens.append((ch, ch))
            i += 1
        else:
            j = i
            while j < n and not (expr[j].isalnum() or expr[j].isspace()
                                 or expr[j] in "()[]'\""):
                j += 1
            symbol = expr[i:j]
            if not after_value and symbol in _PREFIX_OPS:
                tokens.append(("prefix", symbol))
            elif symbol in _MODIFIER_OPS | _LOGICAL_OPS | _COMPARATOR_OPS | _TERNARY_OPS:
                tokens.append(("op", symbol))
            else:
                raise WhenError(f"Invalid token: '{symbol}'")
            i = j
    return tokens


class _WhenParser:
    """Recursive descent over govaluate's precedence: || < && < comparators < + - < * / %."""

    _LEVELS = (_LOGICAL_OPS - {"&&"}, {"&&"}, _COMPARATOR_OPS, {"+", "-"}, {"*", "/", "%"})

    def __init__(self, tokens: list[tuple[str, Any]]):
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> Any:
        if not self.tokens:
            raise WhenError("empty expression")
        tree = self._binary(0)
        if self.pos < len(self.tokens):
            raise self._unexpected()
        return tree

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _unexpected(self) -> WhenError:
        token = self._peek()
        if token is None:
            return WhenError("Unexpected end of expression")
        kind, value = token
        if kind == "op" and value not in _LOGICAL_OPS | _COMPARATOR_OPS | set("+-*/%"):
            return WhenError(f"operator '{value}' is not implemented by local_runner")
        return WhenError(f"Unexpected token '{_go_value(value)}'")

    def _binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (token := self._peek()) and token[0] == "op" and token[1] in self._LEVELS[level]:
            self.pos += 1
            left = ("binary", token[1], left, self._binary(level + 1))
        return left

    def _unary(self) -> Any:
        token = self._peek()
        if token is None:
            raise self._unexpected()
        kind, value = token
        self.pos += 1
        if kind == "prefix":
            if value == "~":
                raise WhenError("operator '~' is not implemented by local_runner")
            return ("prefix", value, self._unary())
        if kind == "(":
            tree = self._binary(0)
            if self._peek() != (")", ")"):
                raise self._unexpected()
            self.pos += 1
            return tree
        if kind == "accessor":
            raise WhenError(f"accessor '{value}' is not implemented by local_runner")
        if kind in _VALUE_KINDS:
            return ("value", value)
        self.pos -= 1
        raise self._unexpected()


def _evaluate(tree: Any) -> Any:
    kind = tree[0]
    if kind == "value":
        return tree[1]
    if kind == "prefix":
        operand = _evaluate(tree[2])
        if tree[1] == "-":
            if type(operand) is not float:
                raise WhenError(f"Value '{_go_value(operand)}' cannot be used with the "
                                 "prefix '-'")
            return -operand
        if type(operand) is not bool:
            raise WhenError(f"Value '{_go_value(operand)}' cannot be used with the prefix '!'")
        return not operand
    _, op, left_tree, right_tree = tree
    left = _evaluate(left_tree)
    if op in _LOGICAL_OPS:
        if type(left) is not bool:
            raise WhenError(f"Value '{_go_value(left)}' cannot be used with the logical "
                             f"operator '{op}', it is not a bool")
        if left == (op == "||"):  # govaluate short-circuits
            return left
        right = _evaluate(right_tree)
        if type(right) is not bool:
            raise WhenError(f"Value '{_go_value(right)}' cannot be used with the logical "
                             f"operator '{op}', it is not a bool")
        return right
    right = _evaluate(right_tree)
    if op == "==":
        return type(left) is type(right) and left == right
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if op in ("=~", "!~"):
        if type(left) is not str or type(right) is not str:
            raise WhenError(f"Value '{_go_value(left)}' cannot be used with the comparator "
                             f"'{op}', it is not a string")
        return (re.search(right, left) is not None) == (op == "=~")
    both_numbers = type(left) is float and type(right) is float
    if op in (">", ">=", "<", "<="):
        if not both_numbers and not (type(left) is str and type(right) is str):
            raise WhenError(f"Value '{_go_value(left)}' cannot be used with the comparator "
                             f"'{op}', it is not a number")
        return {">": left > right, ">=": left >= right,
                "<": left < right, "<=": left <= right}[op]
    if op == "+" and not both_numbers and (type(left) is str or type(right) is str):
        return _go_value(left) + _go_value(right)
    if not both_numbers:
        raise WhenError(f"Value '{_go_value(left)}' cannot be used with the modifier "
                         f"'{op}', it is not a number")
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:  # Go float division
        return math.nan if op == "%" or left == 0 else math.copysign(math.inf, left)
    return left / right if op == "/" else math.fmod(left, right)


def evaluate_when(expression: str) -> bool:
    """Evaluate an already substituted Argo ``when`` expression as Argo 3.3 does."""
    try:
        result = _evaluate(_WhenParser(_lex_when(expression)).parse())
    except WhenError as e:
        raise WhenError(f"Invalid 'when' expression '{expression}': {e}") from None
    if type(result) is not bool:
        raise WhenError(f"Expected boolean evaluation for '{expression}'. "
                         f"Got {_go_value(result)}")
    return result
