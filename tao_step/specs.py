"""Check TAO image-classification spec files before TAO reads them.

``python3 -m tao_step spec-check FILE [FILE...]`` prints one line per problem,
``FILE:LINE: field.path: what is wrong (how to fix)``, or ``FILE: OK``; it exits 0 when every
file is good, 1 when any has a problem and 2 on a usage error.

The schema is the TAO 3.0 classification spec (``model_config``, ``train_config``,
``eval_config``) declared here as a protobuf descriptor, so protobuf's own text-format parser
does the parsing and reports syntax errors, unknown fields and wrong value types with their
line. What a proto cannot say (required fields, allowed strings, ranges, absolute paths) is
checked afterwards. The descriptor is proto2 so that a field written as ``n_epochs: 0`` and
a missing ``n_epochs`` can be told apart.

Two schemas, named by the TAO release (``tao_step.profiles``): "3.0" accepts both
``use_imagenet_head`` (3.0's name) and ``retain_head``; "5.0" is TAO 5's protos
(tao_tensorflow1_backend@d73dcfc ``nvidia_tao_tf1/cv/makenet/proto/``: ``retain_head`` only,
plus ``byom_model`` and ``visualizer``) with the rules its spec validator enforces
(``spec_handling/constants.py``, ``cv/common/spec_validator.py``): on proto3 an unset number
is 0, so ``preprocess_mode``, both ``n_workers``, ``reg_config.scope`` and a positive
``weight_decay`` are required there. ``spec-check --tao-version 5.0`` picks it.

Runs inside the TAO 3.0 image (Python 3.6, protobuf 3.x) and on the host: standard library
and protobuf 3.6 to 3.20 APIs only.
"""

import difflib
import math
import os
import re
import sys

from google.protobuf import (
    descriptor,
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
)

from tao_step import profiles

PACKAGE = "tao_step.classification"
ROOT_MESSAGE = "ClassificationExperimentConfig"

ARCHITECTURES = (
    "resnet", "vgg", "alexnet", "googlenet", "mobilenet_v1", "mobilenet_v2", "squeezenet",
    "darknet", "cspdarknet", "cspdarknet_tiny",
) + tuple(f"efficientnet_b{i}" for i in range(8))
# n_layers TAO builds for the architectures that take it.
ARCH_LAYERS = {"resnet": (10, 18, 34, 50, 101, 152), "vgg": (16, 19), "darknet": (19, 53)}
PREPROCESS_MODES = ("tf", "caffe", "torch")
REGULARIZERS = ("L1", "L2", "None")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
LR_SCHEDULES = ("step", "soft_anneal", "cosine")
# Every spec field that names a file or folder; TAO resolves them inside its container.
PATH_FIELDS = (
    "train_config.train_dataset_path",
    "train_config.val_dataset_path",
    "train_config.pretrained_model_path",
    "eval_config.eval_dataset_path",
    "eval_config.model_path",
)

# (message, ((field, type), ...)). A type is a scalar name, "repeated T", "map<K,V>", an enum
# from _ENUMS or another message; a message in _ONEOFS keeps all its fields in that oneof.
_MESSAGES = (
    ("BatchNormConfig", (("momentum", "float"), ("epsilon", "float"))),
    ("Activation", (
        ("activation_type", "string"),
        ("activation_parameters", "map<string,float>"),
    )),
    ("ModelConfig", (
        ("arch", "string"),
        ("input_image_size", "string"),
        ("n_layers", "uint32"),
        ("resize_interpolation_method", "InterpolationMethod"),
        ("use_imagenet_head", "bool"),
        ("retain_head", "bool"),
        ("use_batch_norm", "bool"),
        ("use_bias", "bool"),
        ("use_pooling", "bool"),
        ("all_projections", "bool"),
        ("freeze_bn", "bool"),
        ("freeze_blocks", "repeated uint32"),
        ("dropout", "float"),
        ("batch_norm_config", "BatchNormConfig"),
        ("activation", "Activation"),
    )),
    ("SgdOptimizerConfig", (
        ("lr", "float"), ("decay", "float"), ("momentum", "float"), ("nesterov", "bool"),
    )),
    ("AdamOptimizerConfig", (
        ("lr", "float"), ("beta_1", "float"), ("beta_2", "float"), ("epsilon", "float"),
        ("decay", "float"),
    )),
    ("RmspropOptimizerConfig", (
        ("lr", "float"), ("rho", "float"), ("epsilon", "float"), ("decay", "float"),
    )),
    ("OptimizerConfig", (
        ("sgd", "SgdOptimizerConfig"),
        ("adam", "AdamOptimizerConfig"),
        ("rmsprop", "RmspropOptimizerConfig"),
    )),
    ("StepLrConfig", (("learning_rate", "float"), ("step_size", "uint32"), ("gamma", "float"))),
    ("SoftAnnealLrConfig", (
        ("learning_rate", "float"),
        ("soft_start", "float"),
        ("annealing_divider", "float"),
        ("annealing_points", "repeated float"),
    )),
    ("CosineLrConfig", (
        ("learning_rate", "float"), ("min_lr_ratio", "float"), ("soft_start", "float"),
    )),
    ("LRConfig", (
        ("step", "StepLrConfig"),
        ("soft_anneal", "SoftAnnealLrConfig"),
        ("cosine", "CosineLrConfig"),
    )),
    ("RegConfig", (("type", "string"), ("scope", "string"), ("weight_decay", "float"))),
    ("TrainConfig", (
        ("train_dataset_path", "string"),
        ("val_dataset_path", "string"),
        ("pretrained_model_path", "string"),
        ("optimizer", "OptimizerConfig"),
        ("batch_size_per_gpu", "uint32"),
        ("n_epochs", "uint32"),
        ("n_workers", "uint32"),
        ("reg_config", "RegConfig"),
        ("lr_config", "LRConfig"),
        ("random_seed", "uint32"),
        ("enable_random_crop", "bool"),
        ("enable_center_crop", "bool"),
        ("enable_color_augmentation", "bool"),
        ("label_smoothing", "float"),
        ("preprocess_mode", "string"),
        ("mixup_alpha", "float"),
        ("model_parallelism", "repeated float"),
        ("image_mean", "map<string,float>"),
        ("disable_horizontal_flip", "bool"),
    )),
    ("EvalConfig", (
        ("top_k", "uint32"),
        ("eval_dataset_path", "string"),
        ("model_path", "string"),
        ("batch_size", "uint32"),
        ("n_workers", "uint32"),
        ("enable_center_crop", "bool"),
    )),
    (ROOT_MESSAGE, (
        ("model_config", "ModelConfig"),
        ("train_config", "TrainConfig"),
        ("eval_config", "EvalConfig"),
    )),
)


def _tao5_messages():
    """TAO 5's messages: 3.0's with ModelConfig's head flag renamed to retain_head, the
    bring-your-own-model path, and the experiment-tracking block of train_config."""
    changed = {
        "ModelConfig": lambda fields: tuple(
            f for f in fields if f[0] != "use_imagenet_head") + (("byom_model", "string"),),
        "TrainConfig": lambda fields: fields + (("visualizer", "VisualizerConfig"),),
    }
    tracking = (
        ("WandBConfig", (
            ("enabled", "bool"), ("key", "string"), ("project", "string"),
            ("entity", "string"), ("reinit", "bool"), ("name", "string"),
            ("tags", "repeated string"), ("wandb_dir", "string"), ("notes", "string"),
            ("mode", "WandBMode"),
        )),
        ("ClearMLConfig", (
            ("project", "string"), ("task", "string"), ("tags", "repeated string"),
            ("reuse_last_task_id", "bool"), ("continue_last_task", "bool"),
            ("deferred_init", "bool"),
        )),
        ("VisualizerConfig", (
            ("enabled", "bool"), ("num_images", "uint32"), ("weight_histograms", "bool"),
            ("wandb_config", "WandBConfig"), ("clearml_config", "ClearMLConfig"),
        )),
    )
    return tracking + tuple((name, changed.get(name, lambda f: f)(fields))
                            for name, fields in _MESSAGES)


_ENUMS = {"InterpolationMethod": ("BILINEAR", "BICUBIC"),
          "WandBMode": ("ONLINE", "OFFLINE", "DISABLED")}
_ONEOFS = {"OptimizerConfig": "optim", "LRConfig": "lr_scheduler"}

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _FDP.TYPE_STRING,
    "bool": _FDP.TYPE_BOOL,
    "float": _FDP.TYPE_FLOAT,
    "uint32": _FDP.TYPE_UINT32,
}

# Fields whose absence makes TAO fail or silently train something else; eval_config is
# required because the pipeline evaluates and runs inference from every spec it trains.
REQUIRED = (
    ("model_config", "the model to build, e.g. model_config { arch: \"resnet\" ... }"),
    ("model_config.arch", "e.g. arch: \"resnet\""),
    ("model_config.input_image_size", "e.g. input_image_size: \"3,224,224\""),
    ("train_config", "the training recipe: train_config { ... }"),
    ("train_config.train_dataset_path", "the training split, a folder of class folders"),
    ("train_config.val_dataset_path", "the validation split, a folder of class folders"),
    ("train_config.optimizer", "e.g. optimizer { sgd { lr: 0.01 momentum: 0.9 } }"),
    ("train_config.batch_size_per_gpu", "e.g. batch_size_per_gpu: 64"),
    ("train_config.n_epochs", "e.g. n_epochs: 80"),
    ("train_config.reg_config", ("e.g. reg_config { type: \"L2\" scope: \"Conv2D,Dense\" "
                                "weight_decay: 0.00005 }")),
    ("train_config.lr_config", ("e.g. lr_config { step { learning_rate: 0.006 step_size: 10 "
                               "gamma: 0.1 } }")),
    ("eval_config", "evaluate and inference read it: eval_config { ... }"),
    ("eval_config.top_k", "e.g. top_k: 3"),
    ("eval_config.eval_dataset_path", "the split to evaluate, e.g. the test split"),
    ("eval_config.model_path", "the checkpoint evaluate reads: the last one training writes"),
    ("eval_config.batch_size", "e.g. batch_size: 256"),
)


def _field_proto(message, number, name, type_text):
    field = descriptor_pb2.FieldDescriptorProto(name=name, number=number)
    field.label = _FDP.LABEL_OPTIONAL
    if type_text.startswith("repeated "):
        field.label = _FDP.LABEL_REPEATED
        type_text = type_text[len("repeated "):]
    map_types = re.match(r"map<(\w+),(\w+)>$", type_text)
    if map_types:
        entry = message.nested_type.add(name=_camel(name) + "Entry")
        entry.options.map_entry = True
        for entry_number, (entry_name, entry_type) in enumerate(
                zip(("key", "value"), map_types.groups()), 1):
            entry.field.add(name=entry_name, number=entry_number, label=_FDP.LABEL_OPTIONAL,
                            type=_SCALARS[entry_type])
        field.label = _FDP.LABEL_REPEATED
        field.type = _FDP.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{message.name}.{entry.name}"
    elif type_text in _SCALARS:
        field.type = _SCALARS[type_text]
    elif type_text in _ENUMS:
        field.type = _FDP.TYPE_ENUM
        field.type_name = f".{PACKAGE}.{type_text}"
    else:
        field.type = _FDP.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_text}"
    return field


def _camel(name):
    return "".join(part.capitalize() for part in name.split("_"))


def _file_descriptor_proto(messages):
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tao_step/classification_spec.proto", package=PACKAGE, syntax="proto2")
    for enum_name, values in _ENUMS.items():
        enum = file_proto.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for message_name, fields in messages:
        message = file_proto.message_type.add(name=message_name)
        if message_name in _ONEOFS:
            message.oneof_decl.add(name=_ONEOFS[message_name])
        for number, (name, type_text) in enumerate(fields, 1):
            field = _field_proto(message, number, name, type_text)
            if message_name in _ONEOFS:
                field.oneof_index = 0
            message.field.add().CopyFrom(field)
    return file_proto


def _message_class(messages):
    pool = descriptor_pool.DescriptorPool()  # one pool per schema: the names repeat
    pool.Add(_file_descriptor_proto(messages))
    descriptor = pool.FindMessageTypeByName(f"{PACKAGE}.{ROOT_MESSAGE}")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


ClassificationExperimentConfig = _message_class(_MESSAGES)
Tao5ExperimentConfig = _message_class(_tao5_messages())

# TAO 5's validator compares every number and string it knows, set or not, and an unset
# proto3 field reads 0 or "": these are therefore required there too.
REQUIRED_5_0 = REQUIRED + (
    ("train_config.n_workers", "TAO 5 requires it > 0, e.g. n_workers: 8"),
    ("train_config.preprocess_mode", 'TAO 5 requires it: "caffe" for NGC\'s pretrained models'),
    ("eval_config.n_workers", "TAO 5 requires it > 0 whenever eval_config is written, "
                              "e.g. n_workers: 8"),
    ("train_config.reg_config.scope", 'TAO 5 requires it, e.g. scope: "Conv2D,Dense"'),
    ("train_config.reg_config.weight_decay", "TAO 5 requires it > 0 even with type \"None\", "
                                             "e.g. weight_decay: 0.00005"),
)
# Fields a release renamed: the old name gets "renamed" instead of "unknown field".
RENAMED_5_0 = {"use_imagenet_head": "retain_head"}


class Schema:
    """A release's spec format: its message class and what its validator requires."""

    def __init__(self, name, message_class, required, renamed=None, positive_decay=False):
        self.name = name
        self.message_class = message_class
        self.required = required
        self.renamed = renamed or {}
        # TAO 5 checks weight_decay > 0 whatever the regularizer type.
        self.positive_decay = positive_decay


SCHEMAS = {
    "3.0": Schema("3.0", ClassificationExperimentConfig, REQUIRED),
    "5.0": Schema("5.0", Tao5ExperimentConfig, REQUIRED_5_0, RENAMED_5_0, positive_decay=True),
}
DEFAULT_SCHEMA = "3.0"


def schema_of(name):
    """The Schema named ``name`` (a TAO version); ValueError naming the known ones."""
    if name not in SCHEMAS:
        raise ValueError("no spec schema for TAO %r (known: %s)" % (name, ", ".join(SCHEMAS)))
    return SCHEMAS[name]


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


def _parse(text, file, schema):
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
    spec, _, problems, _ = _parse(text, file, schema_of(schema))
    return spec, problems


def check_spec_text(text, file="<spec>", schema=DEFAULT_SCHEMA):
    """``(spec_or_None, [Problem])`` for spec text; ``file`` names it in the problems;
    ``schema`` is the TAO release whose format applies ("3.0" or "5.0").

    After a syntax error the spec is None, yet the rest of the file is still checked where
    the error could be repaired or its lines dropped (problems of dropped fields are left
    out); where it could not, one more Problem says that the rest was not checked.
    """
    spec, repaired, problems, dropped = _parse(text, file, schema_of(schema))
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


def _number(value):
    return f"{value:g}"


def semantic_problems(spec):
    """What the proto cannot express: required fields, allowed strings, ranges, paths."""
    problems = []

    def report(path, message):
        problems.append(Problem(spec.file, spec.where(path), path, message))

    def one_of(choices, quote=""):
        return ", ".join(quote + choice + quote for choice in choices)

    for path, hint in spec.schema.required:
        parent = path.rpartition(".")[0]
        # A missing block is one problem, not one per field it should hold.
        if not spec.has(path) and (not parent or spec.has(parent)):
            report(path, f"missing (required: {hint})")

    model = spec.message.model_config
    train = spec.message.train_config
    evaluation = spec.message.eval_config

    if spec.has("model_config.arch") and model.arch not in ARCHITECTURES:
        close = difflib.get_close_matches(model.arch, ARCHITECTURES, n=1)
        hint = f"did you mean {close[0]}?" if close else "use one of " + one_of(ARCHITECTURES)
        report("model_config.arch", f'"{model.arch}" is not a TAO classification architecture '
                                    f"({hint})")
    layers = ARCH_LAYERS.get(model.arch)
    if layers and model.n_layers not in layers:
        wrong = (f"{model.n_layers} is not a depth TAO builds"
                 if spec.has("model_config.n_layers") else "missing")
        report("model_config.n_layers", f"{wrong} for {model.arch} (set n_layers to one of "
                                        f"{one_of(str(n) for n in layers)})")
    if spec.has("model_config.input_image_size"):
        error = image_size_error(model.input_image_size)
        if error:
            report("model_config.input_image_size", error)
    if spec.has("model_config.dropout") and not 0 <= model.dropout < 1:
        report("model_config.dropout", f"{_number(model.dropout)} is not in [0, 1) "
                                       "(a dropout rate such as 0.1)")

    if spec.has("train_config.optimizer"):
        chosen = [name for name in OPTIMIZERS if train.optimizer.HasField(name)]
        if not chosen:
            report("train_config.optimizer", "names no optimizer (add one of "
                   + one_of(name + " { ... }" for name in OPTIMIZERS) + ")")
        for name in chosen:
            path = f"train_config.optimizer.{name}.lr"
            settings = getattr(train.optimizer, name)
            if spec.has(path) and not settings.lr > 0:
                report(path, f"{_number(settings.lr)} must be > 0 (a learning rate such as 0.01)")
    for name in ("batch_size_per_gpu", "n_epochs"):
        path = "train_config." + name
        if spec.has(path) and getattr(train, name) < 1:
            report(path, f"{getattr(train, name)} must be at least 1")
    for path, value in (("train_config.n_workers", train.n_workers),
                        ("eval_config.n_workers", evaluation.n_workers)):
        if spec.has(path) and value < 1:
            report(path, f"{value} must be > 0 (data-loader processes, e.g. 8)")
    if spec.has("train_config.preprocess_mode") and train.preprocess_mode not in PREPROCESS_MODES:
        report("train_config.preprocess_mode",
               f'"{train.preprocess_mode}" is not a preprocessing mode (use one of '
               f"{one_of(PREPROCESS_MODES)}; NGC's pretrained models expect \"caffe\")")
    if spec.has("train_config.label_smoothing") and not 0 <= train.label_smoothing < 1:
        report("train_config.label_smoothing", f"{_number(train.label_smoothing)} is not in "
                                               "[0, 1) (e.g. 0.1, or 0.0 for none)")
    if spec.has("train_config.mixup_alpha") and train.mixup_alpha < 0:
        report("train_config.mixup_alpha", f"{_number(train.mixup_alpha)} must not be negative "
                                           "(0 disables mixup)")
    if spec.has("train_config.reg_config"):
        regularizer = train.reg_config
        if not spec.has("train_config.reg_config.type"):
            report("train_config.reg_config.type",
                   f"missing (use one of {one_of(REGULARIZERS, quote=chr(34))})")
        elif regularizer.type not in REGULARIZERS:
            report("train_config.reg_config.type", f'"{regularizer.type}" is not a regularizer '
                   f"(use one of {one_of(REGULARIZERS, quote=chr(34))})")
        written = spec.has("train_config.reg_config.weight_decay")
        # A missing weight_decay is already reported where the schema requires it.
        decays = regularizer.type in ("L1", "L2") or spec.schema.positive_decay
        if decays and not 0 < regularizer.weight_decay < 1 and (
                written or "train_config.reg_config.weight_decay" not in dict(
                    spec.schema.required)):
            report("train_config.reg_config.weight_decay",
                   f"{_number(regularizer.weight_decay) if written else 'missing, so 0,'} is not "
                   "in (0, 1) (a small factor such as 0.00005)")
    if spec.has("train_config.lr_config"):
        chosen = [name for name in LR_SCHEDULES if train.lr_config.HasField(name)]
        if not chosen:
            report("train_config.lr_config", "names no schedule (add one of "
                   + one_of(name + " { ... }" for name in LR_SCHEDULES) + ")")
        for name in chosen:
            path = f"train_config.lr_config.{name}.learning_rate"
            rate = getattr(train.lr_config, name).learning_rate
            if not rate > 0:
                wrong = _number(rate) if spec.has(path) else "missing, so 0,"
                report(path, f"{wrong} must be > 0 (the base learning rate, e.g. 0.006)")
        if "step" in chosen and train.lr_config.step.step_size < 1:
            report("train_config.lr_config.step.step_size",
                   "must be at least 1 (epochs between learning-rate drops, e.g. 10)")

    if spec.has("eval_config.top_k") and evaluation.top_k < 1:
        report("eval_config.top_k", f"{evaluation.top_k} must be at least 1 (e.g. 3: evaluate "
                                    "reports top-k accuracy)")
    if spec.has("eval_config.batch_size") and evaluation.batch_size < 1:
        report("eval_config.batch_size", f"{evaluation.batch_size} must be at least 1")

    for path in PATH_FIELDS:
        value, _ = spec.field(path)
        if spec.has(path) and not value:
            report(path, "is empty (write the absolute path inside the container)")
        elif value and not value.startswith("/"):
            report(path, f'"{value}" is relative: TAO would resolve it against its working '
                         "directory (write the absolute path inside the mounted workspace)")
    for path, most, what in UPPER_BOUNDS:
        value, _ = spec.field(path) if _declares(spec, path) else (None, None)
        if spec.has(path) and isinstance(value, int) and value > most:
            report(path, f"{value} is more than {most} ({what}); TAO would run out of memory "
                         f"or time before saying why (use at most {most})")
    reported = {problem.field for problem in problems}
    for path, value in _float_values(spec.message):
        if spec.has(path) and not math.isfinite(value) and path not in reported:
            report(path, f"{_number(value)} is not a finite number (a 32-bit float holds "
                         "about 3.4e38 at most; write an ordinary number)")
    return sorted(problems, key=lambda problem: problem.line or 0)


# Whole-number settings with a largest sensible value: far above any real setting, far
# below what makes TAO allocate for minutes before failing or overflow its int32 shapes.
UPPER_BOUNDS = (
    ("train_config.batch_size_per_gpu", 4096, "images per GPU and batch"),
    ("eval_config.batch_size", 4096, "images per evaluation batch"),
    ("train_config.n_epochs", 10000, "training epochs"),
    ("train_config.n_workers", 256, "data-loader processes"),
    ("eval_config.n_workers", 256, "data-loader processes"),
)
# The largest image side accepted in C,H,W sizes (input_image_size, convert_trt_dims).
MAX_IMAGE_SIDE = 4096


def _declares(spec, path):
    """Whether ``path`` is a field of ``spec``'s schema (the TAO 5 schema differs)."""
    holder = spec.message
    for name in path.split("."):
        if name not in holder.DESCRIPTOR.fields_by_name:
            return False
        holder = getattr(holder, name)
    return True


def _float_values(message, prefix=""):
    """``(path, value)`` of every float written in ``message``, nested and repeated ones
    and map values included."""
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.type in (descriptor.FieldDescriptor.TYPE_FLOAT,
                          descriptor.FieldDescriptor.TYPE_DOUBLE):
            values = value if field.label == field.LABEL_REPEATED else [value]
            for item in values:
                yield path, item
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                for item in value.values():
                    if isinstance(item, float):
                        yield path, item
            elif field.label == field.LABEL_REPEATED:
                for item in value:
                    yield from _float_values(item, path + ".")
            else:
                yield from _float_values(value, path + ".")


def checkpoint_name(arch, n_epochs, suffix=".tlt"):
    """The file TAO classification train writes after epoch ``n_epochs`` (``suffix``: the
    release's checkpoint suffix, ``Profile.checkpoint_suffix``)."""
    return f"{arch}_{n_epochs:03d}{suffix}"


def last_checkpoint(spec, suffix):
    """``(file name, why)`` of the last checkpoint a training with ``spec`` writes, or
    ``(None, None)`` when the spec does not say (arch or n_epochs unset or invalid)."""
    model = spec.message.model_config
    epochs = spec.message.train_config.n_epochs
    if not spec.has("model_config.arch") or model.arch not in ARCHITECTURES:
        return None, None
    if not spec.has("train_config.n_epochs") or epochs < 1:
        return None, None
    why = (f"arch {model.arch}, n_epochs {epochs} in {spec.file} line "
           f"{spec.line('train_config.n_epochs')}")
    return checkpoint_name(model.arch, epochs, suffix), why


def checkpoint_problems(spec, profile):
    """The check of ``eval_config.model_path`` that needs no workspace: when it names a
    checkpoint of this spec's training (in any release's file name), it must be the last
    one ``n_epochs`` makes ``profile``'s release write (the preflight checks the whole path
    against the form, with the same ``last_checkpoint``)."""
    name, why = last_checkpoint(spec, profile.checkpoint_suffix)
    value, line = spec.field("eval_config.model_path")
    if name is None or not value:
        return []
    base = value.rstrip("/").rpartition("/")[2]
    releases = {}  # checkpoint suffix -> the releases whose training writes it
    for other in profiles.PROFILES.values():
        releases.setdefault(other.checkpoint_suffix, []).append(other.version)
    found = re.match(re.escape(spec.message.model_config.arch) + r"_\d+("
                     + "|".join(re.escape(suffix) for suffix in releases) + ")$", base)
    if found is None or base == name:
        return []
    if found.group(1) != profile.checkpoint_suffix:
        message = (f"{base} is a TAO {' and '.join(releases[found.group(1)])} checkpoint name; "
                   f"TAO {profile.version} training writes {name} ({why}); name {name}")
    else:
        message = (f"{base} is not the checkpoint training writes last ({name}: {why}); "
                   f"name {name}, or change n_epochs")
    return [Problem(spec.file, line, "eval_config.model_path", message)]


def image_size_error(text):
    """Why ``text`` is not a valid ``"C,H,W"`` image size, or None if it is."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(re.match(r"[0-9]+$", part) for part in parts):
        return f'"{text}" is not C,H,W (write three whole numbers, e.g. "3,224,224")'
    channels, height, width = (int(part) for part in parts)
    if channels not in (1, 3):
        return (f'"{text}" has {channels} channels (C must be 1 for grayscale or 3 for colour '
                "images)")
    if height < 16 or width < 16:
        return f'"{text}" is too small (H and W must be at least 16)'
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        return (f'"{text}" is too large (H and W must be at most {MAX_IMAGE_SIDE}; a '
                "classifier's input is usually 224 to 512)")
    return None


def parse_image_size(text):
    """``(C, H, W)`` from a valid ``"C,H,W"`` text (see ``image_size_error``)."""
    return tuple(int(part) for part in text.split(","))


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
