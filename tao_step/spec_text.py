"""Reading a spec file's text: protobuf's text-format parser over a release's schema, the
line of every field written, and each syntax error as one line-numbered Problem that says
how to fix it. After an error the parse goes on where the error can be repaired or its line
dropped, so one run reports every error it can.
"""

import difflib
import re

from google.protobuf import descriptor, text_format

from tao_step.spec_schema import DEFAULT_SCHEMA, SCHEMAS, schema_of


class Problem:
    """One thing wrong in a spec file; ``str()`` gives ``FILE:LINE: field: message``.

    ``line`` is 1-based, or None when the problem has no line (a missing file);
    ``field`` is the dotted field path, or None.
    """

    __slots__ = ("field", "file", "line", "message")

    def __init__(self, file, line, field, message):
        self.file = file
        self.line = line
        self.field = field
        self.message = message

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return ": ".join(part for part in (where, self.field, self.message) if part)

    def __repr__(self):
        return f"Problem({self.file!r}, {self.line!r}, {self.field!r}, {self.message!r})"

    def __eq__(self, other):
        return isinstance(other, Problem) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class Spec:
    """A parsed spec: the protobuf ``message`` plus the line of every field written in it."""

    def __init__(self, file, message, lines, schema=None):
        self.file = file
        self.message = message
        self.schema = schema or SCHEMAS[DEFAULT_SCHEMA]
        self._lines = lines  # dotted path -> [1-based line of each occurrence]

    def has(self, path):
        """Whether ``path`` (e.g. ``"train_config.n_epochs"``) is written in the file."""
        return path in self._lines

    def line(self, path):
        """The line ``path`` is written on (its first occurrence), or None if absent."""
        lines = self._lines.get(path)
        return lines[0] if lines else None

    def lines(self, path):
        """Every line ``path`` is written on (repeated fields occur several times)."""
        return list(self._lines.get(path, ()))

    def field(self, path):
        """``(value, line)`` of ``path``: the value as TAO reads it (its default when the
        field is not written, a list for a repeated field) and its line or None."""
        value = self.message
        for name in path.split("."):
            value = getattr(value, name)
        if hasattr(value, "extend"):
            value = list(value)
        return value, self.line(path)

    def where(self, path):
        """The line of ``path`` or, when it is not written, of its closest written parent."""
        while path:
            line = self.line(path)
            if line:
                return line
            path = path.rpartition(".")[0]
        return None


class _IndexingParser(text_format._Parser):
    """protobuf's text-format parser, noting the line of each field it merges.

    ``_MergeField`` is the parser's per-field step from protobuf 3.0 to 4.x; the tokenizer's
    current token is the field name when it is called.
    """

    def __init__(self):
        text_format._Parser.__init__(self)
        self.lines = {}
        self.error_field = None
        self._stack = []

    def _MergeField(self, tokenizer, message):
        name = tokenizer.token
        named = re.match(r"[A-Za-z_]\w*$", name) is not None
        if named:
            self._stack.append(name)
            path = ".".join(self._stack)
            self.lines.setdefault(path, []).append(getattr(tokenizer, "_line", -1) + 1)
        try:
            text_format._Parser._MergeField(self, tokenizer, message)
        except text_format.ParseError:
            if self.error_field is None:
                self.error_field = ".".join(self._stack) or None
            raise
        finally:
            if named:
                self._stack.pop()


def _message_descriptor(path, schema):
    """The descriptor of the message that holds the field at dotted ``path``, or None."""
    descriptor = schema.message_class.DESCRIPTOR
    for name in path.split(".")[:-1]:
        field = descriptor.fields_by_name.get(name)
        if field is None or field.message_type is None:
            return None
        descriptor = field.message_type
    return descriptor


# protobuf's parse-error texts, reworded for the person fixing the spec.
_PARSE_ERRORS = (
    (r"Couldn't parse (?:unsigned |signed )?integer: (.*)",
     lambda m: f"{m.group(1)} is not a whole number (write digits only, e.g. 80)"),
    (r"Couldn't parse (?:float|double|number): (.*)",
     lambda m: f"{m.group(1)} is not a number (e.g. 0.01)"),
    (r"Couldn't parse bool(?:ean)?: (.*)",
     lambda m: f"{m.group(1)} is not true or false"),
    (r"Expected string but found: '(.*)'",
     lambda m: f'text values go in double quotes (write "{m.group(1)}")'),
    (r"Value out of range: (.*)",
     lambda m: f"{m.group(1)} is out of range (this field takes a whole number >= 0)"),
    (r'Message type "[^"]*" should not have multiple "([^"]+)" fields',
     lambda m: f"written more than once (keep one {m.group(1)} line)"),
    (r'Field "([^"]+)" is specified along with field "([^"]+)", another member of oneof',
     lambda m: f"{m.group(2)} and {m.group(1)} cannot both be set (keep one of them)"),
)


# A field whose number is written with a comma: its name and the number as written.
_FLOAT_TYPES = (descriptor.FieldDescriptor.CPPTYPE_FLOAT, descriptor.FieldDescriptor.CPPTYPE_DOUBLE)
_INTEGER_TYPES = tuple(getattr(descriptor.FieldDescriptor, "CPPTYPE_" + kind)
                       for kind in ("INT32", "INT64", "UINT32", "UINT64"))
_DECIMAL_COMMA = re.compile(r"\s*([A-Za-z_]\w*)\s*:\s*([-+]?[0-9.]+(?:\s*,\s*[0-9]+)+)\s*(?:#.*)?$")


def _parse_error_problem(file, error, field, source_lines, schema):
    text = str(error)
    line = error.GetLine() if hasattr(error, "GetLine") else None
    column = error.GetColumn() if hasattr(error, "GetColumn") else None
    located = re.match(r"(\d+)(?::(\d+))? : (.*)$", text, re.DOTALL)
    if located:
        line = line or int(located.group(1))
        column = column or (int(located.group(2)) if located.group(2) else None)
        text = located.group(3)
    if line and line <= len(source_lines):
        # The tokenizer quotes the whole offending line in front of its message.
        quoted = f"'{source_lines[line - 1]}': "
        if text.startswith(quoted):
            text = text[len(quoted):]
    unknown = re.search(r'has no field named "([^"]+)"', text)
    if unknown and not re.match(r"[A-Za-z_]", unknown.group(1)) and line \
            and line <= len(source_lines):
        # Text format takes "," between fields, so "lr: 0,01" is lr: 0 and a field "01".
        comma = _DECIMAL_COMMA.match(source_lines[line - 1])
        if comma:
            path = ".".join(filter(None, (field, comma.group(1))))
            holder = _message_descriptor(path, schema)
            target = holder.fields_by_name.get(comma.group(1)) if holder else None
            if target is not None and target.cpp_type in _FLOAT_TYPES:
                return Problem(file, line, path, f"{comma.group(2)} is not a number (write a "
                               "decimal point, not a comma, e.g. 0.01)")
            if target is not None and target.cpp_type in _INTEGER_TYPES:
                return Problem(file, line, path, f"{comma.group(2)} is not a whole number "
                               "(write digits only, no comma, e.g. 80)")
    holder = _message_descriptor(field, schema) if field else None
    if unknown and unknown.group(1) in schema.renamed:
        return Problem(file, line, field, "unknown in TAO %s: renamed %s (write %s instead)" % (
            schema.name, schema.renamed[unknown.group(1)], schema.renamed[unknown.group(1)]))
    if unknown and holder is not None:
        known = tuple(holder.fields_by_name)
        close = difflib.get_close_matches(unknown.group(1), known, n=1)
        hint = f"did you mean {close[0]}?" if close else "known fields here: " + ", ".join(known)
        return Problem(file, line, field, f"unknown field ({hint})")
    bad_enum = re.search(r'Enum type "[^"]*" has no value named (\S+?)\.?$', text)
    enum_field = holder.fields_by_name.get(field.split(".")[-1]) if holder else None
    if bad_enum and enum_field is not None and enum_field.enum_type is not None:
        values = ", ".join(value.name for value in enum_field.enum_type.values)
        return Problem(file, line, field, f"{bad_enum.group(1)} is not a valid value "
                                          f"(use one of {values})")
    for pattern, explain in _PARSE_ERRORS:
        match = re.search(pattern, text)
        if match:
            return Problem(file, line, field, explain(match).rstrip("."))
    where = f" at column {column}" if column else ""
    return Problem(file, line, field, f"{text.rstrip('.')} (fix the text-format syntax{where}: "
                                      + _GENERIC_SYNTAX_HINT)


_GENERIC_SYNTAX_HINT = "fields are written name: value, blocks name { ... })"


def _blocks(lines):
    """``(unclosed, stray)`` braces of spec text, outside strings and comments: the
    ``(line, name)`` of each ``name {`` never closed, and the line of the first ``}`` that
    closes nothing (or None)."""
    stack = []
    for number, line in enumerate(lines, 1):
        quote = None
        before = ""  # the text since the last brace, for the name of a block
        for char in line:
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char == "{":
                names = re.findall(r"[A-Za-z_]\w*", before)
                stack.append((number, names[-1] if names else "?"))
                before = ""
            elif char == "}":
                if not stack:
                    return stack, number
                stack.pop()
                before = ""
            else:
                before += char
    return stack, None


def _syntax_problem(file, error, parser, lines, schema):
    """The Problem for a parse error, and how to go on parsing after it: ``(problem,
    repaired lines or None, the field path whose text was dropped or None)``."""
    problem = _parse_error_problem(file, error, parser.error_field, lines, schema)
    line = problem.line
    unclosed, stray = _blocks(lines)
    field = parser.error_field or ""
    parent, _, name = field.rpartition(".")
    if unclosed and parent and "unknown field" in problem.message and line:
        # A field of an outer block, met inside another one: that block lacks its "}".
        opened = (parser.lines.get(parent) or [None])[-1]
        problem = Problem(file, line, parent, "syntax error: the %s block opened on line %s "
                          "is not closed before %s (add a } above line %d)"
                          % (parent, opened, name, line))
        return problem, lines[:line - 1] + ["}"] + lines[line - 1:], None
    if stray is not None and not parent and "unknown field" in problem.message and line:
        # A field of a block, met outside it: a "}" before it closed that block too early.
        early = max((n for n in range(1, line) if "}" in lines[n - 1].split("#")[0]),
                    default=None)
        if early is not None:
            problem = Problem(file, early, None, "syntax error: this } closes its block "
                              "before %s on line %d, which belongs inside it (remove the extra "
                              "})" % (name, line))
            text = lines[early - 1]
            cut = text.split("#")[0].rindex("}")
            return problem, lines[:early - 1] + [text[:cut] + text[cut + 1:]] + lines[early:], None
    if unclosed and (line is None or line > len(lines) or not lines[line - 1].strip()
                     or "Expected \"}\"" in str(error)):
        opened, block = unclosed[-1]
        problem = Problem(file, opened, block, "syntax error: the %s block opened here is "
                          "never closed (add its } at the end of the block)" % block)
        return problem, lines + ["}"] * len(unclosed), None
    if stray is not None and stray == line:
        problem = Problem(file, line, None, "syntax error: this } closes no block (remove it)")
        return problem, _blank(lines, line, line), None
    if not line or line > len(lines) or re.search(r"[{}]", lines[line - 1].split("#")[0]):
        return problem, None, None
    if problem.message.endswith(_GENERIC_SYNTAX_HINT):
        return problem, None, None  # unexplained syntax: what follows cannot be trusted
    # A value or name the schema refuses, on a line of its own: go on without that line.
    return problem, _blank(lines, line, line), field or None


def _blank(lines, first, last):
    return lines[:first - 1] + [""] * (last - first + 1) + lines[last:]


# How many parse errors one file may report before the rest is left unchecked.
MAX_SYNTAX_ERRORS = 20


def parse_with_repairs(text, file, schema):
    """``(spec, repaired, problems, dropped)``: the Spec when the text parses (else None);
    after parse errors, the Spec of the text with each error repaired or its line dropped
    (None when it could not be repaired), a Problem per parse error and the field paths
    whose text was dropped."""
    lines = text.split("\n")
    problems, dropped = [], []
    for _ in range(MAX_SYNTAX_ERRORS):
        parser = _IndexingParser()
        message = schema.message_class()
        try:
            parser.ParseLines(lines, message)
        except text_format.ParseError as error:
            problem, lines, field = _syntax_problem(file, error, parser, lines, schema)
            problems.append(problem)
            if field:
                dropped.append(field)
            if lines is None:
                break
            continue
        spec = Spec(file, message, parser.lines, schema)
        return (None if problems else spec), spec, problems, dropped
    return None, None, problems, dropped


def parse_spec_text(text, file="<spec>", schema=DEFAULT_SCHEMA):
    """Parse spec text: ``(Spec, [])`` or, on syntax errors, ``(None, [Problem])`` with a
    Problem per error found (the parse goes on after each one where it can)."""
    spec, _, problems, _ = parse_with_repairs(text, file, schema_of(schema))
    return spec, problems
