"""TAO Toolkit 3.0 image-classification commands as Kubeflow Pipelines (v1) steps.

Each class wraps one command line of the ``ngc`` or ``classification``/``converter`` CLIs in
the TAO container and states only what is particular to it: its argv and whether it needs
GPUs. What every step shares (workspace volume, caching policy, secrets, scheduling) is
applied once, pipeline-wide, by ``tao_iva_classification_pipeline``; the image defaults to
the one ``docker/`` builds (``DEFAULT_IMAGE``).

Arguments are keyword-only. Paths are absolute paths inside the container (the pipeline
derives them from the workspace mount), values may be pipeline parameters, and every value
becomes one argv element: no step runs a shell.

Prerequisite on the cluster: the image built from ``docker/`` (TAO 3.0 plus the NGC CLI) in a
registry the nodes can pull from.
"""

from __future__ import annotations

from collections.abc import Sequence

from kfp import dsl
from kubernetes import client as k8s

from tao_step import RUNTIME_VERSION


def _default_image() -> str:
    # docker/image_tag.py is the one definition of the tag; docker/build.sh runs it as a
    # script (standard library only), so it is loaded by path rather than as a package.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().with_name("docker") / "image_tag.py"
    spec = importlib.util.spec_from_file_location("image_tag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.default_image()


# A step argument: a literal or a pipeline parameter (placeholder resolved by Argo).
Value = str | int | float | dsl.PipelineParam

# The tag docker/build.sh gives the image: docker/IMAGE plus a digest of its contents.
DEFAULT_IMAGE = _default_image()

# Where steps write what KFP collects (metrics, UI metadata, small outputs): inside the
# container, off the shared workspace, so runs never mix their reports.
OUTPUTS_DIR = "/tmp/kfp-outputs"
UI_OUTPUTS = {
    "mlpipeline-metrics": f"{OUTPUTS_DIR}/mlpipeline-metrics.json",
    "mlpipeline-ui-metadata": f"{OUTPUTS_DIR}/mlpipeline-ui-metadata.json",
}

# Runs the in-container code; an image built before it existed fails with a one-line
# instruction instead of Python's "No module named tao_step".
RUNTIME_BOOTSTRAP = (
    "import sys\n"
    "try:\n"
    "    from tao_step.__main__ import main\n"
    "except ImportError:\n"
    "    sys.exit('this image has no tao_step runtime: rebuild and push it with "
    "docker/build.sh (see docker/README.md), or compile with --image set to a current build')\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def runtime_command(*args: Value) -> list:
    """argv running ``python3 -m tao_step ARGS`` in the image, asking for the runtime
    version this pipeline was written against."""
    return ["python3", "-c", RUNTIME_BOOTSTRAP, "--require-runtime", str(RUNTIME_VERSION),
            *args]


def _name_value_flags(flag: str, values: dict) -> list:
    """``--flag NAME=VALUE`` for each item; a value may be a pipeline parameter."""
    return [arg for name, value in values.items() for arg in (flag, f"{name}={value}")]


class TaoOp(dsl.ContainerOp):
    """A step that runs in the pipeline's image.

    ``command`` is the TAO/NGC argv. It runs under ``tao_step report KIND``, which streams
    its output to the log, exits with its status, first moves aside what an earlier run
    left at the ``writes`` paths (TAO refuses or silently overwrites), and then publishes
    what ``report`` asks for to the KFP UI. ``outputs`` names small plain-text results
    other steps read. ``gpus`` is how many GPUs to request: 0, an int or a parameter; a
    step that requests none gets none, so it cannot use a node's GPUs by default visibility.
    """

    runs_tao = True  # TAO steps get shared memory and CPU/memory requests

    def __init__(
        self,
        *,
        name: str,
        command: Sequence[Value] = (),
        gpus: int | dsl.PipelineParam,
        report: Sequence[Value] = ("run",),
        writes: Sequence[Value] = (),
        outputs: Sequence[str] = (),
        runtime_args: Sequence[Value] = (),
    ) -> None:
        if runtime_args:  # another tao_step command than report, e.g. preflight
            argv, publishes = runtime_command(*runtime_args), False
        else:
            keep = [arg for path in writes for arg in ("--keep-previous", path)]
            tail = ["--", *command] if command else []
            argv = runtime_command("report", *report, "--out-dir", OUTPUTS_DIR, *keep, *tail)
            publishes = report[0] != "run"
        super().__init__(
            name=name,
            image=DEFAULT_IMAGE,
            command=argv[:1],
            arguments=argv[1:],
            file_outputs={
                **(UI_OUTPUTS if publishes else {}),
                **{output: f"{OUTPUTS_DIR}/{output}" for output in outputs},
            },
        )
        self.tao_command = list(command)
        self.gpus = gpus
        if isinstance(gpus, dsl.PipelineParam) or gpus:
            # Not set_gpu_limit(): with a parameter it emits the invalid resource key
            # "nvidia". A parameter here is moved into podSpecPatch, where Argo substitutes
            # it; a constant is written as a string, the type Kubernetes quantities have.
            self.container.add_resource_limit("nvidia.com/gpu", str(gpus))
        if self.runs_tao:
            # TAO's data loaders use /dev/shm; a pod's default 64 MiB is too small.
            self.add_volume(
                k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory"))
            )
            self.container.add_volume_mount(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))


class PreflightOp(TaoOp):
    """Checks the submitted form, the workspace's specs and dataset, and their agreement,
    before any GPU time is spent; fails naming each parameter or file and its fix."""

    runs_tao = False

    def __init__(self, *, name: str, workspace: Value, values: dict) -> None:
        super().__init__(name=name, gpus=0, runtime_args=[
            "preflight", "--workspace", workspace, *_name_value_flags("--param", values)])


class DownloadModelOp(TaoOp):
    """``ngc registry model download-version``: fetch a pretrained model from NGC into
    ``dest/<model>_v<version>/``."""

    runs_tao = False

    def __init__(self, *, name: str, model: Value, dest: Value) -> None:
        super().__init__(
            name=name,
            command=["ngc", "registry", "model", "download-version", model, "--dest", dest],
            gpus=0,
            report=("run", "--ngc-model", model, "--ngc-dest", dest),
        )


class TrainOp(TaoOp):
    """``classification train``: train (or retrain a pruned model) as the spec says;
    publishes the training curve. ``label`` is ``baseline`` or ``retrained``."""

    def __init__(
        self, *, name: str, label: str, spec: Value, results_dir: Value, num_gpus: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=["classification", "train", "--gpus", num_gpus, "-k", key,
                     "-e", spec, "-r", results_dir],
            gpus=num_gpus,
            report=("train", "--results-dir", results_dir, "--label", label),
            writes=[results_dir],
        )


class EvaluateOp(TaoOp):
    """``classification evaluate``: score the spec's ``eval_config.model_path``; publishes
    accuracy, confusion matrix and per-class table, and outputs ``top1_accuracy``.
    With ``min_accuracy`` it also outputs ``gate``: ``pass`` or ``fail``."""

    def __init__(
        self, *, name: str, label: str, spec: Value, key: Value,
        min_accuracy: Value | None = None,
    ) -> None:
        gate = ["--min-accuracy", min_accuracy, "--gate-file", f"{OUTPUTS_DIR}/gate"]
        super().__init__(
            name=name,
            command=["classification", "evaluate", "-e", spec, "-k", key],
            gpus=1,
            report=("evaluate", "--label", label, "--spec", spec,
                    *(gate if min_accuracy is not None else [])),
            outputs=["top1_accuracy", *(["gate"] if min_accuracy is not None else [])],
        )


class PruneOp(TaoOp):
    """``classification prune``: remove filters below the threshold; publishes the
    pruning ratio and sizes, and outputs ``pruning_ratio``."""

    def __init__(
        self,
        *,
        name: str,
        model: Value,
        output_file: Value,
        threshold: Value,
        equalization_criterion: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=["classification", "prune", "-k", key, "-m", model, "-o", output_file,
                     "-pth", threshold, "-eq", equalization_criterion],
            gpus=1,
            report=("prune", "--input-model", model, "--output-model", output_file),
            writes=[output_file],
            outputs=["pruning_ratio"],
        )


class InferenceOp(TaoOp):
    """``classification inference`` on a directory: writes ``result.csv`` into it;
    publishes a table of predictions and the count per class."""

    def __init__(
        self,
        *,
        name: str,
        spec: Value,
        model: Value,
        image_dir: Value,
        batch_size: Value,
        class_map: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=["classification", "inference", "-k", key, "-e", spec, "-m", model,
                     "-d", image_dir, "-b", batch_size, "-cm", class_map],
            gpus=1,
            report=("inference", "--image-dir", image_dir),
            writes=[f"{image_dir}/result.csv"],
        )


class ExportOp(TaoOp):
    """``classification export``: the FP32 ``.etlt`` model for deployment."""

    def __init__(self, *, name: str, model: Value, output_file: Value, key: Value) -> None:
        super().__init__(
            name=name,
            command=["classification", "export", "-m", model, "-k", key, "-o", output_file],
            gpus=1,
            writes=[output_file],
        )


class CalibrationTensorfileOp(TaoOp):
    """``classification calibration_tensorfile``: batches of training images for INT8.

    Reads only the spec's dataset, no model, so it needs no GPU and no training.
    """

    def __init__(self, *, name: str, spec: Value, max_batches: Value, output_file: Value) -> None:
        super().__init__(
            name=name,
            command=["classification", "calibration_tensorfile", "-e", spec,
                     "-m", max_batches, "-o", output_file],
            gpus=0,
            writes=[output_file],
        )


class ExportInt8Op(TaoOp):
    """``classification export`` with INT8 calibration: the ``.etlt`` and its cache."""

    def __init__(
        self,
        *,
        name: str,
        model: Value,
        output_file: Value,
        calibration_tensorfile: Value,
        data_type: Value,
        batches: Value,
        calibration_cache: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=["classification", "export", "-m", model, "-k", key, "-o", output_file,
                     "--cal_data_file", calibration_tensorfile, "--data_type", data_type,
                     "--batches", batches, "--cal_cache_file", calibration_cache, "-v"],
            gpus=1,
            writes=[output_file, calibration_cache],
        )


class ConvertTrtOp(TaoOp):
    """``converter``: build the TensorRT engine on the GPU; without a calibration cache, as
    FP16 and FP32 engines are built."""

    def __init__(
        self,
        *,
        name: str,
        model: Value,
        key: Value,
        output_node: Value,
        dims: Value,
        input_type: Value,
        max_batch_size: Value,
        precision: Value,
        engine_file: Value,
        batch_size: Value,
        calibration_cache: Value | None = None,
    ) -> None:
        cache = ["-c", calibration_cache] if calibration_cache is not None else []
        super().__init__(
            name=name,
            command=["converter", model, "-k", key, "-o", output_node, *cache, "-d", dims,
                     "-i", input_type, "-m", max_batch_size, "-t", precision,
                     "-e", engine_file, "-b", batch_size],
            gpus=1,
            report=("convert", "--engine", engine_file, "--precision", precision),
            writes=[engine_file],
        )


class ConvertTrtInt8Op(ConvertTrtOp):
    """``converter`` with the INT8 calibration cache the INT8 export wrote."""

    def __init__(self, *, calibration_cache: Value, **engine: Value) -> None:
        super().__init__(calibration_cache=calibration_cache, **engine)


class SummaryOp(TaoOp):
    """The run-level report: baseline against retrained accuracy, pruning, the quality
    gate, and every artifact with its path and size. Fails when the gate failed, so the
    run list shows the model did not pass."""

    runs_tao = False

    def __init__(
        self,
        *,
        name: str,
        baseline_accuracy: Value,
        retrained_accuracy: Value,
        pruning_ratio: Value,
        min_accuracy: Value,
        gate: Value,
        artifacts: dict,
    ) -> None:
        super().__init__(
            name=name,
            gpus=0,
            report=("summary", "--baseline-accuracy", baseline_accuracy,
                    "--retrained-accuracy", retrained_accuracy,
                    "--pruning-ratio", pruning_ratio, "--min-accuracy", min_accuracy,
                    "--gate", gate,
                    *_name_value_flags("--artifact", artifacts)),
        )
