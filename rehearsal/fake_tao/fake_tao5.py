"""The logic behind ``rehearsal/fake_tao/bin/classification_tf1``: TAO 5.0's TF1 wrapper and
its subtasks, plus TAO Deploy's ``gen_trt_engine``, as ``shared/reference/
tao5-classification-tf1.md`` and NVIDIA's source describe them (tao_tensorflow1_backend@d73dcfc
``nvidia_tao_tf1/cv/common/entrypoint/entrypoint.py`` and ``cv/makenet/scripts/``;
tao_deploy@a285787 ``nvidia_tao_deploy/cv/classification_tf1/scripts/gen_trt_engine.py``).

What the wrapper does and the fake does too:
- the subtask is looked up in the first argument only: ``classification_tf1 --gpus 1 train``
  finds no task and fails;
- the wrapper re-reads the subtask's options with bash (``wrapper.py``): options with an
  empty value are dropped before the script sees them (``-k ""``), and a value with shell
  syntax is split, expanded or run as TAO's would be;
- every line the script prints or logs goes to stdout, logs formatted
  ``<time> [TAO Toolkit] [LEVEL] <logger> <line>: <message>``; the wrapper ends with
  ``Execution status: PASS`` (exit 0) or ``FAIL`` (exit 255, its ``sys.exit(-1)``);
- subtasks given a results folder append JSON status lines to ``<results>/status.json``.

The traps, emulated so the pipeline must handle them: prune's ``-o`` must end ``.hdf5``
(otherwise it saves ``<o>.hdf5`` and then fails); export appends ``.onnx`` when "onnx" is
not in the output path and refuses an existing output; ``gen_trt_engine`` INT8 crashes
without ``--cal_data_file`` or ``--cal_cache_file``, and when the data file does not exist
and no ``--cal_image_dir`` is given it calibrates on random data, saying so in one log line
only; ``FAKE_TAO_FAIL=NAME:status`` makes subtask NAME fail the way some TAO 5 scripts do:
a FAILURE line in status.json, ``Execution status: PASS`` and exit 0.

One command serves both images here (the rehearsal runs no images); the compiled workflow
is what puts gen_trt_engine in the deploy image.
"""

import argparse
import json
import os

from rehearsal.fake_tao import common, experiment, fake_tao, wrapper
from rehearsal.fake_tao.common import (
    Failure,
    file_digest,
    log,
    read_model,
    say,
    write_model,
)
from rehearsal.fake_tao.formats import classification_report, numpy_str, shown_matrix
from rehearsal.fake_tao.releases import FAIL_ENV, LOSSY_ENGINE, TAO_5_0

SUBTASKS = TAO_5_0.subtasks


class _StatusFile:
    """``<results_dir>/status.json``: JSON lines appended as TAO 5's status logger does."""

    def __init__(self, results_dir):
        self.path = os.path.join(results_dir, "status.json") if results_dir else None

    def write(self, status, message, **values):
        if not self.path:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a") as handle:
            common.status_line(handle, status, message, **values)


def read_model5(path, key):
    """TAO 5's model_io: .hdf5 loads without a key, .tlt needs it, anything else fails."""
    if path.endswith(".tlt"):
        return common.read_encrypted(path, key or "")
    if not path.endswith(".hdf5"):
        raise Failure(f"NotImplementedError: {path}: only .hdf5 and .tlt models can be loaded")
    return read_model(path)


# -- subtasks -------------------------------------------------------------------------------
def train(arguments, status):
    fake_tao.train(arguments)  # writes <r>/status.json itself, as TAO 5 train does


def evaluate(arguments, status):
    if arguments.model_path:  # TAO Deploy's evaluate, of an engine
        deploy_evaluate(arguments, status)
        return
    status.write("STARTED", "Starting evaluation.")
    spec = fake_tao.load_spec(arguments.experiment_spec_file, experiment.VALIDATION_REQUIRED)
    read_model5(spec.eval_config.model_path, arguments.key)
    captured = []
    real_say = fake_tao.say
    fake_tao.say = lambda text="": (captured.append(text), real_say(text))
    try:
        fake_tao.evaluate(arguments)
    finally:
        fake_tao.say = real_say
    top_k = [line for line in captured if line.startswith("Evaluation Top K accuracy: ")]
    status.write("SUCCESS", "Evaluation finished successfully.",
                 kpi={"top_k_accuracy": float(top_k[-1].rsplit(" ", 1)[1])})


def prune(arguments, status):
    read_model5(arguments.model, arguments.key)
    target = arguments.output_file
    saved = target if target.endswith(".hdf5") else target + ".hdf5"
    arguments.output_file = saved
    fake_tao.prune(arguments)
    if saved != target:  # magnet_prune saves <o>.hdf5, then sizes <o>
        raise Failure(f"FileNotFoundError: [Errno 2] No such file or directory: '{target}'")
    status.write("SUCCESS", "Pruning finished successfully.")


def inference(arguments, status):
    """inference.py has a status logger only with -r (lines 165-181). Then a folder without
    .jpg/.jpeg/.png images records FAILURE and returns, so the wrapper says PASS (lines
    305-311); without -r that line meets an unbound ``s_logger`` and the script fails.
    Either way ``result.csv`` is already created, empty (line 296)."""
    status.write("STARTED", "Starting inference.")
    read_model5(arguments.model, arguments.key)
    folder = arguments.image_dir
    if folder and os.path.isdir(folder) and not fake_tao.image_files(
            folder, fake_tao.INFERENCE_EXTENSIONS):
        open(os.path.join(arguments.results_dir or folder, "result.csv"), "w").close()
        if not arguments.results_dir:
            raise Failure("UnboundLocalError: local variable 's_logger' referenced before "
                          "assignment")
        status.write("FAILURE", "Image directory doesn't contain files with valid "
                     "extensionsValid extensions are ['.jpg', '.jpeg', '.png']")
        return
    fake_tao.inference(arguments)
    if folder:
        status.write("SUCCESS", "Inference finished successfully.")


def export(arguments, status):
    status.write("RUNNING", "Building exporter object.")
    header = read_model5(arguments.model, arguments.key)
    if not arguments.experiment_spec_file:
        raise Failure("TypeError: stat: path should be string, bytes, os.PathLike or integer, "
                      "not NoneType")
    fake_tao.load_spec(arguments.experiment_spec_file)
    output = arguments.output_file or os.path.splitext(arguments.model)[0] + ".onnx"
    if "onnx" not in output:
        output += ".onnx"
    if os.path.exists(output):
        raise Failure(f"AssertionError: Default output file {output} already exists.")
    log(f"Exporting {arguments.model} to {output}")
    exported = {key: header[key] for key in ("arch", "n_layers", "input_image_size", "classes",
                                             "parameters", "val_acc", "seed")}
    exported["epoch"] = header.get("epoch")  # the engine then predicts as the model does
    exported.update({"format": "onnx", "key": None, "from_digest": file_digest(arguments.model),
                     "input_node": common.INPUT_NODE, "output_node": common.OUTPUT_NODE})
    write_model(output, exported)
    status.write("SUCCESS", "Export finished successfully.")


def deploy_evaluate(arguments, status):
    """TAO Deploy's ``evaluate -m ENGINE -e SPEC -r DIR [-c CLASSMAP] [-b N]``: the engine
    over ``eval_config.eval_dataset_path``; headers logged, matrix and report printed,
    ``<r>/results.json`` written (tao_deploy@a285787 classification_tf1/scripts/
    evaluate.py). ``FAKE_TAO_FAIL=engine:lossy`` makes the engine lose accuracy, as INT8
    calibrated on too few batches can."""
    status.write("STARTED", "Starting classification_tf1 evaluation.")
    engine = read_model(arguments.model_path, "TensorRT engine")
    if engine.get("format") != "engine":
        raise Failure(f"RuntimeError: {arguments.model_path} is not a TensorRT engine")
    spec = fake_tao.load_spec(arguments.experiment_spec_file, None)  # no validation
    path = arguments.i or spec.eval_config.eval_dataset_path
    split = fake_tao.read_split(path, "eval_dataset_path")
    classes = sorted(split)
    if arguments.deploy_classmap:
        classes = fake_tao._read_classmap(arguments.deploy_classmap)
    if len(classes) != len(engine["classes"]):
        raise Failure(f"ValueError: Provided class map has {len(classes)} classes while the "
                      f"engine expects {len(engine['classes'])} classes.")
    if LOSSY_ENGINE in {n.strip() for n in os.environ.get(FAIL_ENV, "").split(",")}:
        engine = dict(engine, val_acc=max(0.0, engine["val_acc"] - 0.25))
    classes, matrix = fake_tao.predictions(engine, split)
    total = sum(map(sum, matrix))
    batch = int(arguments.b or 1)
    if total // batch == 0:
        raise Failure("AssertionError: empty image dir or batch size too large!")
    top1 = sum(matrix[i][i] for i in range(len(classes))) / total
    log(f"Top 5 scores: {1.0 if len(classes) <= 5 else top1!r}", logger="root")
    log("Confusion Matrix", logger="root")
    say(numpy_str(shown_matrix(matrix)))
    log("Classification Report", logger="root")
    say(classification_report(classes, matrix))
    log("Finished evaluation.", logger="root")
    os.makedirs(arguments.results_dir, exist_ok=True)
    with open(os.path.join(arguments.results_dir, "results.json"), "w") as handle:
        json.dump({"top_k_accuracy": top1}, handle)
    status.write("SUCCESS", "Evaluation finished successfully.")


def calibration_tensorfile(arguments, status):
    fake_tao.calibration_tensorfile(arguments)


def gen_trt_engine(arguments, status):
    status.write("STARTED", "Starting classification_tf1 gen_trt_engine.")
    if not arguments.model_path.endswith(("onnx", "etlt", "uff")):
        raise Failure(f"ValueError: {arguments.model_path}: the model must be .onnx, .etlt "
                      "or .uff")
    header = read_model(arguments.model_path, "onnx model")
    fake_tao.load_spec(arguments.experiment_spec, None)  # TAO Deploy does not validate
    if arguments.data_type == "int8":
        if arguments.cal_data_file is None or arguments.cal_cache_file is None:
            raise Failure("TypeError: stat: path should be string, bytes, os.PathLike or "
                          "integer, not NoneType")
        if os.path.exists(arguments.cal_cache_file):
            log(f"Calibration cache {arguments.cal_cache_file} exists: calibration skipped")
        else:
            if os.path.exists(arguments.cal_data_file):
                tensors = read_model(arguments.cal_data_file, "calibration tensorfile")
                if tensors.get("batch_size", 0) < arguments.batch_size:
                    raise Failure(f"AssertionError: the tensorfile's batches hold "
                                  f"{tensors.get('batch_size')} images, fewer than "
                                  f"--batch_size {arguments.batch_size}")
                source = arguments.cal_data_file
            elif arguments.cal_image_dir and os.path.isdir(arguments.cal_image_dir):
                source = arguments.cal_image_dir
            else:
                log("Generating 10 random images to calibrate the engine: the INT8 engine "
                    "will lose accuracy", "WARNING")
                source = "random"
            write_model(arguments.cal_cache_file, {
                "format": "calibration_cache", "source": os.path.abspath(source)
                if source != "random" else "random", "batches": arguments.batches,
                "batch_size": arguments.batch_size,
                "input_image_size": header.get("input_image_size")})
    if arguments.engine_file:
        write_model(arguments.engine_file, {
            "format": "engine", "key": None, "precision": arguments.data_type,
            "max_batch_size": arguments.max_batch_size,
            "from_digest": file_digest(arguments.model_path),
            "classes": header["classes"], "parameters": header["parameters"],
            "val_acc": header.get("val_acc"), "seed": header.get("seed"),
            "epoch": header.get("epoch")})
        log(f"Engine written to {arguments.engine_file}")
    status.write("SUCCESS", "Gen_trt_engine finished successfully.")


# -- the wrapper ----------------------------------------------------------------------------
def _gen_trt_engine_options(command):
    """TAO Deploy's gen_trt_engine options (the deploy image's wrapper)."""
    command.add_argument("-m", "--model_path", required=True)
    command.add_argument("-e", "--experiment_spec", required=True)
    command.add_argument("-r", "--results_dir", required=True)
    command.add_argument("-k", "--key", default="")
    command.add_argument("--data_type", choices=("fp32", "fp16", "int8"), default="fp32")
    command.add_argument("--engine_file")
    command.add_argument("--cal_image_dir", default="")
    command.add_argument("--cal_data_file")
    command.add_argument("--cal_cache_file")
    command.add_argument("--batch_size", type=int, default=1)
    command.add_argument("--batches", type=int, default=10)
    command.add_argument("--max_batch_size", type=int, default=1)
    command.add_argument("--min_batch_size", type=int, default=1)
    command.add_argument("--opt_batch_size", type=int, default=1)
    command.add_argument("--max_workspace_size", type=int, default=2)
    command.add_argument("-s", "--strict_type_constraints", action="store_true")


def _parser():
    """The wrapper's parser, and each subtask's."""
    parser = argparse.ArgumentParser(prog="classification_tf1",
                                     description="Fake TAO 5 classification_tf1 (tests only).")
    subtasks = parser.add_subparsers(dest="subtask")
    common = fake_tao.common_options()

    def subtask(name):
        return subtasks.add_parser(name, parents=[common])

    command = subtask("train")
    command.add_argument("-e", "--experiment_spec_file", required=True)
    command.add_argument("-r", "--results_dir", required=True)
    command.add_argument("-k", "--key", default="")
    command.add_argument("--init_epoch", type=int, default=0)
    command.add_argument("-c", "--classmap_json")

    command = subtask("evaluate")
    command.add_argument("-e", "--experiment_spec", dest="experiment_spec_file", required=True)
    command.add_argument("-k", "--key", default="")
    command.add_argument("-r", "--results_dir")
    command.add_argument("-cm", "--classmap", dest="classmap")
    # TAO Deploy's evaluate (the deploy image): -m is the engine, -c its class map
    command.add_argument("-m", "--model_path")
    command.add_argument("-c", dest="deploy_classmap")
    for dummy in ("-i", "-l", "-b"):  # TF1 accepts and ignores them (deploy's options)
        command.add_argument(dummy)

    command = subtask("prune")
    command.add_argument("-m", "--model", required=True)
    command.add_argument("-o", "--output_file", required=True)
    command.add_argument("--results_dir")
    command.add_argument("-k", "--key", default="")
    fake_tao.add_pruning_options(command)

    command = subtask("inference")
    command.add_argument("-m", "--model_path", dest="model", required=True)
    command.add_argument("-k", "--key", default="")
    command.add_argument("-e", "--experiment_spec", dest="experiment_spec_file", required=True)
    images = command.add_mutually_exclusive_group(required=True)
    images.add_argument("-i", "--image")
    images.add_argument("-d", "--image_dir")
    command.add_argument("-b", "--batch_size", type=int, default=1)
    command.add_argument("-cm", "--classmap", required=True)
    command.add_argument("-r", "--results_dir")

    command = subtask("export")
    command.add_argument("-m", "--model", required=True)
    command.add_argument("-k", "--key", default="")
    command.add_argument("-o", "--output_file")
    command.add_argument("-e", "--experiment_spec", dest="experiment_spec_file")
    command.add_argument("--classmap_json")
    command.add_argument("--gen_ds_config", action="store_true")
    command.add_argument("--target_opset", type=int, default=12)
    command.add_argument("--static_batch_size", type=int, default=-1)
    command.add_argument("--results_dir")

    command = subtask("calibration_tensorfile")
    command.add_argument("-e", "--experiment_spec_file", required=True)
    command.add_argument("-o", "--output", dest="output_file", required=True)
    command.add_argument("-m", "--max_batches", type=int, default=1)
    command.add_argument("--use_validation_set", action="store_true")

    _gen_trt_engine_options(subtask("gen_trt_engine"))
    return parser, subtasks.choices


def classification_tf1_main(argv):
    """``classification_tf1 SUBTASK ...``: 0 on success (also for the failures TAO 5 records
    only in status.json), 255 on failure, 2 on a usage error."""
    common.use(TAO_5_0.version)
    if not argv or argv[0] not in SUBTASKS:
        # entrypoint.py: task = sys.argv[1] if it is a task, else None -> modules[None]
        say("Traceback (most recent call last):")
        say(f"KeyError: None  (the subtask must come first: classification_tf1 "
            f"{{{','.join(SUBTASKS)}}} ...; got {' '.join(argv[:1]) or 'nothing'})")
        return 1
    parser, subtask_parsers = _parser()
    arguments = parser.parse_args(argv)
    handlers = {"train": train, "evaluate": evaluate, "prune": prune, "inference": inference,
                "export": export, "calibration_tensorfile": calibration_tensorfile,
                "gen_trt_engine": gen_trt_engine}
    status = _StatusFile(getattr(arguments, "results_dir", None))
    injected = {name.strip() for name in os.environ.get(FAIL_ENV, "").split(",")}
    try:
        if arguments.gpus < 1:
            raise Failure("AssertionError: At least 1 GPU required to run any task.")
        if arguments.gpus > 1 and arguments.subtask != "train":
            raise Failure(f"AssertionError: Please use only 1 GPU for the task "
                          f"{arguments.subtask}.")
        # The script's own view of its options: the wrapper's round through bash.
        arguments = wrapper.reread(arguments, subtask_parsers[arguments.subtask])
        status = _StatusFile(getattr(arguments, "results_dir", None))
        if arguments.subtask + ":status" in injected:
            # e.g. evaluate's sys.exit(-1) on a bad class map, caught by its main()
            status.write("FAILURE", f"{arguments.subtask.capitalize()} was interrupted")
            say("Execution status: PASS")
            return 0
        if arguments.subtask in injected:
            raise Failure(f"{FAIL_ENV} asks {arguments.subtask} to fail: "
                          "CUDA_ERROR_OUT_OF_MEMORY (a simulated crash)")
        handlers[arguments.subtask](arguments, status)
    except wrapper.Crash as crash:
        return fake_tao.wrapper_crash(crash)
    except (Failure, wrapper.ScriptFailed) as failure:
        log(str(failure), "ERROR")
        status.write("FAILURE", str(failure))
        say("Execution status: FAIL")
        return 255
    say("Execution status: PASS")
    return 0
