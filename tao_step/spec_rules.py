"""The checks of a parsed spec that its schema cannot express: required fields, allowed
strings, ranges, absolute paths, sizes, and the checkpoint evaluate reads.
"""

import difflib
import math
import re

from google.protobuf import descriptor

from tao_step import profiles
from tao_step.spec_schema import (
    ARCH_LAYERS,
    ARCHITECTURES,
    LR_SCHEDULES,
    OPTIMIZERS,
    PATH_FIELDS,
    PREPROCESS_MODES,
    REGULARIZERS,
)
from tao_step.spec_text import Problem


def _number(value):
    return f"{value:g}"


def semantic_problems(spec):
    """What the proto cannot express: required fields, allowed strings, ranges, paths."""
    problems = []

    def report(path, message):
        problems.append(Problem(spec.file, spec.where(path), path, message))

    for rules in (_required, _model_rules, _optimizer_rules, _train_rules, _regularizer_rules,
                  _schedule_rules, _eval_rules, _path_rules, _bound_rules):
        rules(spec, report)
    reported = {problem.field for problem in problems}
    for path, value in _float_values(spec.message):
        if spec.has(path) and not math.isfinite(value) and path not in reported:
            report(path, f"{_number(value)} is not a finite number (a 32-bit float holds "
                         "about 3.4e38 at most; write an ordinary number)")
    return sorted(problems, key=lambda problem: problem.line or 0)


def _one_of(choices, quote=""):
    return ", ".join(quote + choice + quote for choice in choices)


def _required(spec, report):
    for path, hint in spec.schema.required:
        parent = path.rpartition(".")[0]
        # A missing block is one problem, not one per field it should hold.
        if not spec.has(path) and (not parent or spec.has(parent)):
            report(path, f"missing (required: {hint})")


def _model_rules(spec, report):
    model = spec.message.model_config
    if spec.has("model_config.arch") and model.arch not in ARCHITECTURES:
        close = difflib.get_close_matches(model.arch, ARCHITECTURES, n=1)
        hint = f"did you mean {close[0]}?" if close else "use one of " + _one_of(ARCHITECTURES)
        report("model_config.arch", f'"{model.arch}" is not a TAO classification architecture '
                                    f"({hint})")
    layers = ARCH_LAYERS.get(model.arch)
    if layers and model.n_layers not in layers:
        wrong = (f"{model.n_layers} is not a depth TAO builds"
                 if spec.has("model_config.n_layers") else "missing")
        report("model_config.n_layers", f"{wrong} for {model.arch} (set n_layers to one of "
                                        f"{_one_of(str(n) for n in layers)})")
    if spec.has("model_config.input_image_size"):
        error = image_size_error(model.input_image_size)
        if error:
            report("model_config.input_image_size", error)
    if spec.has("model_config.dropout") and not 0 <= model.dropout < 1:
        report("model_config.dropout", f"{_number(model.dropout)} is not in [0, 1) "
                                       "(a dropout rate such as 0.1)")


def _chosen(spec, report, block, names, what):
    """The ``names`` set in train_config's one-of ``block``, reporting one that sets none;
    nothing when the spec has no such block."""
    if not spec.has("train_config." + block):
        return []
    message = getattr(spec.message.train_config, block)
    chosen = [name for name in names if message.HasField(name)]
    if not chosen:
        report("train_config." + block, "names no %s (add one of %s)" % (
            what, _one_of(name + " { ... }" for name in names)))
    return chosen


def _optimizer_rules(spec, report):
    train = spec.message.train_config
    for name in _chosen(spec, report, "optimizer", OPTIMIZERS, "optimizer"):
        path = f"train_config.optimizer.{name}.lr"
        settings = getattr(train.optimizer, name)
        if spec.has(path) and not settings.lr > 0:
            report(path, f"{_number(settings.lr)} must be > 0 (a learning rate such as 0.01)")


def _train_rules(spec, report):
    train = spec.message.train_config
    evaluation = spec.message.eval_config
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
               f"{_one_of(PREPROCESS_MODES)}; NGC's pretrained models expect \"caffe\")")
    if spec.has("train_config.label_smoothing") and not 0 <= train.label_smoothing < 1:
        report("train_config.label_smoothing", f"{_number(train.label_smoothing)} is not in "
                                               "[0, 1) (e.g. 0.1, or 0.0 for none)")
    if spec.has("train_config.mixup_alpha") and train.mixup_alpha < 0:
        report("train_config.mixup_alpha", f"{_number(train.mixup_alpha)} must not be negative "
                                           "(0 disables mixup)")


def _regularizer_rules(spec, report):
    if not spec.has("train_config.reg_config"):
        return
    regularizer = spec.message.train_config.reg_config
    if not spec.has("train_config.reg_config.type"):
        report("train_config.reg_config.type",
               f"missing (use one of {_one_of(REGULARIZERS, quote=chr(34))})")
    elif regularizer.type not in REGULARIZERS:
        report("train_config.reg_config.type", f'"{regularizer.type}" is not a regularizer '
               f"(use one of {_one_of(REGULARIZERS, quote=chr(34))})")
    written = spec.has("train_config.reg_config.weight_decay")
    # A missing weight_decay is already reported where the schema requires it.
    decays = regularizer.type in ("L1", "L2") or spec.schema.positive_decay
    if decays and not 0 < regularizer.weight_decay < 1 and (
            written or "train_config.reg_config.weight_decay" not in dict(
                spec.schema.required)):
        report("train_config.reg_config.weight_decay",
               f"{_number(regularizer.weight_decay) if written else 'missing, so 0,'} is not "
               "in (0, 1) (a small factor such as 0.00005)")


def _schedule_rules(spec, report):
    train = spec.message.train_config
    chosen = _chosen(spec, report, "lr_config", LR_SCHEDULES, "schedule")
    for name in chosen:
        path = f"train_config.lr_config.{name}.learning_rate"
        rate = getattr(train.lr_config, name).learning_rate
        if not rate > 0:
            wrong = _number(rate) if spec.has(path) else "missing, so 0,"
            report(path, f"{wrong} must be > 0 (the base learning rate, e.g. 0.006)")
    if "step" in chosen and train.lr_config.step.step_size < 1:
        report("train_config.lr_config.step.step_size",
               "must be at least 1 (epochs between learning-rate drops, e.g. 10)")


def _eval_rules(spec, report):
    evaluation = spec.message.eval_config
    if spec.has("eval_config.top_k") and evaluation.top_k < 1:
        report("eval_config.top_k", f"{evaluation.top_k} must be at least 1 (e.g. 3: evaluate "
                                    "reports top-k accuracy)")
    if spec.has("eval_config.batch_size") and evaluation.batch_size < 1:
        report("eval_config.batch_size", f"{evaluation.batch_size} must be at least 1")


def _path_rules(spec, report):
    for path in PATH_FIELDS:
        value, _ = spec.field(path)
        if spec.has(path) and not value:
            report(path, "is empty (write the absolute path inside the container)")
        elif value and not value.startswith("/"):
            report(path, f'"{value}" is relative: TAO would resolve it against its working '
                         "directory (write the absolute path inside the mounted workspace)")


def _bound_rules(spec, report):
    for path, most, what in UPPER_BOUNDS:
        value, _ = spec.field(path) if _declares(spec, path) else (None, None)
        if spec.has(path) and isinstance(value, int) and value > most:
            report(path, f"{value} is more than {most} ({what}); TAO would run out of memory "
                         f"or time before saying why (use at most {most})")


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
