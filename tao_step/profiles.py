"""The TAO releases this pipeline runs on, and everything that differs between them.

One ``Profile`` per release, read by the pipeline (which image, which CLI, which Create Run
form), by the steps (how a TAO command's success is judged) and by the checks (which spec
schema, which file names). Nothing else in the project tests a version number: a new
release is a new entry in ``PROFILES`` plus its tests.

Sources: ``shared/reference/tao-classification-cli.md`` (3.0) and
``shared/reference/tao5-classification-tf1.md`` (5.0), checked against NVIDIA's
tao_tensorflow1_backend@d73dcfc ("TAO 5.0 Release - TF1"), tao_deploy@a285787 (5.0) and
tao_launcher@77e0790 (5.0); docs/tao5.md cites file by file.

Runs inside the TAO images (Python 3.6 in 3.0, 3.8 in 5.0) and on the host: standard
library only.
"""

from collections import OrderedDict
from typing import NamedTuple, Tuple

from tao_step.form import FOLDER_OUT, FRACTION, PARAMETERS, STEP_NAMES, WRITTEN, Parameter

# Subtasks that read a model and so take -k (the key of a .tlt/.etlt); the same in both
# releases (TAO 5's calibration_tensorfile reads no model and has no -k; gen_trt_engine
# reads the plain ONNX, its -k is for .etlt only).
KEY_SUBTASKS = ("train", "evaluate", "prune", "inference", "export")


class Engine(NamedTuple):
    """How a release builds the TensorRT engine: the pipeline's wiring for it
    (``ENGINE_WIRING`` in the pipeline module) and the steps that wiring adds."""
    # "converter" (tao-converter on the INT8 .etlt) or "gen_trt_engine" (classification_tf1
    # gen_trt_engine on the ONNX, in the deploy image).
    wiring: str
    steps: Tuple[str, ...]
    # The image folder under docker/ of its own image ("deploy"), if it has one.
    image_dir: str = ""
    # Outputs its steps write that another step writes in 3.0: (parameter, step).
    writes: Tuple[Tuple[str, str], ...] = ()
    # Why the build does not measure the engine's own accuracy (the summary says so after
    # the engine, pointing at the README's "The engine's own accuracy").
    unmeasured: str = ""


class Profile(NamedTuple):
    """A release: what differs from the 3.0 build. Fields left out are as in 3.0."""
    version: str
    # The compiled pipeline's description, as the Kubeflow UI shows it.
    description: str
    # The classification CLI in the training image; its first argument is the subtask. It is
    # a wrapper that re-reads its arguments with bash (tao_step/shell.py).
    cli: str
    # What training writes each epoch: <results>/weights/<arch>_<epoch:03d><suffix>.
    checkpoint_suffix: str
    engine: Engine
    # The image folder under docker/ that runs every TAO step (docker/image_tag.py).
    image_dir: str = "docker"
    # Where the shipped specs for this release live in the repository.
    specs_dir: str = "specs"
    # Environment of every TAO step.
    env: Tuple[Tuple[str, str], ...] = ()
    # Whether subtasks append JSON status lines to <results_dir>/status.json, where a
    # failure may be recorded although the command exits 0.
    status_json: bool = False
    # Whether export needs the spec (-e): TAO 5's ONNX exporter reads it.
    export_spec: bool = False
    # The Create Run form (tao_step.form): parameters this release has no use for, new
    # ones, and defaults that differ.
    dropped_parameters: Tuple[str, ...] = ()
    added_parameters: Tuple[Parameter, ...] = ()
    changed_defaults: Tuple[Tuple[str, str], ...] = ()
    # Output parameters whose value must end in a suffix, and why: TAO 5's prune saves
    # <o>.hdf5 and then fails on <o>; its export appends .onnx to a path without "onnx".
    required_suffixes: Tuple[Tuple[str, str, str], ...] = ()
    # Parameters that may be left empty: TAO 5 needs a key only for .tlt/.etlt models, and
    # its wrapper drops an empty -k.
    optional_parameters: Tuple[str, ...] = ()

    # -- derived ---------------------------------------------------------------------------
    @property
    def spec_schema(self):
        """Which spec schema tao_step.specs checks against: the release's own."""
        return self.version

    @property
    def key_subtasks(self):
        return KEY_SUBTASKS

    @property
    def engine_builder(self):
        return self.engine.wiring

    @property
    def int8_export(self):
        """Whether a separate INT8 .etlt export (with its cache) exists."""
        return "export-int8-model" in self.engine.steps

    @property
    def image_dirs(self):
        """Image folders under docker/ by role: "train" runs every TAO step, "deploy" (if
        any) builds the TensorRT engine."""
        return (("train", self.image_dir),) + (
            (("deploy", self.engine.image_dir),) if self.engine.image_dir else ())

    @property
    def output_steps(self):
        """Outputs another step writes than in 3.0 (tao_step.outputs): (parameter, step)."""
        return self.engine.writes


TAO_3_0 = Profile(
    version="3.0",
    description=(
        "TAO Toolkit 3.0 image classification: download a pretrained model from NGC, train, "
        "evaluate, prune, retrain, evaluate again, test inference, export FP32 and INT8, and "
        "build a TensorRT engine."),
    cli="classification",
    checkpoint_suffix=".tlt",
    engine=Engine("converter", ("export-int8-model", "convert-trt"), unmeasured=(
        "the TAO 3.0 image cannot run a TensorRT engine over images (its evaluate and "
        "inference load only .tlt models)")),
)

TAO_5_0 = Profile(
    version="5.0",
    description=(
        "TAO Toolkit 5.0 (TF1) image classification: download a pretrained model from NGC, "
        "train, evaluate, prune, retrain, evaluate again, test inference, export ONNX, and "
        "build a TensorRT engine with TAO Deploy."),
    cli="classification_tf1",
    checkpoint_suffix=".hdf5",
    # No INT8 export: gen_trt_engine calibrates and writes the cache itself.
    # evaluate-engine measures the engine with TAO Deploy's evaluate, so nothing is
    # left unmeasured.
    engine=Engine("gen_trt_engine", ("convert-trt", "evaluate-engine"), "docker/tao5/deploy",
                  (("export_int8_cache_file", "convert-trt"),)),
    image_dir="docker/tao5/tf1",
    specs_dir="specs/tao5",
    # The wrappers send telemetry after every subtask unless opted out; on an offline
    # cluster each send waits for its timeout (cv/common/telemetry/telemetry.py).
    env=(("TELEMETRY_OPT_OUT", "yes"),),
    status_json=True,
    export_spec=True,
    # The ONNX is precision-free (no INT8 export), and gen_trt_engine reads the input
    # layer, dimensions and output node from it.
    dropped_parameters=("export_int8_model_output_file", "convert_trt_output_layer",
                        "convert_trt_dims", "convert_trt_input_type"),
    added_parameters=(
        Parameter("convert_trt_results_dir", "tao-experiments/export/gen_trt_engine",
                  "gen_trt_engine's results folder (-r): its status.json and log",
                  FOLDER_OUT, WRITTEN, "convert-trt",
                  example="tao-experiments/export/gen_trt_engine"),
        Parameter("max_engine_accuracy_drop", "0.01",
                  "largest top-1 accuracy the TensorRT engine may lose against the retrained "
                  "model (fraction 0–1: 0.01 is one point); evaluate-engine fails the run "
                  "when it loses more", FRACTION, example="0.01",
                  rule=("the top-1 accuracy the engine may lose, as a fraction",
                        "1 accepts any engine")),
    ),
    changed_defaults=(
        ("prune_model_input_file", "tao-experiments/output/weights/resnet_080.hdf5"),
        ("prune_model_output_file",
         "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.hdf5"),
        ("test_infer_model_input_file",
         "tao-experiments/output-retrain/weights/resnet_080.hdf5"),
        ("export_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.hdf5"),
        ("export_model_output_file", "tao-experiments/export/final_model.onnx"),
    ),
    required_suffixes=(
        ("prune_model_output_file", ".hdf5",
         "TAO 5 prune saves <name>.hdf5 and then fails looking for <name>"),
        ("export_model_output_file", ".onnx",
         "TAO 5 export appends .onnx to any other name, where no later step looks"),
    ),
    optional_parameters=("api_key",),
)

PROFILES = OrderedDict((profile.version, profile) for profile in (TAO_3_0, TAO_5_0))
DEFAULT_VERSION = "3.0"


def get(version):
    """The profile of ``version`` ("3.0", "5.0"); KeyError naming the known ones."""
    try:
        return PROFILES[version]
    except KeyError:
        raise KeyError("TAO version %r is not supported (use one of %s)"
                       % (version, ", ".join(PROFILES))) from None


def gated_work(profile):
    """What the quality gate holds back, in words: the exports and the engine build."""
    steps = ["export"] + (["INT8 export"] if profile.int8_export else [])
    return ", ".join(steps) + " and TensorRT conversion"


def release_args(version):
    """``--tao-version V`` for a tao_step command, nothing for the default release (so the
    default build reads as it always did)."""
    return [] if version == DEFAULT_VERSION else ["--tao-version", version]


def all_parameters():
    """Every release's Create Run parameters, each once: the 3.0 form, then the ones
    releases add."""
    return PARAMETERS + tuple(p for profile in PROFILES.values()
                              for p in profile.added_parameters)


def step_names(profile):
    """The steps of ``profile``'s build, in the UI's order: every step of the form's table
    but the engine steps only other releases have."""
    others = {step for other in PROFILES.values() for step in other.engine.steps}
    return tuple(step for step in STEP_NAMES
                 if step not in others or step in profile.engine.steps)
