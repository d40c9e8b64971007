"""Preflight: check a run's Create Run values and its workspace before any TAO step runs.

``python3 -m tao_step preflight --workspace WS [--mount-dir DIR] [--run NAME --run-uid UID]
[--bash-read NAME,...] [--key-from-env] --param NAME=VALUE ...``

``--param`` is given once per Create Run parameter (every one the pipeline has, values as
typed in the form). ``--bash-read`` names those whose values reach a TAO command wrapper,
which re-reads them with bash (``tao_step.shell``); they may hold only characters bash
passes unchanged. The pipeline derives the list from its steps' command lines; without it,
every value is held to that rule. ``--mount-dir`` is the path the spec files' absolute
paths were written against; it defaults to the ``tao_mount_dir`` value (in the pipeline,
WS itself), and differs from it only in tests. A dry run mounts a local folder at
``tao_mount_dir`` and maps WS onto it, so the specs are read as they are.

Every problem is printed as one line naming the parameter or the spec file and line, with
what to change; warnings (outputs a step would replace or refuse to overwrite) follow,
prefixed ``warning:``. Exit status: 0 when there is no problem, 1 when there is, 2 on a
usage error. It only reads the workspace (listings and spec files), so it takes seconds.

With ``--run``/``--run-uid`` (the pipeline passes its workflow name and uid) and no problem,
it finally claims every path the run writes (``tao_step.claims``): a run whose outputs
overlap those of a run still holding its claim is refused, naming that run. In
``--key-secret`` builds the key is in ``$TAO_API_KEY`` and ``--key-from-env`` makes it the
api_key value (never an argument): it is checked like one, a value holding it is refused,
and the key is masked in everything printed.

``validate_values`` (the form values alone) is pure so the host can run it at compile time
on the defaults; ``Preflight(...).run()`` looks at the workspace.
Runs inside the TAO 3.0 image (Python 3.6) and on the host: standard library and protobuf.
"""

import argparse
import math
import os
import posixpath
import re
import shlex
import sys
import unicodedata

from tao_step import claims, outputs, profiles, shell, specs

# The Create Run form, in its order (original-interface.md), plus the accuracy gate.
PARAMETERS = (
    "pretrained_model_name",
    "pretrained_model_dir",
    "train_classification_data",
    "train_classification_spec",
    "train_classification_output",
    "train_num_gpus",
    "prune_model_input_file",
    "prune_model_output_file",
    "prune_equalization_criterion",
    "prune_threshold",
    "retrain_classification_spec",
    "retrain_classification_output",
    "test_infer_model_input_file",
    "test_infer_image_path",
    "test_infer_class_map",
    "test_infer_batch_size",
    "export_model_input_file",
    "export_model_output_file",
    "calibrate_classification_spec",
    "calibrate_max_batches",
    "calibrate_output_file",
    "export_int8_cache_file",
    "export_int8_batches",
    "export_int8_model_output_file",
    "convert_trt_output_file",
    "convert_trt_output_layer",
    "convert_trt_dims",
    "convert_trt_input_type",
    "convert_trt_max_batch_size",
    "convert_trt_precision",
    "convert_trt_batch_size",
    "tao_mount_dir",
    "api_key",
    "min_accuracy",
)

# What the steps read, which no output may replace: files, then folders. What they write is
# tao_step.outputs.OUTPUTS.
INPUT_FILES = ("train_classification_spec", "retrain_classification_spec",
               "calibrate_classification_spec", "prune_model_input_file",
               "test_infer_model_input_file", "test_infer_class_map", "export_model_input_file")
INPUT_FOLDERS = ("pretrained_model_dir", "train_classification_data", "test_infer_image_path")
# Every release's parameters, in form order.
ALL_PARAMETERS = PARAMETERS + tuple(
    name for profile in profiles.PROFILES.values() for name, _, _ in profile.added_parameters)
# Paths relative to tao_mount_dir; every step mounts only the workspace, so they must stay
# inside it.
PATH_PARAMETERS = tuple(
    name for name in ALL_PARAMETERS if name in INPUT_FILES + INPUT_FOLDERS
    or name in (output.parameter for output in outputs.OUTPUTS))
# Whole numbers, with what they count and the largest value accepted: 1 to that many. The
# bounds are far above any sensible setting (a DGX node has 8 or 16 GPUs; TensorRT 7 and
# TAO's data loaders are used with batches of tens to hundreds) and far below what
# overflows TAO's int32 arguments or exhausts memory before any error is printed.
COUNTS = {
    "train_num_gpus": ("GPUs for training", 16),
    "test_infer_batch_size": ("images per inference batch", 4096),
    "calibrate_max_batches": ("batches of training images to calibrate on", 100000),
    "export_int8_batches": ("calibration batches for the INT8 export", 100000),
    "convert_trt_max_batch_size": ("the engine's largest batch", 4096),
    "convert_trt_batch_size": ("the calibration batch of the engine build", 4096),
}
CHOICES = {
    "prune_equalization_criterion": ("union", "intersection", "arithmetic_mean",
                                     "geometric_mean"),
    "convert_trt_precision": ("fp32", "fp16", "int8"),
    "convert_trt_input_type": ("nchw", "nhwc", "nc"),
}
SPEC_PARAMETERS = (
    "train_classification_spec",
    "retrain_classification_spec",
    "calibrate_classification_spec",
)
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
# Where a --key-secret build puts the TAO key in the steps that use it (preflight included).
KEY_ENV = "TAO_API_KEY"
# Path parameters that name files, not folders.
FILE_PARAMETERS = INPUT_FILES + tuple(
    output.parameter for output in outputs.OUTPUTS
    if output.kind == outputs.FILE and not output.suffix)
# Top-level folders of the container that tao_mount_dir may not be (the workspace mounted
# there would hide the image's own files: Python, TAO, /opt/tao-kfp, /tmp/kfp-outputs), and
# those it may not lie in at all.
SYSTEM_FOLDERS = ("bin", "boot", "dev", "etc", "lib", "lib64", "opt", "proc", "root", "run",
                  "sbin", "sys", "tmp", "usr", "var")
SYSTEM_TREES = ("bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr")
# Values never quoted in a message: with --key-secret, api_key holds the key itself.
SECRET_PARAMETERS = ("api_key",)
# Values passed on their own (not after tao_mount_dir/) to a command that parses options:
# one starting with "-" would be read as an option (api_key=--help, -o -v).
OPTION_VALUES = {
    "api_key": "TAO (-k)",
}
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


def _hidden_character(text):
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
    hidden = _hidden_character(text)
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
    if normal == "." and name != "pretrained_model_dir":
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
    examples = {
        "pretrained_model_dir": "models",
        "train_classification_output": "tao-experiments/output",
        "retrain_classification_output": "tao-experiments/output-retrain",
        "convert_trt_results_dir": "tao-experiments/export/gen_trt_engine",
        "train_classification_spec": "specs/classification_spec.cfg",
        "retrain_classification_spec": "specs/classification_retrain_spec.cfg",
        "calibrate_classification_spec": "specs/classification_retrain_spec.cfg",
        "test_infer_image_path": "tao-experiments/data/split/test/person",
    }
    return examples.get(name, "tao-experiments/...")


def value_error(name, text):
    """Why the Create Run value ``text`` of parameter ``name`` is invalid, or None."""
    error = _text_error(name, text)
    if error:
        return error
    if name in PATH_PARAMETERS:
        return _path_error(name, text)
    if text.startswith("-") and name in OPTION_VALUES:
        shown = "the value" if name in SECRET_PARAMETERS else f'"{text}"'
        return (f"{name}: {shown} starts with \"-\", so {OPTION_VALUES[name]} would read it as "
                "an option of its own; enter the value without the leading \"-\"")
    if name in COUNTS:
        what, most = COUNTS[name]
        number = _whole_number(text)
        if number is None:
            return f'{name}: "{text}" is not a whole number (enter {what}, e.g. 1)'
        if number < 1:
            return f"{name}: {number} must be at least 1 ({what})"
        if number > most:
            return f"{name}: {text} is more than {most} ({what}); enter at most {most}"
        return None
    if name in CHOICES:
        if text not in CHOICES[name]:
            return f'{name}: "{text}" is not one of {", ".join(CHOICES[name])} (enter one of them)'
        return None
    if name == "prune_threshold":
        number = _real_number(text)
        if number is None or not 0 < number <= 1:
            return (f'{name}: "{text}" is not a number in (0, 1] (the pruning threshold, e.g. '
                    "0.6; higher prunes more)")
        return None
    if name == "min_accuracy":
        number = _real_number(text)
        if number is None or not 0 <= number <= 1:
            return (f'{name}: "{text}" is not a number in [0, 1] (the accuracy the retrained '
                    "model must reach, as a fraction, e.g. 0.8; 0 accepts any)")
        return None
    if name == "convert_trt_dims":
        if re.search(r"\s", text):
            return f'{name}: "{text}" contains spaces (write C,H,W without spaces, e.g. 3,224,224)'
        error = specs.image_size_error(text)
        return f"{name}: {error}" if error else None
    if name == "tao_mount_dir":
        if not text.startswith("/"):
            return (f'{name}: "{text}" is not an absolute path (the folder where the workspace '
                    "is mounted in every step, e.g. /mnt/workspace)")
        if (posixpath.normpath(text) in ("/", "//") or text != posixpath.normpath(text)
                or text.startswith("//")):
            return (f'{name}: "{text}" cannot be the mount point (write a plain absolute folder '
                    "path without //, . or .. and not /, e.g. /mnt/workspace)")
        top = text.split("/")[1]
        if top in SYSTEM_FOLDERS and (text == "/" + top or top in SYSTEM_TREES):
            return (f'{name}: "{text}" is or lies in a system folder of the container; the '
                    "workspace mounted there would hide what the steps run (use a folder of "
                    "its own, e.g. /mnt/workspace)")
        return _path_error(name, text[1:])
    if name == "pretrained_model_name":
        if not NGC_NAME.match(text):
            return (f'{name}: "{text}" is not an NGC model name (write org/team/name:version, '
                    "e.g. nvidia/tao/pretrained_classification:resnet18)")
        return None
    if name == "api_key":
        if not text or re.search(r"\s", text):
            return (f"{name}: {'is empty' if not text else 'contains spaces'} (the TAO model "
                    "key passed as -k; nvidia_tlt for NGC's public TAO models)")
        return None
    if name == "convert_trt_output_layer":
        if text != OUTPUT_NODE:
            return (f'{name}: "{text}" is not the output node of a TAO classification model; '
                    f"enter {OUTPUT_NODE} (the only output TAO's classification export has; the "
                    "converter fails on any other name)")
        return None
    return None


# A step moves an earlier run's results folder aside before it runs (the re-run policy):
# none may hold what the user gives the run, or another results folder.
RESULTS_FOLDERS = tuple(output.parameter for output in outputs.OUTPUTS
                        if output.kind == outputs.FOLDER)
INPUTS = ("pretrained_model_dir", "train_classification_data", "train_classification_spec",
          "retrain_classification_spec", "calibrate_classification_spec",
          "test_infer_image_path")


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
    return profiles.form_names(profile, PARAMETERS)


def _bash_problem(name, text, bash_read):
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
        error = value_error(name, values[name]) or _bash_problem(name, values[name], bash_read)
        if error:
            problems.append(error)
    # The checks between values use only those TAO would receive as they are.
    values = {name: text for name, text in values.items()
              if _bash_problem(name, text, bash_read) is None}
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


def _inside(path, root):
    """``path`` relative to ``root`` when it lies inside it (both absolute), else None."""
    path = posixpath.normpath(path)
    root = posixpath.normpath(root)
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _images(folder, extensions, limit):
    """Up to ``limit`` image paths under ``folder`` (recursive, extension case-insensitive)."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in extensions:
                found.append(os.path.join(directory, name))
                if len(found) >= limit:
                    return found
    return found


class _Split:
    """A dataset split on disk: its class folders, or why it cannot be read; class folders
    that are links leaving ``root`` (the workspace) and names that would spoof a log line."""

    def __init__(self, path, root):
        self.path = path
        self.error = None
        self.classes = []
        self.empty_classes = []
        self.links_out = []  # (class folder, link target)
        self.hidden_names = []
        if not os.path.exists(path):
            self.error = "does not exist"
            return
        if not os.path.isdir(path):
            self.error = "is a file, not a folder of class folders"
            return
        entries = sorted(os.listdir(path))
        for entry in entries:
            full = os.path.join(path, entry)
            if os.path.islink(full) and _inside(os.path.realpath(full), root) is None:
                self.links_out.append((entry, os.readlink(full)))
            if _hidden_character(entry):
                self.hidden_names.append(entry)
        self.classes = [entry for entry in entries if os.path.isdir(os.path.join(path, entry))
                        and entry not in self.hidden_names
                        and entry not in dict(self.links_out)]
        self.empty_classes = [name for name in self.classes
                              if not _images(os.path.join(path, name), IMAGE_EXTENSIONS, 1)]

    def count_images(self, limit):
        """How many images the split holds, counting no further than ``limit``."""
        total = 0
        for name in self.classes:
            total += len(_images(os.path.join(self.path, name), IMAGE_EXTENSIONS,
                                 limit - total))
            if total >= limit:
                break
        return total


def _differences(first, second):
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    return only_first, only_second


def _names(names, most=5):
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class Preflight:
    """One preflight of a workspace; after ``run()``: ``problems``, ``warnings``, the parsed
    ``specs`` and the training ``classes`` (for the summary)."""

    def __init__(self, workspace, values, mount_dir=None, profile=profiles.TAO_3_0,
                 bash_read=None):
        self.workspace = os.path.abspath(workspace)
        self.real_workspace = os.path.realpath(self.workspace)
        self.profile = profile
        names = parameters_of(profile)
        bash_read = names if bash_read is None else bash_read
        # Only values that pass validate_values are used to look at the workspace.
        self.ok = {name: values[name] for name in names
                   if name in values and value_error(name, values[name]) is None
                   and _bash_problem(name, values[name], bash_read) is None}
        # The specs name paths under tao_mount_dir; in the pipeline that is the workspace.
        self.mount = posixpath.normpath(
            mount_dir or self.ok.get("tao_mount_dir") or self.workspace)
        self.problems = []
        self.warnings = []
        self.specs = {}  # spec parameter -> specs.Spec, when it parsed
        self.classes = None
        self._splits = {}
        self._compared = set()  # (train split, other split) already compared

    # -- helpers ---------------------------------------------------------------------------
    def _on_disk(self, relative):
        return os.path.join(self.workspace, *relative.split("/"))

    def _spec_problem(self, spec, path, message):
        line = spec.where(path)
        where = f"{spec.file}:{line}" if line else spec.file
        self.problems.append(f"{where}: {path}: {message}")

    def _spec_target(self, spec, path):
        """The workspace-relative path a spec field names, or None (unset or outside)."""
        value, _ = spec.field(path)
        if not value.startswith("/"):
            return None
        return _inside(value, self.mount)

    def _split(self, relative):
        if relative not in self._splits:
            self._splits[relative] = _Split(self._on_disk(relative), self.real_workspace)
        return self._splits[relative]

    def _link_out(self, relative):
        """The first part of ``relative`` that is a symbolic link leading out of the
        workspace, as ``(part, target)``, or None. Inside a step such a link points at the
        container's own file system (or nowhere), not at what it shows on the node."""
        parts = relative.split("/")
        for count in range(1, len(parts) + 1):
            part = "/".join(parts[:count])
            full = self._on_disk(part)
            if not os.path.lexists(full):
                return None
            if os.path.islink(full) and _inside(os.path.realpath(full),
                                                 self.real_workspace) is None:
                return part, os.readlink(full)
        return None

    def distinct_specs(self):
        """Each parsed spec file once (the retrain and calibrate specs are often one)."""
        seen = set()
        for name in SPEC_PARAMETERS:
            spec = self.specs.get(name)
            if spec is not None and spec.file not in seen:
                seen.add(spec.file)
                yield spec

    # -- checks ----------------------------------------------------------------------------
    def run(self):
        if not os.path.isdir(self.workspace):
            self.problems.append(f"--workspace {self.workspace}: no such folder (mount the "
                                 "workspace volume there)")
            return self
        self._load_specs()
        self._check_spec_paths()
        self._check_datasets()
        self._check_test_images()
        self._check_pretrained_model()
        self._check_first_training()
        self._check_retraining()
        self._check_calibration()
        self._check_links()
        self._check_outputs()
        self._find_warnings()
        return self

    def _check_links(self):
        for name in PATH_PARAMETERS:
            relative = self.ok.get(name)
            if relative is None:
                continue
            found = self._link_out(posixpath.normpath(relative))
            if found:
                part, target = found
                self.problems.append(
                    f"{name}: {part} is a symbolic link to {target}, outside tao_mount_dir; "
                    "the steps mount only the workspace, so they would read or write "
                    "somewhere else (replace the link with the folder itself)")

    def _check_outputs(self):
        """Each output's parent must be a folder, or be creatable as one."""
        for name, step, path in output_paths(self.ok, self.profile):
            parts = path.split("/")
            for count in range(1, len(parts)):
                parent = "/".join(parts[:count])
                full = self._on_disk(parent)
                if not os.path.exists(full):
                    break
                if not os.path.isdir(full):
                    self.problems.append(
                        f"{name}: {parent} is a file, so {step} cannot write {path} (give "
                        f"{name} a path whose folders are folders)")
                    break

    def _load_specs(self):
        loaded = {}
        for name in SPEC_PARAMETERS:
            relative = self.ok.get(name)
            if relative is None:
                continue
            if relative in loaded:
                self.specs[name] = loaded[relative]
                continue
            path = self._on_disk(relative)
            if not os.path.exists(path):
                self.problems.append(f"{name}: {relative} does not exist in the workspace "
                                     f"({path}); put the spec file there or fix {name}")
                loaded[relative] = None
                continue
            spec, problems = specs.check_spec_file(path, name=relative,
                                                   schema=self.profile.spec_schema)
            self.problems.extend(str(problem) for problem in problems)
            loaded[relative] = self.specs[name] = spec

    def _check_spec_paths(self):
        for spec in self.distinct_specs():
            for path in specs.PATH_FIELDS:
                value, _ = spec.field(path)
                if _hidden_character(value):
                    self._spec_problem(spec, path, f"{ascii(value)} contains the invisible "
                                       f"character {_hidden_character(value)} (retype the path "
                                       "without it)")
                elif value.startswith("/") and _inside(value, self.mount) is None:
                    self._spec_problem(spec, path, f"{value} is outside {self.mount} "
                                       "(tao_mount_dir), the only folder the steps mount; "
                                       + self._suggest_inside(value))
                elif value.startswith("/") and self._link_out(_inside(value, self.mount)):
                    part, target = self._link_out(_inside(value, self.mount))
                    self._spec_problem(spec, path, f"{posixpath.join(self.mount, part)} is a "
                                       f"symbolic link to {target}, outside tao_mount_dir; "
                                       "inside the steps it leads elsewhere (replace the link "
                                       "with the folder itself)")

    def _suggest_inside(self, value):
        parts = posixpath.normpath(value).strip("/").split("/")
        for start in range(1, len(parts)):
            rest = "/".join(parts[start:])
            if os.path.exists(self._on_disk(rest)):
                return f"did you mean {posixpath.join(self.mount, rest)}?"
        return f"write it as a path under {self.mount}/"

    def _check_datasets(self):
        reported = set()
        for spec in self.distinct_specs():
            for path in ("train_config.train_dataset_path", "train_config.val_dataset_path",
                         "eval_config.eval_dataset_path"):
                relative = self._spec_target(spec, path)
                if relative is None or relative in reported:
                    continue
                reported.add(relative)
                self._check_split(spec, path, relative)
            self._compare_classes(spec)

    def _check_split(self, spec, path, relative):
        split = self._split(relative)
        value, _ = spec.field(path)
        if split.error:
            fix = ("copy the split there, one folder per class with its images inside, or fix "
                   "the path")
            self._spec_problem(spec, path, f"{value} {split.error} (looked at {split.path}); "
                               + fix)
        elif not split.classes:
            self._spec_problem(spec, path, f"{value} holds no class folders (TAO expects one "
                               "folder per class with the images inside)")
        elif len(split.classes) < 2:
            self._spec_problem(spec, path, f"{value} has a single class folder "
                               f"({split.classes[0]}); classification needs at least 2 classes")
        for entry, target in split.links_out:
            self._spec_problem(spec, path, f"class folder {entry} in {value} is a symbolic "
                               f"link to {target}, outside tao_mount_dir; inside the steps it "
                               "leads nowhere and the class would silently be missing (copy "
                               "the folder into the workspace)")
        if split.hidden_names:
            shown = ", ".join(ascii(name) for name in split.hidden_names)
            self._spec_problem(spec, path, f"folder names in {value} with invisible characters "
                               f"(newlines, text-direction controls): {shown}; they split or "
                               "disguise log lines and the class map (rename them)")
        if split.empty_classes:
            self._spec_problem(spec, path, f"class folders without images in {value}: "
                               f"{_names(split.empty_classes)} (add {', '.join(IMAGE_EXTENSIONS)}"
                               " images or remove the folders)")

    def _compare_classes(self, spec):
        train = self._spec_target(spec, "train_config.train_dataset_path")
        if train is None or self._split(train).error or not self._split(train).classes:
            return
        classes = self._split(train).classes
        if self.classes is None:
            self.classes = classes
        for path, why in (
            ("train_config.val_dataset_path", "train and val need the same class folders"),
            ("eval_config.eval_dataset_path", "evaluate scores the model on its classes"),
        ):
            other = self._spec_target(spec, path)
            if (other is None or self._split(other).error or not self._split(other).classes
                    or (train, other) in self._compared):
                continue
            self._compared.add((train, other))
            only_train, only_other = _differences(classes, self._split(other).classes)
            if only_train or only_other:
                detail = "; ".join(part for part in (
                    f"only in train: {_names(only_train)}" if only_train else "",
                    f"only here: {_names(only_other)}" if only_other else "") if part)
                self._spec_problem(spec, path, f"classes differ from train_dataset_path "
                                   f"({detail}); {why}")

    def _check_test_images(self):
        relative = self.ok.get("test_infer_image_path")
        if relative is None:
            return
        path = self._on_disk(relative)
        if not os.path.isdir(path):
            what = "is a file" if os.path.exists(path) else "does not exist"
            self.problems.append(f"test_infer_image_path: {relative} {what} in the workspace "
                                 f"({path}); give the folder of images test-infer classifies")
        elif not _images(path, INFERENCE_EXTENSIONS, 1):
            self.problems.append(f"test_infer_image_path: {relative} holds no .jpg, .jpeg or "
                                 ".png images (classification inference reads only those); "
                                 "add images or point it at another folder")

    def _check_pretrained_model(self):
        spec = self.specs.get("train_classification_spec")
        name = self.ok.get("pretrained_model_name")
        dest = self.ok.get("pretrained_model_dir")
        if spec is None or name is None or dest is None:
            return
        path = "train_config.pretrained_model_path"
        value, _ = spec.field(path)
        if not value or not value.startswith("/"):
            return
        directory = ngc_download_dir(posixpath.join(self.mount, dest), name)
        known_file = ngc_model_file(name)
        expected = posixpath.join(directory, known_file or "<model file>")
        actual = posixpath.normpath(value)
        if posixpath.dirname(actual) != directory or (known_file and actual != expected):
            self._spec_problem(spec, path, f"{value} is not where download-model puts {name} "
                               f"(ngc writes {expected}); set pretrained_model_path to that "
                               "file, or pretrained_model_dir and pretrained_model_name to "
                               "match it")

    def _trained_checkpoint(self, spec_name, output_name):
        """(workspace-relative checkpoint, why) for the last checkpoint a training writes."""
        spec = self.specs.get(spec_name)
        output = self.ok.get(output_name)
        if spec is None or output is None:
            return None, None
        name, why = specs.last_checkpoint(spec, self.profile.checkpoint_suffix)
        if name is None:
            return None, None
        return posixpath.join(posixpath.normpath(output), "weights", name), why

    def _expect_parameter(self, name, expected, step, why):
        value = self.ok.get(name)
        if value is not None and posixpath.normpath(value) != expected:
            self.problems.append(f"{name}: {value} does not match the {step} writes ({expected}"
                                 f": {why}); set {name} to that path")

    def _expect_spec_path(self, spec, path, expected, step, why):
        value, _ = spec.field(path)
        if value and _inside(value, self.mount) is not None and (
                _inside(value, self.mount) != expected):
            self._spec_problem(spec, path, f"{value} is not the {step} writes "
                               f"({posixpath.join(self.mount, expected)}: {why}); set "
                               f"{path.rpartition('.')[2]} to that path")

    def _check_first_training(self):
        checkpoint, why = self._trained_checkpoint("train_classification_spec",
                                                   "train_classification_output")
        if checkpoint is None:
            return
        step = "checkpoint train-model"
        self._expect_spec_path(self.specs["train_classification_spec"],
                               "eval_config.model_path", checkpoint, step, why)
        self._expect_parameter("prune_model_input_file", checkpoint, step, why)

    def _check_retraining(self):
        spec = self.specs.get("retrain_classification_spec")
        if spec is None:
            return
        if spec.has("model_config.freeze_blocks"):
            blocks = ", ".join(str(block) for block in spec.message.model_config.freeze_blocks)
            self._spec_problem(spec, "model_config.freeze_blocks", f"the retrain spec freezes "
                               f"blocks {blocks} of the pruned model; remove freeze_blocks so "
                               "every pruned block can recover its accuracy")
        pruned = self.ok.get("prune_model_output_file")
        value, _ = spec.field("train_config.pretrained_model_path")
        if pruned is not None and value.startswith("/") and _inside(value, self.mount) is not None:
            if _inside(value, self.mount) != posixpath.normpath(pruned):
                self._spec_problem(spec, "train_config.pretrained_model_path", f"{value} is not "
                                   f"the pruned model prune-model writes "
                                   f"({posixpath.join(self.mount, posixpath.normpath(pruned))}, "
                                   "prune_model_output_file); set pretrained_model_path to that "
                                   "path so retraining starts from the pruned model")
        elif pruned is not None and not spec.has("train_config.pretrained_model_path"):
            self._spec_problem(spec, "train_config.pretrained_model_path", "missing: retraining "
                               "would start from random weights instead of the pruned model "
                               f"(set it to {posixpath.join(self.mount, pruned)})")
        first = self.specs.get("train_classification_spec")
        if first is not None and first is not spec:
            for path in ("model_config.arch", "model_config.n_layers"):
                mine, theirs = spec.field(path)[0], first.field(path)[0]
                if mine != theirs:
                    self._spec_problem(spec, path, f"{mine} differs from {theirs} in "
                                       f"{first.file} line {first.where(path)}; the pruned "
                                       "model keeps the first training's architecture")
        checkpoint, why = self._trained_checkpoint("retrain_classification_spec",
                                                   "retrain_classification_output")
        if checkpoint is not None:
            step = "checkpoint retrain-model"
            self._expect_spec_path(spec, "eval_config.model_path", checkpoint, step, why)
            self._expect_parameter("test_infer_model_input_file", checkpoint, step, why)
            self._expect_parameter("export_model_input_file", checkpoint, step, why)
        output = self.ok.get("retrain_classification_output")
        if output is not None:
            self._expect_parameter("test_infer_class_map",
                                   posixpath.join(posixpath.normpath(output), "classmap.json"),
                                   "class map retrain-model", "retrain_classification_output")
        self._check_input_size(spec)

    def _check_input_size(self, spec):
        if not spec.has("model_config.input_image_size") or specs.image_size_error(
                spec.message.model_config.input_image_size):
            return
        size = specs.parse_image_size(spec.message.model_config.input_image_size)
        dims = self.ok.get("convert_trt_dims")
        if dims is not None and specs.parse_image_size(dims) != size:
            self.problems.append(
                f"convert_trt_dims: {dims} disagrees with input_image_size "
                f"\"{spec.message.model_config.input_image_size}\" in {spec.file} line "
                f"{spec.line('model_config.input_image_size')} (the exported model takes that "
                f"size); set convert_trt_dims to {','.join(str(n) for n in size)}")
        calibrate = self.specs.get("calibrate_classification_spec")
        path = "model_config.input_image_size"
        if calibrate is not None and calibrate is not spec and calibrate.has(path):
            other = calibrate.message.model_config.input_image_size
            if not specs.image_size_error(other) and specs.parse_image_size(other) != size:
                mine = spec.message.model_config.input_image_size
                self._spec_problem(calibrate, path, f'"{other}" differs from the retrained '
                                   f'model\'s "{mine}" ({spec.file} line {spec.line(path)}); '
                                   "INT8 calibration data must have the model's input size")

    def _check_calibration(self):
        spec = self.specs.get("calibrate_classification_spec")
        batches = self.ok.get("calibrate_max_batches")
        if spec is None or batches is None:
            return
        relative = self._spec_target(spec, "train_config.train_dataset_path")
        batch = spec.message.train_config.batch_size_per_gpu
        if relative is None or batch < 1 or self._split(relative).error:
            return
        engine_batch = self.ok.get("convert_trt_batch_size")
        if self.profile.engine_builder == "gen_trt_engine" and engine_batch is not None and (
                int(engine_batch) > batch):
            # gen_trt_engine calibrates on calibrate-model's tensorfile, whose records hold
            # batch_size_per_gpu images each: its --batch_size cannot be larger.
            self.problems.append(
                f"convert_trt_batch_size: {int(engine_batch)} is larger than the {batch} images "
                f"per batch of the calibration tensorfile (batch_size_per_gpu in {spec.file} "
                f"line {spec.line('train_config.batch_size_per_gpu')}); set it to {batch} or "
                "less")
        needed = int(batches) * batch
        found = self._split(relative).count_images(needed)
        if found < needed:
            most = found // batch
            # Advice the form accepts: calibrate_max_batches is at least 1 (value_error).
            fix = (f"set calibrate_max_batches to {most} or less" if most else
                   f"not even one batch fits: add at least {batch - found} training images or "
                   "lower batch_size_per_gpu")
            self.problems.append(
                f"calibrate_max_batches: {int(batches)} batches of {batch} images "
                f"(batch_size_per_gpu in {spec.file} line "
                f"{spec.line('train_config.batch_size_per_gpu')}) need {needed} training images "
                f"but {relative} has {found}; {fix}")

    def _find_warnings(self):
        # The re-run policy (tao_step report --keep-previous): an earlier run's output is
        # renamed to <path>.previous-<UTC time> before the step that writes it runs.
        for name, _, step, suffix in outputs_of(self.profile):
            output = self.ok.get(name)
            if output is None or not os.path.exists(self._on_disk(output + suffix)):
                continue
            self.warnings.append(
                f"{name}: {output + suffix} exists from an earlier run; {step} moves it to "
                f"{output + suffix}.previous-<UTC time> first (delete old copies to save space)")
        self._warn_if_accuracy_may_be_unreadable()
        spec = self.specs.get("train_classification_spec")
        if spec is not None and not spec.field("train_config.pretrained_model_path")[0]:
            self.warnings.append(f"{spec.file}: train_config.pretrained_model_path is not set: "
                                 "train-model starts from random weights and does not use the "
                                 "model download-model fetches")

    def _warn_if_accuracy_may_be_unreadable(self):
        """numpy abbreviates a matrix of more than 1000 cells (32+ classes). tao_step report
        makes TAO print it whole; should that not work, the report's 2-decimal recalls give
        the exact top-1 only for classes of at most 100 evaluation images (tao_step.parse
        correct_counts_from_report), and a gate without a top-1 fails reevaluate-model."""
        try:
            minimum = float(self.ok.get("min_accuracy", "0"))
        except ValueError:
            return
        spec = self.specs.get("retrain_classification_spec")
        split = spec and self._spec_target(spec, "eval_config.eval_dataset_path")
        if not minimum > 0 or not split or self._split(split).error:
            return
        classes = self._split(split).classes
        large = [name for name in classes
                 if len(_images(os.path.join(self._split(split).path, name),
                                IMAGE_EXTENSIONS, 101)) > 100]
        if len(classes) ** 2 > 1000 and large:
            self.warnings.append(
                f"{spec.file}: eval_config.eval_dataset_path has {len(classes)} classes, "
                f"{len(large)} with more than 100 images ({_names(large)}): if TAO's confusion "
                "matrix is still printed abbreviated, the top-1 accuracy cannot be read exactly "
                f"and min_accuracy {self.ok['min_accuracy']} then fails reevaluate-model after "
                "both trainings (at most 100 evaluation images per class avoid that)")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def _parse_arguments(argv):
    parser = _Parser(prog="python3 -m tao_step preflight",
                     description="Check the Create Run values and the workspace of a run.")
    parser.add_argument("--workspace", required=True, help="the workspace folder as mounted")
    parser.add_argument("--mount-dir", help="the path the spec files were written against "
                                            "(default: the tao_mount_dir value)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="one Create Run value; give every parameter")
    parser.add_argument("--tao-version", choices=tuple(profiles.PROFILES),
                        default=profiles.DEFAULT_VERSION,
                        help="the TAO release the pipeline was built for (its form and specs)")
    parser.add_argument("--run", metavar="WORKFLOW_NAME",
                        help="with --run-uid: claim the run's output paths in the workspace "
                             "when every check passes (see tao_step.claims)")
    parser.add_argument("--run-uid", metavar="UID", help="the run's workflow uid")
    parser.add_argument("--bash-read", metavar="NAME[,NAME...]",
                        help="the parameters whose values reach a TAO command wrapper, which "
                             "re-reads them with bash (default: all)")
    parser.add_argument("--key-from-env", action="store_true",
                        help=f"api_key is the key in ${KEY_ENV} (a --key-secret build), not "
                             "a --param")
    arguments = parser.parse_args(argv)
    if bool(arguments.run) != bool(arguments.run_uid):
        raise _UsageError("--run and --run-uid go together")
    values = {}
    for item in arguments.param:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise _UsageError(f"--param {item}: write NAME=VALUE")
        if name in values:
            raise _UsageError(f"--param {name} given twice")
        values[name] = value
    if arguments.key_from_env and "api_key" in values:
        raise _UsageError("--param api_key does not go with --key-from-env")
    if arguments.bash_read is not None:
        arguments.bash_read = [name for name in arguments.bash_read.split(",") if name]
        known = parameters_of(profiles.get(arguments.tao_version))
        for name in arguments.bash_read:
            if name not in known:
                raise _UsageError(f"--bash-read {name}: not a parameter of this pipeline")
    return arguments, values


def key_problems(values, key):
    """With --key-secret, Kubernetes puts the key into every ``$(TAO_API_KEY)``, so a form
    value holding it would carry it into logs and file names: refused, never quoted."""
    if not key:
        return []
    return [f"{name}: the value contains the TAO key from the Secret (Kubernetes expanded "
            f"$({KEY_ENV}) into it); remove it from {name}"
            for name in sorted(values) if name != "api_key" and key in values[name]]


def _claim(arguments, values, profile):
    """Claim the run's outputs: ``(problems, warnings)``, the problems naming the runs that
    hold any of them, the warnings the damaged files among the claims."""
    workspace = arguments.workspace
    outputs = output_paths(values, profile)
    try:
        conflicts, damaged = claims.take(workspace, arguments.run, arguments.run_uid,
                                         sorted(set(path for _, _, path in outputs)))
    except claims.ClaimError as error:
        return [f"--workspace {workspace}: {error}"], []
    problems = []
    for name, _, path in outputs:
        for mine, other, theirs in conflicts:
            if mine == path:
                real = claims.resolve(workspace, path)
                linked = f" ({real} once its symbolic links are followed)" if (
                    real != path) else ""
                problems.append(
                    f"{name}: {path}{linked} is being written by {other.describe()}, whose "
                    f"output {theirs} overlaps it; wait until that run ends, or give this run "
                    f"other output paths. If that run no longer exists (terminated or "
                    f"deleted), release its claim: python3 -m tao_step release --workspace "
                    f"{shlex.quote(workspace)} --run {other.workflow}")
                break
    return problems, [item.describe() for item in damaged]


def main(argv):
    """``preflight --workspace WS [--mount-dir DIR] [--run NAME --run-uid UID]
    [--bash-read NAMES] [--key-from-env] --param NAME=VALUE...``."""
    try:
        arguments, values = _parse_arguments(argv)
    except _UsageError as error:
        sys.stderr.write(f"preflight: {error}\nusage: python3 -m tao_step preflight "
                         "--workspace WS [--mount-dir DIR] [--run NAME --run-uid UID] "
                         "--param NAME=VALUE ...\n")
        return 2
    profile = profiles.get(arguments.tao_version)
    key = os.environ.get(KEY_ENV, "")
    if arguments.key_from_env:
        # The key Secret's value, from the environment: never an argument, which any
        # process on the node could read.
        values["api_key"] = key
    problems = key_problems(values, key) + validate_values(values, profile, arguments.bash_read)
    if arguments.key_from_env and not key and "api_key" not in profile.optional_parameters:
        problems = [problem for problem in problems if not problem.startswith("api_key: ")]
        problems.append(f"api_key: the key Secret is empty (${KEY_ENV} has no value); put "
                        "the TAO model key into the Secret named when compiling (--key-secret)")
    check = Preflight(arguments.workspace, values, arguments.mount_dir, profile,
                      arguments.bash_read).run()
    problems += check.problems
    warnings = list(check.warnings)
    if not problems and arguments.run:
        problems, damaged = _claim(arguments, values, profile)
        warnings += damaged
    lines = problems + ["warning: " + line for line in warnings]
    warned = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    if problems:
        lines.append(f"preflight: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
                     f"{warned}; fix them and start the run again")
    else:
        classes = (f", {len(check.classes)} classes ({_names(check.classes)})"
                   if check.classes else "")
        claimed = f"; outputs claimed for run {arguments.run}" if arguments.run else ""
        lines.append(f"preflight OK: {len(values)} values, "
                     f"{len(list(check.distinct_specs()))} spec files{classes}{warned}"
                     f"{claimed}")
    for line in lines:
        print(line.replace(key, "***") if key else line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
