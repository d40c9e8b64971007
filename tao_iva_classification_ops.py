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
from pathlib import Path

from kfp import dsl
from kubernetes import client as k8s

# A step argument: a literal or a pipeline parameter (placeholder resolved by Argo).
Value = str | int | float | dsl.PipelineParam

# The tag docker/build.sh gives the image; kept in one file that both read.
DEFAULT_IMAGE = (Path(__file__).resolve().parent / "docker" / "IMAGE").read_text().strip()

class TaoOp(dsl.ContainerOp):
    """A step that runs in the TAO container.

    ``gpus`` is how many GPUs the step requests from Kubernetes: 0 for none, an int, or a
    pipeline parameter. A step that requests none gets none, so it cannot grab a node's GPUs
    through the NVIDIA runtime's default visibility.
    """

    uses_shared_memory = True

    def __init__(
        self,
        *,
        name: str,
        command: Sequence[Value],
        gpus: int | dsl.PipelineParam,
        file_outputs: dict | None = None,
    ) -> None:
        super().__init__(
            name=name,
            image=DEFAULT_IMAGE,
            command=[command[0]],
            arguments=list(command[1:]),
            file_outputs=file_outputs,
        )
        self.gpus = gpus
        if isinstance(gpus, dsl.PipelineParam) or gpus:
            # Not set_gpu_limit(): with a parameter it emits the invalid resource key
            # "nvidia". A parameter here is moved into podSpecPatch, where Argo substitutes
            # it; a constant is written as a string, the type Kubernetes quantities have.
            self.container.add_resource_limit("nvidia.com/gpu", str(gpus))
        if self.uses_shared_memory:
            # TAO's data loaders use /dev/shm; a pod's default 64 MiB is too small.
            self.add_volume(
                k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory"))
            )
            self.container.add_volume_mount(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))


class DownloadModelOp(TaoOp):
    """``ngc registry model download-version``: fetch a pretrained model from NGC."""

    uses_shared_memory = False

    def __init__(self, *, name: str, model: Value, dest: Value) -> None:
        super().__init__(
            name=name,
            command=["ngc", "registry", "model", "download-version", model, "--dest", dest],
            gpus=0,
        )


class TrainOp(TaoOp):
    """``classification train``: train (or retrain a pruned model) as the spec says."""

    def __init__(
        self, *, name: str, spec: Value, results_dir: Value, num_gpus: Value, key: Value
    ) -> None:
        super().__init__(
            name=name,
            command=[
                "classification", "train", "--gpus", num_gpus, "-k", key,
                "-e", spec, "-r", results_dir,
            ],
            gpus=num_gpus,
        )


class EvaluateOp(TaoOp):
    """``classification evaluate``: score the spec's ``eval_config.model_path``."""

    def __init__(self, *, name: str, spec: Value, key: Value) -> None:
        super().__init__(
            name=name,
            command=["classification", "evaluate", "-e", spec, "-k", key],
            gpus=1,
        )


class PruneOp(TaoOp):
    """``classification prune``: remove filters below the threshold."""

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
            command=[
                "classification", "prune", "-k", key, "-m", model, "-o", output_file,
                "-pth", threshold, "-eq", equalization_criterion,
            ],
            gpus=1,
        )


class InferenceOp(TaoOp):
    """``classification inference`` on a directory: writes ``result.csv`` into it."""

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
            command=[
                "classification", "inference", "-k", key, "-e", spec, "-m", model,
                "-d", image_dir, "-b", batch_size, "-cm", class_map,
            ],
            gpus=1,
        )


class ExportOp(TaoOp):
    """``classification export``: the FP32 ``.etlt`` model for deployment."""

    def __init__(self, *, name: str, model: Value, output_file: Value, key: Value) -> None:
        super().__init__(
            name=name,
            command=["classification", "export", "-m", model, "-k", key, "-o", output_file],
            gpus=1,
        )


class CalibrationTensorfileOp(TaoOp):
    """``classification calibration_tensorfile``: batches of training images for INT8.

    Reads only the spec's dataset, no model, so it needs no GPU and no training.
    """

    def __init__(self, *, name: str, spec: Value, max_batches: Value, output_file: Value) -> None:
        super().__init__(
            name=name,
            command=[
                "classification", "calibration_tensorfile", "-e", spec,
                "-m", max_batches, "-o", output_file,
            ],
            gpus=0,
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
            command=[
                "classification", "export", "-m", model, "-k", key, "-o", output_file,
                "--cal_data_file", calibration_tensorfile, "--data_type", data_type,
                "--batches", batches, "--cal_cache_file", calibration_cache, "-v",
            ],
            gpus=1,
        )


def _converter_argv(
    *,
    model: Value,
    key: Value,
    output_node: Value,
    calibration_cache: Value | None,
    dims: Value,
    input_type: Value,
    max_batch_size: Value,
    precision: Value,
    engine_file: Value,
    batch_size: Value,
) -> list:
    cache = ["-c", calibration_cache] if calibration_cache is not None else []
    return [
        "converter", model, "-k", key, "-o", output_node, *cache, "-d", dims,
        "-i", input_type, "-m", max_batch_size, "-t", precision, "-e", engine_file,
        "-b", batch_size,
    ]


class ConvertTrtInt8Op(TaoOp):
    """``converter`` with an INT8 calibration cache: build the TensorRT engine on the GPU."""

    def __init__(
        self,
        *,
        name: str,
        model: Value,
        key: Value,
        output_node: Value,
        calibration_cache: Value,
        dims: Value,
        input_type: Value,
        max_batch_size: Value,
        precision: Value,
        engine_file: Value,
        batch_size: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=_converter_argv(
                model=model, key=key, output_node=output_node,
                calibration_cache=calibration_cache, dims=dims, input_type=input_type,
                max_batch_size=max_batch_size, precision=precision,
                engine_file=engine_file, batch_size=batch_size,
            ),
            gpus=1,
        )


class ConvertTrtOp(TaoOp):
    """``converter`` without a calibration cache, for FP16 or FP32 engines."""

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
    ) -> None:
        super().__init__(
            name=name,
            command=_converter_argv(
                model=model, key=key, output_node=output_node, calibration_cache=None,
                dims=dims, input_type=input_type, max_batch_size=max_batch_size,
                precision=precision, engine_file=engine_file, batch_size=batch_size,
            ),
            gpus=1,
        )
