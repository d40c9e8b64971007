"""TAO Toolkit 3.0 image classification (ResNet-18 transfer learning) as a Kubeflow pipeline.

    python tao_iva_classification_pipeline.py            # writes <this file>.tar.gz
    python tao_iva_classification_pipeline.py --help     # every option

Upload the package in the Kubeflow Pipelines UI (or with ``kfp pipeline upload``) and fill
the Create Run form; the parameters keep the names of NVIDIA's original sample.

What must exist on the cluster before a run:
- the image built from ``docker/`` in a registry the nodes can pull from (``--image``);
- on the node(s) that run the steps, the workspace directory ``tao_mount_dir`` holding
  ``specs/`` and the dataset under ``tao-experiments/data/split/`` (see README.md); the
  steps mount it as a hostPath of type ``Directory``, so a node without it fails the pod
  at once instead of training on an empty directory;
- GPU nodes that advertise ``nvidia.com/gpu`` (NVIDIA device plugin or GPU operator).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import tao_iva_classification_ops as ops

PIPELINE_NAME = "tao-iva-classification"
PIPELINE_DESCRIPTION = (
    "TAO Toolkit 3.0 image classification: download a pretrained model from NGC, train, "
    "evaluate, prune, retrain, evaluate again, test inference, export FP32 and INT8, and "
    "build a TensorRT engine."
)

# The volume every step mounts: the workspace holding models, specs, data and results.
WORKSPACE_VOLUME = "nvidia-workspace"

COMPILED_SUFFIXES = (".tar.gz", ".zip", ".yaml")
DEFAULT_OUTPUT = Path(__file__).resolve().with_name(Path(__file__).name + ".tar.gz")


class Param(NamedTuple):
    name: str
    default: str
    help: str


# The Create Run form, in the original sample's order. Every path except tao_mount_dir is
# relative to tao_mount_dir. Defaults agree with specs/*.cfg (80 epochs -> resnet_080.tlt).
PARAMETERS = (
    Param("pretrained_model_name", "nvidia/tao/pretrained_classification:resnet18",
          "NGC model to download, org/team/model:version"),
    Param("pretrained_model_dir", "models",
          "where download-model stores it; the train spec's pretrained_model_path points "
          "inside"),
    Param("train_classification_data", "tao-experiments/data",
          "dataset root (documentation only: TAO reads the dataset paths from the specs)"),
    Param("train_classification_spec", "specs/classification_spec.cfg",
          "spec of the first training; evaluate-model scores its eval_config.model_path"),
    Param("train_classification_output", "tao-experiments/output",
          "results directory of the first training (weights/, classmap.json)"),
    Param("train_num_gpus", "1", "GPUs for train-model and retrain-model"),
    Param("prune_model_input_file", "tao-experiments/output/weights/resnet_080.tlt",
          "model to prune: the first training's last checkpoint"),
    Param("prune_model_output_file",
          "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt",
          "pruned model; the retrain spec's pretrained_model_path"),
    Param("prune_equalization_criterion", "union",
          "union, intersection, arithmetic_mean or geometric_mean"),
    Param("prune_threshold", "0.6", "pruning threshold: higher prunes more"),
    Param("retrain_classification_spec", "specs/classification_retrain_spec.cfg",
          "spec of the retraining; also read by reevaluate-model and test-infer"),
    Param("retrain_classification_output", "tao-experiments/output-retrain",
          "results directory of the retraining"),
    Param("test_infer_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt",
          "model test-infer runs: the retraining's last checkpoint"),
    Param("test_infer_image_path", "tao-experiments/data/split/test/person",
          "directory of images to classify; result.csv is written into it"),
    Param("test_infer_class_map", "tao-experiments/output-retrain/classmap.json",
          "class map the retraining wrote"),
    Param("test_infer_batch_size", "16", "inference batch size"),
    Param("export_model_input_file", "tao-experiments/output-retrain/weights/resnet_080.tlt",
          "model to export (both exports)"),
    Param("export_model_output_file", "tao-experiments/export/final_model.etlt",
          "FP32 exported model"),
    Param("calibrate_classification_spec", "specs/classification_retrain_spec.cfg",
          "spec whose training data feeds INT8 calibration"),
    Param("calibrate_max_batches", "10", "batches in the calibration tensorfile"),
    Param("calibrate_output_file", "tao-experiments/export/calibration.tensor",
          "calibration tensorfile"),
    Param("export_int8_cache_file", "tao-experiments/export/final_model_int8_cache.bin",
          "INT8 calibration cache written by export-int8-model, read by convert-trt"),
    Param("export_int8_batches", "10", "calibration batches used by the INT8 export"),
    Param("export_int8_model_output_file", "tao-experiments/export/final_int8_model.etlt",
          "INT8 exported model; convert-trt builds the engine from it"),
    Param("convert_trt_output_file", "tao-experiments/export/final_model.trt",
          "TensorRT engine"),
    Param("convert_trt_output_layer", "predictions/Softmax", "output node of the network"),
    Param("convert_trt_dims", "3,224,224", "input dimensions C,H,W (the spec's input_image_size)"),
    Param("convert_trt_input_type", "nchw", "nchw, nhwc or nc"),
    Param("convert_trt_max_batch_size", "64", "largest batch the engine accepts"),
    Param("convert_trt_precision", "int8",
          "int8, fp16 or fp32: the engine's precision and the data type of export-int8-model"),
    Param("convert_trt_batch_size", "64", "calibration batch size of the converter"),
    Param("tao_mount_dir", "/mnt/workspace",
          "absolute path of the workspace on the node, mounted at the same path in every step"),
    Param("api_key", "nvidia_tlt",
          "TAO model key (-k); nvidia_tlt for NGC's public TAO models; not an NGC API key"),
)


@dataclass(frozen=True)
class CompileOptions:
    """Choices made when compiling, as opposed to when filling the Create Run form."""

    image: str = ops.DEFAULT_IMAGE


def make_pipeline(options: CompileOptions = CompileOptions()) -> Callable:
    """The pipeline function for ``options``: the form is PARAMETERS, the body ``_wire``."""
    from kfp import dsl

    signature = inspect.Signature(
        [
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              default=p.default, annotation=str)
            for p in PARAMETERS
        ]
    )

    def tao_iva_classification(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _wire(bound.arguments, options)

    tao_iva_classification.__signature__ = signature
    tao_iva_classification.__annotations__ = {p.name: str for p in PARAMETERS}
    return dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)(
        tao_iva_classification
    )


def _wire(p: dict, options: CompileOptions) -> None:
    """The DAG. Steps exchange files on the workspace, so each edge is an ``after``: it
    exists exactly where a step reads what another writes (docs/pipeline.md explains each).
    """
    from kfp import dsl

    dsl.get_pipeline_conf().add_op_transformer(_step_settings(p["tao_mount_dir"], options))

    def ws(name: str) -> str:
        return f"{p['tao_mount_dir']}/{p[name]}"

    key = p["api_key"]

    download = ops.DownloadModelOp(
        name="download-model", model=p["pretrained_model_name"], dest=ws("pretrained_model_dir")
    )
    train = ops.TrainOp(
        name="train-model", spec=ws("train_classification_spec"),
        results_dir=ws("train_classification_output"), num_gpus=p["train_num_gpus"], key=key,
    ).after(download)
    ops.EvaluateOp(name="evaluate-model", spec=ws("train_classification_spec"), key=key).after(
        train
    )
    prune = ops.PruneOp(
        name="prune-model", model=ws("prune_model_input_file"),
        output_file=ws("prune_model_output_file"), threshold=p["prune_threshold"],
        equalization_criterion=p["prune_equalization_criterion"], key=key,
    ).after(train)
    retrain = ops.TrainOp(
        name="retrain-model", spec=ws("retrain_classification_spec"),
        results_dir=ws("retrain_classification_output"), num_gpus=p["train_num_gpus"], key=key,
    ).after(prune)
    ops.EvaluateOp(
        name="reevaluate-model", spec=ws("retrain_classification_spec"), key=key
    ).after(retrain)
    ops.InferenceOp(
        name="test-infer", spec=ws("retrain_classification_spec"),
        model=ws("test_infer_model_input_file"), image_dir=ws("test_infer_image_path"),
        batch_size=p["test_infer_batch_size"], class_map=ws("test_infer_class_map"), key=key,
    ).after(retrain)
    ops.ExportOp(
        name="export-model", model=ws("export_model_input_file"),
        output_file=ws("export_model_output_file"), key=key,
    ).after(retrain)
    # Calibration reads only the spec's training images: it runs from the start.
    calibrate = ops.CalibrationTensorfileOp(
        name="calibrate-model", spec=ws("calibrate_classification_spec"),
        max_batches=p["calibrate_max_batches"], output_file=ws("calibrate_output_file"),
    )
    export_int8 = ops.ExportInt8Op(
        name="export-int8-model", model=ws("export_model_input_file"),
        output_file=ws("export_int8_model_output_file"),
        calibration_tensorfile=ws("calibrate_output_file"),
        data_type=p["convert_trt_precision"], batches=p["export_int8_batches"],
        calibration_cache=ws("export_int8_cache_file"), key=key,
    ).after(retrain, calibrate)

    engine = dict(
        name="convert-trt", model=ws("export_int8_model_output_file"), key=key,
        output_node=p["convert_trt_output_layer"], dims=p["convert_trt_dims"],
        input_type=p["convert_trt_input_type"], max_batch_size=p["convert_trt_max_batch_size"],
        precision=p["convert_trt_precision"], engine_file=ws("convert_trt_output_file"),
        batch_size=p["convert_trt_batch_size"],
    )
    # Only an INT8 build reads the calibration cache; an FP16/FP32 export writes none, so
    # those engines are built without -c. Both variants are shown as convert-trt.
    with dsl.Condition(p["convert_trt_precision"] == "int8", name="int8-engine"):
        ops.ConvertTrtInt8Op(calibration_cache=ws("export_int8_cache_file"), **engine).after(
            export_int8
        )
    with dsl.Condition(p["convert_trt_precision"] != "int8", name="fp-engine"):
        ops.ConvertTrtOp(**engine).after(export_int8).set_display_name("convert-trt")


def _step_settings(mount_dir, options: CompileOptions) -> Callable:
    """What every step gets, applied once for the whole pipeline."""
    from kubernetes import client as k8s

    def apply(op):
        op.container.image = options.image
        # The v1 backend caches by template, not by workspace contents: a re-run with the
        # same form would silently skip all training. P0D is the switch it honours.
        op.execution_options.caching_strategy.max_cache_staleness = "P0D"
        op.set_caching_options(False)  # the label alone does nothing on v1; keeps YAML honest
        op.add_volume(
            k8s.V1Volume(
                name=WORKSPACE_VOLUME,
                host_path=k8s.V1HostPathVolumeSource(path=str(mount_dir), type="Directory"),
            )
        )
        op.container.add_volume_mount(
            k8s.V1VolumeMount(name=WORKSPACE_VOLUME, mount_path=str(mount_dir))
        )
        return op

    return apply


def compile_pipeline(options: CompileOptions, output: Path) -> None:
    from kfp import compiler

    with warnings.catch_warnings():
        # kfp 1.8 warns on every direct ContainerOp; these steps are ContainerOps by design.
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message="Please create reusable components"
        )
        compiler.Compiler().compile(make_pipeline(options), str(output))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _output_path(text: str) -> Path:
    if not text.endswith(COMPILED_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in {', '.join(COMPILED_SUFFIXES)} "
            "(the format is chosen by the suffix)"
        )
    return Path(text)


def _image(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image reference (e.g. registry.example.com/tao-kfp:v1)"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else None,
        description="Compile the TAO image-classification pipeline for Kubeflow Pipelines.",
        epilog="Upload the result in the Kubeflow UI (Pipelines > Upload pipeline) or with "
        "'kfp pipeline upload -p NAME FILE'.",
    )
    parser.add_argument(
        "--output", "-o", type=_output_path, default=DEFAULT_OUTPUT, metavar="PATH",
        help="where to write the compiled pipeline; .tar.gz (default, %(default)s), .zip "
        "or .yaml",
    )
    parser.add_argument(
        "--image", type=_image, default=ops.DEFAULT_IMAGE,
        help="container image of every step, as the cluster pulls it (default: %(default)s, "
        "the tag docker/build.sh gives; push it to your registry and name it here)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = CompileOptions(image=args.image)
    if not args.output.parent.is_dir():
        print(f"error: --output: directory {args.output.parent} does not exist", file=sys.stderr)
        return 2
    compile_pipeline(options, args.output)
    print(f"wrote {args.output}")
    return 0


# The default build, which `dsl-compile --py` finds when it imports this module.
tao_iva_classification_pipeline = make_pipeline()

if __name__ == "__main__":
    sys.exit(main())
