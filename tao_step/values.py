"""The Create Run values alone: pure checks, no files (the host runs them at compile time
on a form's defaults; preflight runs them first on the submitted values).

Each parameter is checked by its kind (``tao_step.form``): ``value_error`` dispatches on it.
Then the values are checked against each other: results folders that would hold inputs,
outputs that collide, paths too long for Linux. ``output_paths`` lists what a run writes,
for the claims.

Runs inside the TAO images (Python 3.6) and on the host: standard library only.
"""

import math
import posixpath
import re
import unicodedata

from tao_step import claims, form, outputs, profiles, shell, specs
from tao_step.form import KEY_ENV  # noqa: F401  (one definition: tao_step.form)

# The Create Run form of the default (3.0) build, in its order, and every release's.
PARAMETERS = form.NAMES
_EVERY = profiles.all_parameters()
ALL_PARAMETERS = tuple(p.name for p in _EVERY)
_BY_NAME = {p.name: p for p in _EVERY}


def _of_kind(*kinds, role=None):
    return tuple(p.name for p in _EVERY if p.kind in kinds and role in (None, p.role))


# What the steps read, which no output may replace: files (the specs first), then folders.
# What they write is tao_step.outputs.OUTPUTS.
INPUT_FILES = _of_kind(form.SPEC) + _of_kind(form.FILE_IN)
INPUT_FOLDERS = _of_kind(form.DOWNLOAD_DIR, form.FOLDER_IN)
# Paths relative to tao_mount_dir; every step mounts only the workspace, so they must stay
# inside it.
PATH_PARAMETERS = _of_kind(*form.PATH_KINDS)
# Whole numbers, with what they count and the largest value accepted: 1 to that many. The
# bounds are far above any sensible setting (a DGX node has 8 or 16 GPUs; TensorRT 7 and
# TAO's data loaders are used with batches of tens to hundreds) and far below what
# overflows TAO's int32 arguments or exhausts memory before any error is printed.
COUNTS = {name: _BY_NAME[name].rule for name in _of_kind(form.COUNT)}
CHOICES = {name: _BY_NAME[name].rule for name in _of_kind(form.CHOICE)}
SPEC_PARAMETERS = _of_kind(form.SPEC)
# Keras' flow_from_directory, which TAO training, evaluation and calibration use, reads these.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
# classification inference -d reads only these.
INFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# org/[team/]model:version; no part may start with "-", which ngc would read as an option.
NGC_NAME = re.compile(r"^(\w[\w.-]*)/(?:(\w[\w.-]*)/)?(\w[\w.-]*):(\w[\w.-]*)$", re.ASCII)
# A plain decimal number as TAO's float arguments and our gate read it: no sign, no spaces,
# no "inf"/"nan", no digits other than 0-9.
DECIMAL = re.compile(r"^(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", re.ASCII)
# The longest file or folder name Linux file systems take, in bytes (NAME_MAX).
NAME_MAX = 255
# What the re-run policy appends to an output's name: .previous-<UTC time>[-N].
KEPT_SUFFIX = len(".previous-20240101T000000Z-99")
# Path parameters that name files, not folders.
FILE_PARAMETERS = _of_kind(*form.FILE_KINDS)
# Top-level folders of the container that tao_mount_dir may not be (the workspace mounted
# there would hide the image's own files: Python, TAO, /opt/tao-kfp, /tmp/kfp-outputs), and
# those it may not lie in at all.
SYSTEM_FOLDERS = ("bin", "boot", "dev", "etc", "lib", "lib64", "opt", "proc", "root", "run",
                  "sbin", "sys", "tmp", "usr", "var")
SYSTEM_TREES = ("bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr")
# Values never quoted in a message: with --key-secret, api_key holds the key itself.
SECRET_PARAMETERS = _of_kind(form.KEY)
# Values passed on their own (not after tao_mount_dir/) to a command that parses options:
# one starting with "-" would be read as an option (api_key=--help, -o -v).
OPTION_VALUES = {name: _BY_NAME[name].rule[0] for name in _of_kind(form.KEY)}
# The one output node of every TAO classification model, which the TAO 3.0 converter's -o
# must name: the head is a softmax Dense layer named "predictions" for every arch, and the
# exporter registers "predictions/Softmax" (tao_tensorflow1_backend@d73dcfc
# makenet/model/model_builder.py add_dense_head, core/templates/*.py,
# makenet/export/classification_exporter.py set_input_output_node_names; TAO 5's
# gen_trt_engine has no such option and uses the same name, tao_deploy@a285787
# cv/classification_tf1/engine_builder.py).
OUTPUT_NODE = "predictions/Softmax"
# Linux refuses a path of PATH_MAX bytes or more (its terminating NUL counts), whatever the
# file system: open, rename and mkdir fail with ENAMETOOLONG.
PATH_MAX = 4096
# What the steps may add under a path: a re-run renames an output to
# <path>.previous-<UTC time> (KEPT_SUFFIX); TAO writes inside a folder (weights/<arch>_080.tlt,
# events/<TensorBoard file>, status.json, result.csv), for which one more name of at most
# NAME_MAX bytes is left.
FILE_ROOM = KEPT_SUFFIX
FOLDER_ROOM = 1 + NAME_MAX


def ngc_download_dir(dest, model_name):
    """Where ``ngc registry model download-version MODEL_NAME --dest DEST`` unpacks the model:
    ``DEST/<model>_v<version>``, or None if ``model_name`` is not org/[team/]model:version."""
    match = NGC_NAME.match(model_name)
    if not match:
        return None
    return posixpath.join(dest, f"{match.group(3)}_v{match.group(4)}")


def ngc_model_file(model_name):
    """The file NGC's TAO pretrained classification model holds, or None when unknown.

    ``nvidia/tao/pretrained_classification:resnet18`` holds ``resnet_18.hdf5``; the other
    ResNet and VGG versions follow the same pattern (``resnet50`` -> ``resnet_50.hdf5``).
    """
    match = NGC_NAME.match(model_name)
    if not match or match.group(3) != "pretrained_classification":
        return None
    family = re.match(r"(resnet|vgg)(\d+)$", match.group(4))
    return f"{family.group(1)}_{family.group(2)}.hdf5" if family else None


checkpoint_name = specs.checkpoint_name


def _whole_number(text):
    return int(text) if re.match(r"^[0-9]+$", text) else None


def _real_number(text):
    if not DECIMAL.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def hidden_character(text):
    """The first character that splits or disguises a log line (newline, tab, other
    control characters, bidirectional and zero-width formatting), as U+XXXX, or None."""
    for character in text:
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp"):
            return "U+%04X" % ord(character)
    return None


def _text_error(name, text):
    """What no value may hold, whatever its parameter: it would be rewritten before TAO
    sees it, or spoof the logs. Secret values are never quoted."""
    shown = "the value" if name in SECRET_PARAMETERS else f'"{text}"'
    if "{{" in text or "}}" in text:
        return (f"{name}: {shown} contains {{{{ or }}}}; Argo replaces {{{{...}}}} with its own "
                "values before a step sees it (remove the braces)")
    if "$(" in text:
        return (f"{name}: {shown} contains $(; Kubernetes replaces $(NAME) in step arguments "
                "with the container's variables, the TAO key's $(TAO_API_KEY) among them "
                "(remove it)")
    if "$$" in text:
        # third_party/forked/golang/expansion/expand.go: "$$" is the escaped "$".
        return (f"{name}: {shown} contains $$; Kubernetes turns $$ into $ in step arguments, "
                "so the step would see another value (remove it)")
    hidden = hidden_character(text)
    if hidden:
        return (f"{name}: the value contains the invisible character {hidden} (a newline, tab "
                "or text-direction control splits or disguises log lines); retype it without")
    return None


def _path_error(name, text):
    if not text.strip():
        return f"{name}: is empty (give a path relative to tao_mount_dir)"
    if text.endswith("/") and name in FILE_PARAMETERS:
        return (f"{name}: {text} ends with /, but it names a file (remove the /, e.g. "
                f"{_example(name)})")
    if text != text.strip():
        return f'{name}: "{text}" has spaces at its start or end (remove them)'
    if text.startswith("/"):
        return (f"{name}: {text} is absolute; give it relative to tao_mount_dir (every step "
                "prefixes it with tao_mount_dir/), e.g. " + _example(name))
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        return (f"{name}: {text} leads out of the workspace (only tao_mount_dir is mounted in "
                "the steps); give a path inside it without '..', e.g. " + _example(name))
    if normal == "." and _BY_NAME[name].kind != form.DOWNLOAD_DIR:
        return f"{name}: {text} names the workspace itself; give a path inside it, e.g. " + (
            _example(name))
    if normal.split("/")[0] == claims.FOLDER:
        return (f"{name}: {text} is inside {claims.FOLDER}, where runs record which paths "
                "they write; give a path outside it, e.g. " + _example(name))
    longest = max(normal.split("/"), key=lambda part: len(part.encode("utf-8")))
    if len(longest.encode("utf-8")) > NAME_MAX - KEPT_SUFFIX:
        return (f"{name}: the name {longest[:40]}... is {len(longest.encode('utf-8'))} bytes "
                f"long; file systems take {NAME_MAX} bytes a name, and a re-run appends "
                f"{KEPT_SUFFIX} to keep the earlier run's copy (shorten it to at most "
                f"{NAME_MAX - KEPT_SUFFIX} bytes)")
    return None


def _example(name):
    """The path a message about ``name`` suggests (tao_mount_dir's own rest too)."""
    parameter = _BY_NAME[name]
    return parameter.example if parameter.kind in form.PATH_KINDS else "tao-experiments/..."


def _count_error(name, parameter, text):
    what, most = parameter.rule
    number = _whole_number(text)
    if number is None:
        return f'{name}: "{text}" is not a whole number (enter {what}, e.g. {parameter.example})'
    if number < 1:
        return f"{name}: {number} must be at least 1 ({what})"
    if number > most:
        return f"{name}: {text} is more than {most} ({what}); enter at most {most}"
    return None


def _choice_error(name, parameter, text):
    if text not in parameter.rule:
        return f'{name}: "{text}" is not one of {", ".join(parameter.rule)} (enter one of them)'
    return None


def _decimal_error(name, parameter, text, low_included):
    """A decimal number from 0 to 1, 0 itself included or not; ``parameter.rule``: what it
    is and a note on its values, which the message repeats."""
    number = _real_number(text)
    interval = "[0, 1]" if low_included else "(0, 1]"
    if number is None or not (0 <= number if low_included else 0 < number) or number > 1:
        what, note = parameter.rule
        return (f'{name}: "{text}" is not a number in {interval} ({what}, e.g. '
                f"{parameter.example}; {note})")
    return None


def _threshold_error(name, parameter, text):
    return _decimal_error(name, parameter, text, low_included=False)


def _fraction_error(name, parameter, text):
    return _decimal_error(name, parameter, text, low_included=True)


def _dims_error(name, parameter, text):
    if re.search(r"\s", text):
        return (f'{name}: "{text}" contains spaces (write C,H,W without spaces, e.g. '
                f"{parameter.example})")
    error = specs.image_size_error(text)
    return f"{name}: {error}" if error else None


def _mount_error(name, parameter, text):
    example = parameter.example
    if not text.startswith("/"):
        return (f'{name}: "{text}" is not an absolute path (the folder where the workspace '
                f"is mounted in every step, e.g. {example})")
    if (posixpath.normpath(text) in ("/", "//") or text != posixpath.normpath(text)
            or text.startswith("//")):
        return (f'{name}: "{text}" cannot be the mount point (write a plain absolute folder '
                f"path without //, . or .. and not /, e.g. {example})")
    top = text.split("/")[1]
    if top in SYSTEM_FOLDERS and (text == "/" + top or top in SYSTEM_TREES):
        return (f'{name}: "{text}" is or lies in a system folder of the container; the '
                "workspace mounted there would hide what the steps run (use a folder of "
                f"its own, e.g. {example})")
    return _path_error(name, text[1:])


def _model_name_error(name, parameter, text):
    if not NGC_NAME.match(text):
        return (f'{name}: "{text}" is not an NGC model name (write org/team/name:version, '
                f"e.g. {parameter.example})")
    return None


def _key_error(name, parameter, text):
    if text.startswith("-"):
        return (f"{name}: the value starts with \"-\", so {parameter.rule[0]} would read it "
                "as an option of its own; enter the value without the leading \"-\"")
    if not text or re.search(r"\s", text):
        return (f"{name}: {'is empty' if not text else 'contains spaces'} (the TAO model "
                f"key passed as -k; {parameter.example} for NGC's public TAO models)")
    return None


def _output_node_error(name, parameter, text):
    if text != OUTPUT_NODE:
        return (f'{name}: "{text}" is not the output node of a TAO classification model; '
                f"enter {OUTPUT_NODE} (the only output TAO's classification export has; the "
                "converter fails on any other name)")
    return None


def _path_kind_error(name, parameter, text):
    return _path_error(name, text)


# The check of each kind of value (tao_step.form): (name, parameter, text) -> message or None.
KIND_CHECKS = dict(
    [(kind, _path_kind_error) for kind in form.PATH_KINDS]
    + [(form.COUNT, _count_error), (form.CHOICE, _choice_error),
       (form.THRESHOLD, _threshold_error), (form.FRACTION, _fraction_error),
       (form.DIMS, _dims_error), (form.MOUNT, _mount_error),
       (form.MODEL_NAME, _model_name_error), (form.KEY, _key_error),
       (form.OUTPUT_NODE, _output_node_error)])


def value_error(name, text):
    """Why the Create Run value ``text`` of parameter ``name`` is invalid, or None: what no
    value may hold, then the check of the parameter's kind."""
    error = _text_error(name, text)
    if error or name not in _BY_NAME:
        return error
    parameter = _BY_NAME[name]
    return KIND_CHECKS[parameter.kind](name, parameter, text)

# A step moves an earlier run's results folder aside before it runs (the re-run policy):
# none may hold what the user gives the run, or another results folder.
RESULTS_FOLDERS = _of_kind(form.FOLDER_OUT)
# What the user gives the run, which no results folder may hold: inputs no step writes
# into first, then those it does (test-infer writes result.csv among the images).
INPUTS = tuple(p.name for p in _EVERY if p.role == form.GIVEN and not p.writer) + tuple(
    p.name for p in _EVERY if p.role == form.GIVEN and p.writer)


def _moved_input(name, folder_name):
    """Whether ``_moved_inputs`` checks that ``name`` lies outside results folder
    ``folder_name``."""
    return folder_name in RESULTS_FOLDERS and name in (
        INPUTS + tuple(n for n in RESULTS_FOLDERS if n != folder_name))


def _moved_inputs(values):
    problems = []
    for folder_name in RESULTS_FOLDERS:
        folder = values.get(folder_name, "")
        if value_error(folder_name, folder):
            continue
        folder = posixpath.normpath(folder)
        for name in INPUTS + tuple(n for n in RESULTS_FOLDERS if n != folder_name):
            path = values.get(name, "")
            if value_error(name, path):
                continue
            path = posixpath.normpath(path)
            if path == folder or path.startswith(folder + "/"):
                problems.append(
                    f"{folder_name}: {folder} holds {name} ({path}); the step moves an earlier "
                    f"run's {folder} aside before it runs, so give it a folder of its own "
                    f"(e.g. {_example(folder_name)})")
    return problems


def outputs_of(profile):
    """The outputs of ``profile``'s build (tao_step.outputs), with the step writing each."""
    return outputs.of_release(profile, parameters_of(profile))


def output_paths(values, profile):
    """``(parameter, step, workspace-relative path)`` of everything a run of ``profile``'s
    build writes, for the values that are valid: each step's outputs (``outputs_of``) and
    the folder download-model unpacks the model into."""
    found = []
    for name, _, step, suffix in outputs_of(profile):
        text = values.get(name)
        if text is not None and value_error(name, text) is None:
            found.append((name, step, posixpath.normpath(text) + suffix))
    model, dest = values.get("pretrained_model_name"), values.get("pretrained_model_dir")
    if (model is not None and dest is not None and value_error("pretrained_model_name", model)
            is None and value_error("pretrained_model_dir", dest) is None):
        folder = posixpath.normpath(ngc_download_dir(posixpath.normpath(dest), model))
        found.append(("pretrained_model_dir", "download-model", folder))
    return found


def _inside_path(path, folder):
    return path.startswith(folder + "/")


def _collision(name, step, path, written, values):
    """Why output ``path`` of ``name`` collides with an input or another output (an equal
    one earlier in ``written``, or a folder holding it), or None."""
    for other in INPUT_FILES + INPUT_FOLDERS:
        text = values.get(other)
        if text is None or value_error(other, text):
            continue
        other_path = posixpath.normpath(text)
        if path == other_path:
            return (f"{name}: {path} is {other}, which the run reads; {step} would replace it "
                    f"(give {name} a path of its own)")
        if other in INPUT_FILES and _inside_path(path, other_path):
            return (f"{name}: {path} lies inside {other} ({other_path}), which is a file "
                    f"(give {name} a path of its own)")
    earlier = True
    for other, other_step, other_path in written:
        if other == name and other_path == path:
            earlier = False
            continue
        if _moved_input(name, other):
            continue  # _moved_inputs reports it
        if path == other_path and earlier:
            return (f"{name}: {path} is also {other}, which {other_step} writes; {step} and "
                    f"{other_step} would replace each other's file (give {name} a path of "
                    "its own)")
        if _inside_path(path, other_path):
            return (f"{name}: {path} lies inside {other} ({other_path}), which {other_step} "
                    f"writes as a whole and moves aside on a re-run (give {name} a path "
                    "outside it)")
    return None


def _colliding_outputs(values, profile):
    written = output_paths(values, profile)
    problems = []
    for name, step, path in written:
        problem = _collision(name, step, path, written, values)
        if problem:
            problems.append(problem)
    return problems


def _too_long_paths(values):
    """Paths the system would refuse, with the room the steps need under them (PATH_MAX):
    tao_mount_dir/<value> plus FILE_ROOM for a file, FOLDER_ROOM for a folder."""
    mount = values.get("tao_mount_dir", "")
    if value_error("tao_mount_dir", mount):
        return []
    most = PATH_MAX - 1  # bytes, without the NUL
    size = len(mount.encode("utf-8"))
    if size + 1 + FOLDER_ROOM > most:
        return [f"tao_mount_dir: {mount[:40]}... is {size} bytes long; Linux takes paths of at "
                f"most {most} bytes, and every path of the run is tao_mount_dir/<value> with up "
                f"to {FOLDER_ROOM} bytes more that the steps add (shorten it)"]
    problems = []
    for name in PATH_PARAMETERS:
        text = values.get(name)
        if text is None or value_error(name, text):
            continue
        room = FILE_ROOM if name in FILE_PARAMETERS else FOLDER_ROOM
        size = len(posixpath.join(mount, posixpath.normpath(text)).encode("utf-8"))
        if size + room > most:
            what = (f"a re-run's .previous-<UTC time> copy adds {room}" if room == FILE_ROOM
                    else f"the files TAO writes in it, or a re-run's .previous-<UTC time> "
                    f"copy, add up to {room}")
            problems.append(
                f"{name}: tao_mount_dir/{name} is {size} bytes long; Linux takes paths of at "
                f"most {most} bytes and {what} (shorten {name} or tao_mount_dir by at least "
                f"{size + room - most} bytes)")
    return problems


def parameters_of(profile):
    """The Create Run parameter names of a release's build (``PARAMETERS`` for 3.0)."""
    return tuple(p.name for p in form.parameters_of(profile))


def bash_read_problem(name, text, bash_read):
    """Why TAO's wrapper would change ``text`` (tao_step.shell), for the parameters in
    ``bash_read``, or None."""
    if name not in bash_read:
        return None
    return shell.bash_problem(name, text, secret=name in SECRET_PARAMETERS)


def validate_values(values, profile=profiles.TAO_3_0, bash_read=None):
    """Problems with the Create Run values alone, one message per problem: pure, no files.

    ``values`` maps parameter names to their text. Every name of ``profile``'s form must be
    present; names outside it are reported too. ``bash_read`` names the parameters whose
    values reach a TAO command wrapper, which re-reads them with bash (the pipeline derives
    them from its steps); None: all of them.
    """
    problems = []
    names = parameters_of(profile)
    bash_read = names if bash_read is None else bash_read
    for name in sorted(set(values) - set(names)):
        problems.append(f"{name}: not a parameter of this pipeline (check the spelling; "
                        f"known: {', '.join(names)})")
    for name in names:
        if name not in values:
            problems.append(f"{name}: no value given (every Create Run parameter needs one)")
            continue
        if values[name] == "" and name in profile.optional_parameters:
            continue
        error = value_error(name, values[name]) or bash_read_problem(name, values[name], bash_read)
        if error:
            problems.append(error)
    # The checks between values use only those TAO would receive as they are.
    values = {name: text for name, text in values.items()
              if bash_read_problem(name, text, bash_read) is None}
    for name, suffix, why in profile.required_suffixes:
        value = values.get(name, "")
        if value and not value.endswith(suffix) and value_error(name, value) is None:
            problems.append(f"{name}: {value} must end in {suffix} ({why}); name it "
                            f"{posixpath.splitext(value)[0]}{suffix}")
    problems += _moved_inputs(values)
    problems += _colliding_outputs(values, profile)
    problems += _too_long_paths(values)
    batch = _whole_number(values.get("convert_trt_batch_size", ""))
    largest = _whole_number(values.get("convert_trt_max_batch_size", ""))
    if batch and largest and batch > largest:
        problems.append(f"convert_trt_batch_size: {batch} is larger than "
                        f"convert_trt_max_batch_size {largest} (the engine cannot take batches "
                        "above its maximum; lower it or raise convert_trt_max_batch_size)")
    return problems


