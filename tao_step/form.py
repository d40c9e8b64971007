"""The Create Run form and the steps: one table, read by everything else.

Per parameter: its name, default and help (the form and the README), its ``kind`` (which
check preflight runs on its value: ``tao_step.values`` dispatches on it), its ``role`` (what
the run does with it), the step that writes it (for outputs: claimed, collision-checked,
moved aside on a re-run), and the example preflight's messages suggest. Per step: its name,
its default time limit, and what the run summary lists from it. What each step writes is
derived from the parameters' ``writer``.

The pipeline module derives its signature, defaults, step names, timeouts and the summary's
artifacts from here; preflight its categories; the README its form table
(``.venv/bin/python -m tao_step.form --write``, checked by tests/test_form.py); the tests
compare the form with the original sample's (shared/reference/original-interface.md). A TAO
release's differences from this (3.0) form are in its profile (``tao_step.profiles``).

Adding a parameter: one row here (with a new kind, its check in ``tao_step.values``), and
the step in the pipeline module that uses it.

Runs inside the TAO images (Python 3.6) and on the host: standard library only.
"""

import sys
from typing import NamedTuple, Tuple

# Kinds: what a value is, and so how preflight checks it (tao_step.values.value_error).
MODEL_NAME = "model-name"  # an NGC model, org/[team/]model:version
FOLDER_IN = "folder-in"  # a folder the run reads, relative to tao_mount_dir
# A folder a step unpacks a download into (a new subfolder): may be the workspace itself.
DOWNLOAD_DIR = "download-dir"
FILE_IN = "file-in"  # a file the run reads, relative to tao_mount_dir
SPEC = "spec"  # a TAO spec file (a file the run reads, parsed and checked)
FOLDER_OUT = "folder-out"  # a results folder a step fills, relative to tao_mount_dir
FILE_OUT = "file-out"  # a file a step writes, relative to tao_mount_dir
COUNT = "count"  # a whole number from 1 to a bound; rule: (what it counts, bound)
THRESHOLD = "threshold"  # a decimal number in (0, 1]; rule: (what it is, a note)
FRACTION = "fraction"  # a decimal number in [0, 1]; rule: (what it is, a note)
CHOICE = "choice"  # one of a few words; rule: the words
DIMS = "dims"  # C,H,W
MOUNT = "mount"  # the absolute folder the workspace is mounted at
KEY = "key"  # the TAO model key: secret, passed on its own after an option (rule: where)
OUTPUT_NODE = "output-node"  # the name of the model's output node
PATH_KINDS = (DOWNLOAD_DIR, FOLDER_IN, FILE_IN, SPEC, FOLDER_OUT, FILE_OUT)
FILE_KINDS = (FILE_IN, SPEC, FILE_OUT)

# Roles: what the run does with a parameter.
GIVEN = "given"  # the user puts it in the workspace before the run; nothing may replace it
PRODUCT = "product"  # a step reads it after an earlier step wrote it there
WRITTEN = "written"  # a step writes it (see writer)
SETTING = "setting"  # a value passed to a command

# Where a --key-secret build puts the TAO key, in every step that uses it (preflight too):
# Kubernetes expands $(TAO_API_KEY) in a step's arguments.
KEY_ENV = "TAO_API_KEY"
# The step time limit of a step the table gives none (activeDeadlineSeconds).
DEFAULT_TIMEOUT = 6 * 3600


class Parameter(NamedTuple):
    name: str
    default: str
    help: str
    kind: str = SETTING
    role: str = SETTING
    # The step that writes the output at this path (in the 3.0 build), or "".
    writer: str = ""
    # Appended to the value to name what the writer writes (a file inside the folder).
    suffix: str = ""
    # What preflight's messages suggest instead of a wrong value.
    example: str = ""
    # Kind-specific: COUNT (what, most), CHOICE (words), KEY (who reads it as an option),
    # THRESHOLD and FRACTION (what it is, a note on its values).
    rule: tuple = ()


class Step(NamedTuple):
    name: str
    timeout: int = DEFAULT_TIMEOUT
    # What the run summary lists from this step: (name shown, parameter giving the path).
    artifacts: Tuple[Tuple[str, str], ...] = ()


P = Parameter
_ANY = "tao-experiments/..."

# The Create Run form, in the original sample's order, then min_accuracy. Every path except
# tao_mount_dir is relative to tao_mount_dir. Defaults agree with specs/*.cfg (80 epochs ->
# resnet_080.tlt).
PARAMETERS = (
    P("pretrained_model_name", "nvidia/tao/pretrained_classification:resnet18",
      "NGC model to download (`org/team/model:version`)", MODEL_NAME,
      example="nvidia/tao/pretrained_classification:resnet18"),
    P("pretrained_model_dir", "models",
      "where download-model stores it; the train spec's `pretrained_model_path` points inside",
      DOWNLOAD_DIR, GIVEN, example="models"),
    P("train_classification_data", "tao-experiments/data",
      "dataset root; informative only: TAO reads dataset paths from the specs",
      FOLDER_IN, GIVEN, example=_ANY),
    P("train_classification_spec", "specs/classification_spec.cfg",
      "spec of the first training; evaluate-model scores its `eval_config.model_path`",
      SPEC, GIVEN, example="specs/classification_spec.cfg"),
    P("train_classification_output", "tao-experiments/output",
      "results directory of the first training", FOLDER_OUT, WRITTEN, "train-model",
      example="tao-experiments/output"),
    P("train_num_gpus", "1", "GPUs requested by train-model and retrain-model", COUNT,
      example="1", rule=("GPUs for training", 16)),
    P("prune_model_input_file", "tao-experiments/output/weights/resnet_080.tlt",
      "model to prune: the first training's last checkpoint", FILE_IN, PRODUCT, example=_ANY),
    P("prune_model_output_file", "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt",
      "pruned model; the retrain spec's `pretrained_model_path`", FILE_OUT, WRITTEN,
      "prune-model", example=_ANY),
    P("prune_equalization_criterion", "union",
      "`union`, `intersection`, `arithmetic_mean` or `geometric_mean`", CHOICE,
      rule=("union", "intersection", "arithmetic_mean", "geometric_mean")),
    P("prune_threshold", "0.6", "pruning threshold: higher prunes more", THRESHOLD,
      example="0.6", rule=("the pruning threshold", "higher prunes more")),
    P("retrain_classification_spec", "specs/classification_retrain_spec.cfg",
      "spec of the retraining, also read by reevaluate-model and test-infer", SPEC, GIVEN,
      example="specs/classification_retrain_spec.cfg"),
    P("retrain_classification_output", "tao-experiments/output-retrain",
      "results directory of the retraining", FOLDER_OUT, WRITTEN, "retrain-model",
      example="tao-experiments/output-retrain"),
    P("test_infer_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt",
      "model test-infer runs", FILE_IN, PRODUCT, example=_ANY),
    P("test_infer_image_path", "tao-experiments/data/split/test/person",
      "folder of images to classify; `result.csv` is written into it", FOLDER_IN, GIVEN,
      "test-infer", "/result.csv", example="tao-experiments/data/split/test/person"),
    P("test_infer_class_map", "tao-experiments/output-retrain/classmap.json",
      "class map written by the retraining", FILE_IN, PRODUCT, example=_ANY),
    P("test_infer_batch_size", "16", "inference batch size", COUNT, example="1",
      rule=("images per inference batch", 4096)),
    P("export_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt",
      "model both exports read", FILE_IN, PRODUCT, example=_ANY),
    P("export_model_output_file", "tao-experiments/export/final_model.etlt", "FP32 export",
      FILE_OUT, WRITTEN, "export-model", example=_ANY),
    P("calibrate_classification_spec", "specs/classification_retrain_spec.cfg",
      "spec whose training images feed INT8 calibration", SPEC, GIVEN,
      example="specs/classification_retrain_spec.cfg"),
    P("calibrate_max_batches", "10", "batches in the calibration tensorfile", COUNT,
      example="1", rule=("batches of training images to calibrate on", 100000)),
    P("calibrate_output_file", "tao-experiments/export/calibration.tensor",
      "calibration tensorfile", FILE_OUT, WRITTEN, "calibrate-model", example=_ANY),
    P("export_int8_cache_file", "tao-experiments/export/final_model_int8_cache.bin",
      "INT8 calibration cache, read by convert-trt", FILE_OUT, WRITTEN, "export-int8-model",
      example=_ANY),
    P("export_int8_batches", "10", "calibration batches used by the INT8 export", COUNT,
      example="1", rule=("calibration batches for the INT8 export", 100000)),
    P("export_int8_model_output_file", "tao-experiments/export/final_int8_model.etlt",
      "INT8 export; convert-trt builds the engine from it", FILE_OUT, WRITTEN,
      "export-int8-model", example=_ANY),
    P("convert_trt_output_file", "tao-experiments/export/final_model.trt", "TensorRT engine",
      FILE_OUT, WRITTEN, "convert-trt", example=_ANY),
    P("convert_trt_output_layer", "predictions/Softmax", "output node of the network",
      OUTPUT_NODE, example="predictions/Softmax"),
    P("convert_trt_dims", "3,224,224",
      "input dimensions `C,H,W` (the spec's `input_image_size`)", DIMS, example="3,224,224"),
    P("convert_trt_input_type", "nchw", "`nchw`, `nhwc` or `nc`", CHOICE,
      rule=("nchw", "nhwc", "nc")),
    P("convert_trt_max_batch_size", "64", "largest batch the engine accepts", COUNT,
      example="1", rule=("the engine's largest batch", 4096)),
    P("convert_trt_precision", "int8",
      "`int8`, `fp16` or `fp32`: engine precision, and export-int8-model's `--data_type`",
      CHOICE, rule=("fp32", "fp16", "int8")),
    P("convert_trt_batch_size", "64", "calibration batch size of the converter", COUNT,
      example="1", rule=("the calibration batch of the engine build", 4096)),
    P("tao_mount_dir", "/mnt/workspace",
      "absolute path of the workspace on the node, mounted at the same path", MOUNT,
      example="/mnt/workspace"),
    P("api_key", "nvidia_tlt",
      "TAO model key (`-k`); `nvidia_tlt` for NGC's public TAO models. Not an NGC API key",
      KEY, example="nvidia_tlt", rule=("TAO (-k)",)),
    # Added after the original's form, so its order is kept.
    P("min_accuracy", "0",
      "quality gate: top-1 accuracy (fraction 0–1) the retrained model needs before "
      "export-model, export-int8-model and convert-trt run; `0` turns the gate off",
      FRACTION, example="0.8",
      rule=("the accuracy the retrained model must reach, as a fraction", "0 accepts any")),
    P("train_use_amp", "false",
      "`true`: train-model trains in automatic mixed precision (TAO's `train --use_amp`; "
      "faster on GPUs with Tensor Cores, Volta and newer)", CHOICE, rule=("false", "true")),
    P("retrain_use_amp", "false",
      "`true`: retrain-model trains in automatic mixed precision (`train --use_amp`)",
      CHOICE, rule=("false", "true")),
)
del P

# Every step, in the order the UI lists them (the DAG's, preflight first and the summary,
# the exit handler, last); a release's engine (tao_step.profiles) has some of them.
STEPS = (
    Step("preflight", 600),
    Step("download-model", 3600, (("pretrained-models", "pretrained_model_dir"),)),
    Step("train-model", 72 * 3600, (("baseline-results", "train_classification_output"),
                                    ("unpruned-model", "prune_model_input_file"))),
    Step("evaluate-model"),
    Step("prune-model", artifacts=(("pruned-model", "prune_model_output_file"),)),
    Step("retrain-model", 72 * 3600, (("retrained-results", "retrain_classification_output"),
                                      ("retrained-model", "export_model_input_file"),
                                      ("class-map", "test_infer_class_map"))),
    Step("reevaluate-model"),
    Step("test-infer", artifacts=(("predictions", "test_infer_image_path"),)),
    Step("export-model", artifacts=(("fp32-model", "export_model_output_file"),)),
    Step("calibrate-model", artifacts=(("calibration-tensorfile", "calibrate_output_file"),)),
    Step("export-int8-model", artifacts=(("int8-model", "export_int8_model_output_file"),
                                         ("int8-calibration-cache", "export_int8_cache_file"))),
    Step("convert-trt", artifacts=(("tensorrt-engine", "convert_trt_output_file"),
                                   ("tensorrt-results", "convert_trt_results_dir"))),
    Step("evaluate-engine"),
    Step("summary", 600),
)

STEP_NAMES = tuple(step.name for step in STEPS)
DEFAULT_TIMEOUTS = {step.name: step.timeout for step in STEPS}
NAMES = tuple(parameter.name for parameter in PARAMETERS)


def parameters_of(profile):
    """The Create Run parameters of ``profile``'s build: this form without the parameters
    it drops, with its changed defaults, then the ones it adds."""
    dropped = set(profile.dropped_parameters)
    changed = dict(profile.changed_defaults)
    return tuple(p._replace(default=changed.get(p.name, p.default))
                 for p in PARAMETERS if p.name not in dropped) + tuple(profile.added_parameters)


def writes(step, parameters=PARAMETERS):
    """The parameters naming what ``step`` writes, among ``parameters``."""
    return tuple(p.name for p in parameters if p.writer == step)


def summary_artifacts(parameters):
    """What the run summary lists, for a build with ``parameters``: (name shown, parameter,
    what follows the parameter's value), in step order."""
    by_name = {p.name: p for p in parameters}
    return tuple((shown, name, by_name[name].suffix) for step in STEPS
                 for shown, name in step.artifacts if name in by_name)


# -- the README's table -------------------------------------------------------------------
README = "README.md"
BEGIN = "<!-- BEGIN form table: .venv/bin/python -m tao_step.form --write -->"
END = "<!-- END form table -->"


def markdown_table():
    """The README's Create Run table of the default (3.0) form."""
    lines = ["| parameter | default | meaning |", "|---|---|---|"]
    lines += ["| `%s` | `%s` | %s |" % (p.name, p.default, p.help) for p in PARAMETERS]
    return "\n".join(lines) + "\n"


def replace_table(text):
    """``text`` with its generated table replaced; ValueError if the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("%s: the lines %r and %r are missing" % (README, BEGIN, END))
    return text[:start + len(BEGIN)] + "\n" + markdown_table() + text[end:]


def main(argv):
    """``--markdown``: print the README's form table; ``--write``: rewrite it in README.md
    (from the repository root)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog=".venv/bin/python -m tao_step.form",
                                     description="Print or rewrite the README's form table.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the table")
    group.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), README)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        text = replace_table(text)
    except ValueError as error:
        parser.error(str(error))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print("wrote the form table in %s" % README)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
