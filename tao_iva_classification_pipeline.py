"""TAO Toolkit image classification (ResNet-18 transfer learning) as a Kubeflow pipeline.

    python tao_iva_classification_pipeline.py            # writes <this file>.tar.gz (TAO 3.0)
    python tao_iva_classification_pipeline.py --tao-version 5.0   # the TAO 5 (TF1) build
    python tao_iva_classification_pipeline.py --help     # every option

Upload the package in the Kubeflow Pipelines UI (or with ``kfp pipeline upload``) and fill
the Create Run form; the parameters keep the names of NVIDIA's original sample.

This module is the pipeline: the form, the compile-time options, the DAG, what every step
gets (one op transformer) and compiling. The command's options, notes and dry run are in
``tao_iva_classification_cli.py``; the steps are in ``tao_iva_classification_ops.py``.

What must exist on the cluster before a run:
- the image(s) built from ``docker/`` in a registry the nodes can pull from (``--image``;
  with TAO 5 also ``--deploy-image``);
- on the node(s) that run the steps, the workspace directory ``tao_mount_dir`` holding
  ``specs/`` and the dataset under ``tao-experiments/data/split/`` (see README.md); the
  steps mount it as a hostPath of type ``Directory``, so a node without it fails the pod
  at once instead of training on an empty directory; namespaces that enforce the Baseline
  Pod Security Standard refuse hostPath volumes, so there it must be behind a
  PersistentVolumeClaim (``--pvc``; docs/storage.md);
- GPU nodes that advertise ``nvidia.com/gpu`` (NVIDIA device plugin or GPU operator).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kfp import dsl

import tao_iva_classification_ops as ops
from tao_step import claims, form, profiles, results

PIPELINE_NAME = "tao-iva-classification"

# The volume every step mounts: the workspace holding models, specs, data and results.
WORKSPACE_VOLUME = "nvidia-workspace"


# The Create Run form (in the original sample's order, then min_accuracy) and the steps,
# from the one table in tao_step/form.py; a release's differences are in its profile.
Param = form.Parameter
PARAMETERS = form.PARAMETERS
# Per-step time limits (activeDeadlineSeconds) unless --step-timeout says otherwise.
DEFAULT_TIMEOUTS = form.DEFAULT_TIMEOUTS
DEFAULT_TIMEOUT = form.DEFAULT_TIMEOUT
STEP_NAMES = form.STEP_NAMES
# What the run summary lists: the name it shows, the parameter giving the path, and what
# follows it; folders are listed with the size of all they hold.
SUMMARY_ARTIFACTS = form.summary_artifacts(profiles.all_parameters())

# Where a --key-secret value reaches TAO: Kubernetes expands $(TAO_API_KEY) in the args.
KEY_ENV = form.KEY_ENV
KEY_REFERENCE = f"$({KEY_ENV})"
# What the NGC CLI reads for authenticated downloads.
NGC_KEY_ENV = "NGC_CLI_API_KEY"


class SecretRef(NamedTuple):
    name: str
    key: str


@dataclass(frozen=True)
class CompileOptions:
    """Choices made when compiling, as opposed to when filling the Create Run form.
    Every field's default is the original sample's behaviour or a safe addition to it."""

    # The TAO release (tao_step/profiles.py): its CLIs, images, form and specs.
    tao_version: str = profiles.DEFAULT_VERSION
    # Images of the TAO steps and, for releases with one, of the TensorRT build; None: the
    # tags docker/build.sh gives.
    image: str | None = None
    deploy_image: str | None = None
    # Storage: an existing PersistentVolumeClaim instead of the hostPath at tao_mount_dir.
    pvc: str | None = None
    # Secrets: TAO model key (replaces the api_key field), NGC API key, registry login.
    key_secret: SecretRef | None = None
    ngc_secret: SecretRef | None = None
    image_pull_secrets: tuple = ()
    # Scheduling: node labels to match, and tolerating the nvidia.com/gpu taint.
    node_selector: tuple = ()
    gpu_toleration: bool = False
    # Requests of every TAO step, so a busy node neither starves nor evicts it first.
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    # Requests of the light steps (checks, download, report, release): small, but not none,
    # which would make them BestEffort pods, the first a busy node evicts.
    light_cpu_request: str = "250m"
    light_memory_request: str = "512Mi"
    # activeDeadlineSeconds per step name, over DEFAULT_TIMEOUTS / DEFAULT_TIMEOUT.
    timeouts: tuple = ()
    # Create Run defaults changed at compile time (--param): a pre-filled form.
    defaults: tuple = ()

    @property
    def profile(self) -> profiles.Profile:
        return profiles.get(self.tao_version)

    def images(self) -> dict:
        """``{role: image}``: the profile's images, as given or as docker/build.sh tags them."""
        given = {"train": self.image, "deploy": self.deploy_image}
        return {role: given[role] or default
                for role, default in ops.default_images(self.profile).items()}

    def timeout(self, step: str) -> int:
        return dict(self.timeouts).get(step, DEFAULT_TIMEOUTS.get(step, DEFAULT_TIMEOUT))

    def parameters(self) -> tuple:
        """The release's Create Run parameters (PARAMETERS changed as its profile says),
        with the key field whatever the secrets."""
        return form.parameters_of(self.profile)

    def form(self) -> tuple:
        """The Create Run parameters this build shows, with their defaults."""
        hidden = {"api_key"} if self.key_secret else set()
        changed = dict(self.defaults)
        return tuple(p._replace(default=changed.get(p.name, p.default))
                     for p in self.parameters() if p.name not in hidden)

    def problems(self) -> list:
        """What is wrong with the form's defaults, by the checks the preflight step runs
        on the submitted values (so a pre-filled form cannot ship a mistake)."""
        from tao_step.preflight import validate_values

        values = {p.name: p.default for p in self.form()}
        if self.key_secret:
            values["api_key"] = "from-the-secret"  # checked at run time, in the pod
        return validate_values(values, self.profile, self.bash_read())

    def bash_read(self) -> tuple:
        """The parameters whose values reach a TAO command wrapper, which re-reads them
        with bash: read from this build's steps, as the compiler creates them."""
        with _kfp_quiet(), dsl.Pipeline(PIPELINE_NAME) as scratch:
            make_pipeline(self)(*(dsl.PipelineParam(p.name) for p in self.form()))
        return bash_read_parameters(scratch.ops.values())


def bash_read_parameters(steps) -> tuple:
    """The parameters in the TAO commands of ``steps`` that a wrapper re-reads with bash
    (``TaoOp.bash_read_values``): those given as pipeline parameters, and api_key where
    the key Secret stands in for it."""
    values = [value for step in steps for value in step.bash_read_values()]
    names = ops.parameters_in(values)
    if any(KEY_REFERENCE in str(value) for value in values):
        names.add("api_key")
    return tuple(sorted(names))


def make_pipeline(options: CompileOptions = CompileOptions()) -> Callable:
    """The pipeline function for ``options``: the form is PARAMETERS, the body ``_wire``."""
    form = options.form()
    signature = inspect.Signature(
        [
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              default=p.default, annotation=str)
            for p in form
        ]
    )

    def tao_iva_classification(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _wire(bound.arguments, options)

    tao_iva_classification.__signature__ = signature
    tao_iva_classification.__annotations__ = {p.name: str for p in form}
    return dsl.pipeline(name=PIPELINE_NAME, description=options.profile.description)(
        tao_iva_classification
    )


def _wire(p: dict, options: CompileOptions) -> None:
    """The run: preflight claims the outputs of the run in the workspace (tao_step.claims);
    the exit handler (Argo's onExit), step ``summary``, reports the whole run and releases
    the claim whether the steps succeed, fail or stop at the quality gate. An exit handler
    reads no task outputs: the steps leave their results on the workspace."""
    dsl.get_pipeline_conf().add_op_transformer(_step_settings(p["tao_mount_dir"], options))
    form = {q.name for q in options.parameters()}
    summary = ops.SummaryOp(
        profile=options.profile, name="summary", workspace=p["tao_mount_dir"],
        artifacts={name: f"{p['tao_mount_dir']}/{p[param]}{suffix}"
                   for name, param, suffix in SUMMARY_ARTIFACTS if param in form})
    with dsl.ExitHandler(summary):
        preflight = _steps(p, options)
    preflight.check_bash_read(
        bash_read_parameters(dsl.Pipeline.get_default_pipeline().ops.values()))


def _steps(p: dict, options: CompileOptions) -> ops.PreflightOp:
    """The DAG. Steps exchange files on the workspace, so each edge is an ``after``: it
    exists exactly where a step reads what another writes (docs/pipeline.md explains each).
    What differs between TAO releases comes from ``options.profile``. Returns the first
    step, preflight.
    """
    profile = options.profile

    def ws(name: str) -> str:
        return f"{p['tao_mount_dir']}/{p[name]}"

    # With a key secret the key never becomes a parameter: Kubernetes substitutes it.
    key = KEY_REFERENCE if options.key_secret else p["api_key"]
    tao = {"profile": profile}

    # Checks the submitted form, the specs and the dataset in seconds, before any GPU step;
    # every value, the key too (from the Secret's environment variable, if one is set).
    preflight = ops.PreflightOp(
        name="preflight", workspace=p["tao_mount_dir"], tao_version=profile.version,
        values={q.name: p[q.name] for q in options.form()},
        key_from_env=options.key_secret is not None,
    )
    download = ops.DownloadModelOp(
        name="download-model", model=p["pretrained_model_name"], dest=ws("pretrained_model_dir")
    ).after(preflight)
    train = ops.TrainOp(
        **tao, name="train-model", label="baseline", spec=ws("train_classification_spec"),
        results_dir=ws("train_classification_output"), num_gpus=p["train_num_gpus"], key=key,
        use_amp=p["train_use_amp"],
    ).after(download)
    ops.EvaluateOp(
        **tao, name="evaluate-model", label="baseline", spec=ws("train_classification_spec"),
        key=key, results_dir=ws("train_classification_output") + "/evaluate",
        training_results=ws("train_classification_output"),
    ).after(train)
    prune = ops.PruneOp(
        **tao, name="prune-model", model=ws("prune_model_input_file"),
        output_file=ws("prune_model_output_file"), threshold=p["prune_threshold"],
        equalization_criterion=p["prune_equalization_criterion"], key=key,
    ).after(train)
    retrain = ops.TrainOp(
        **tao, name="retrain-model", label="retrained", spec=ws("retrain_classification_spec"),
        results_dir=ws("retrain_classification_output"), num_gpus=p["train_num_gpus"], key=key,
        use_amp=p["retrain_use_amp"],
    ).after(prune)
    reevaluate = ops.EvaluateOp(
        **tao, name="reevaluate-model", label="retrained",
        spec=ws("retrain_classification_spec"), key=key,
        results_dir=ws("retrain_classification_output") + "/evaluate",
        min_accuracy=p["min_accuracy"],
        training_results=ws("retrain_classification_output"),
    ).after(retrain)
    ops.InferenceOp(
        **tao, name="test-infer", spec=ws("retrain_classification_spec"),
        model=ws("test_infer_model_input_file"), image_dir=ws("test_infer_image_path"),
        batch_size=p["test_infer_batch_size"], class_map=ws("test_infer_class_map"), key=key,
    ).after(retrain)
    # Calibration reads only the spec's training images: it runs from the start.
    calibrate = ops.CalibrationTensorfileOp(
        **tao, name="calibrate-model", spec=ws("calibrate_classification_spec"),
        max_batches=p["calibrate_max_batches"], output_file=ws("calibrate_output_file"),
    ).after(preflight)

    # The quality gate: nothing is exported from a model below min_accuracy. Groups with
    # one verdict, because a group waits for everything its steps wait for: the FP32
    # export must not wait for calibration.
    passed = reevaluate.outputs["gate"] == "pass"
    with dsl.Condition(passed, name="gate-fp32-export"):
        export = ops.ExportOp(
            **tao, name="export-model", model=ws("export_model_input_file"),
            output_file=ws("export_model_output_file"), key=key,
            spec=ws("retrain_classification_spec"),
        ).after(retrain)
    ENGINE_WIRING[profile.engine.wiring](
        p, ws, key, profile, passed, after_export=[retrain, export], calibrate=calibrate)

    return preflight


def _wire_converter(p, ws, key, profile, passed, *, after_export, calibrate) -> list:
    """TAO 3.0: an INT8 ``.etlt`` export writes the calibration cache, and tao-converter
    builds the engine from that ``.etlt``."""
    retrain = after_export[0]
    with dsl.Condition(passed, name="gate-int8-export"):
        export_int8 = ops.ExportInt8Op(
            profile=profile, name="export-int8-model", model=ws("export_model_input_file"),
            output_file=ws("export_int8_model_output_file"),
            calibration_tensorfile=ws("calibrate_output_file"),
            data_type=p["convert_trt_precision"], batches=p["export_int8_batches"],
            calibration_cache=ws("export_int8_cache_file"), key=key,
        ).after(retrain, calibrate)

        engine = dict(
            name="convert-trt", model=ws("export_int8_model_output_file"), key=key,
            output_node=p["convert_trt_output_layer"], dims=p["convert_trt_dims"],
            input_type=p["convert_trt_input_type"],
            max_batch_size=p["convert_trt_max_batch_size"],
            precision=p["convert_trt_precision"], engine_file=ws("convert_trt_output_file"),
            batch_size=p["convert_trt_batch_size"],
        )
        # Only an INT8 build reads the calibration cache; an FP16/FP32 export writes none,
        # so those engines are built without -c. Both variants are shown as convert-trt.
        with dsl.Condition(p["convert_trt_precision"] == "int8", name="int8-engine"):
            convert_int8 = ops.ConvertTrtInt8Op(
                calibration_cache=ws("export_int8_cache_file"), **engine
            ).after(export_int8)
        with dsl.Condition(p["convert_trt_precision"] != "int8", name="fp-engine"):
            convert_fp = ops.ConvertTrtOp(**engine).after(export_int8)
            convert_fp.set_display_name("convert-trt")
    return [convert_int8, convert_fp]


def _wire_gen_trt_engine(p, ws, key, profile, passed, *, after_export, calibrate) -> list:
    """TAO 5: ``gen_trt_engine`` in the deploy image builds the engine from the ONNX
    export; for INT8 it calibrates on calibrate-model's tensorfile and writes the cache
    (export_int8_cache_file, export_int8_batches keep their meaning)."""
    with dsl.Condition(passed, name="gate-engine"):
        engine = dict(
            profile=profile, name="convert-trt", model=ws("export_model_output_file"),
            spec=ws("retrain_classification_spec"), results_dir=ws("convert_trt_results_dir"),
            precision=p["convert_trt_precision"], engine_file=ws("convert_trt_output_file"),
            batch_size=p["convert_trt_batch_size"],
            max_batch_size=p["convert_trt_max_batch_size"],
        )
        # evaluate-engine measures each engine where it was built (image, GPU selector).
        measure = dict(
            profile=profile, name="evaluate-engine", engine_file=ws("convert_trt_output_file"),
            precision=p["convert_trt_precision"], spec=ws("retrain_classification_spec"),
            results_dir=ws("convert_trt_results_dir") + "/evaluate",
            class_map=ws("test_infer_class_map"),
            max_drop=p["max_engine_accuracy_drop"],
        )
        with dsl.Condition(p["convert_trt_precision"] == "int8", name="int8-engine"):
            convert_int8 = ops.GenTrtEngineOp(
                calibration=(ws("calibrate_output_file"), ws("export_int8_cache_file"),
                             p["export_int8_batches"]), **engine,
            ).after(*after_export, calibrate)
            ops.EvaluateEngineOp(**measure).after(convert_int8)
        with dsl.Condition(p["convert_trt_precision"] != "int8", name="fp-engine"):
            convert_fp = ops.GenTrtEngineOp(**engine).after(*after_export)
            convert_fp.set_display_name("convert-trt")
            ops.EvaluateEngineOp(**measure).after(convert_fp).set_display_name("evaluate-engine")
    return [convert_int8, convert_fp]


# How each release builds the TensorRT engine (Profile.engine.wiring).
ENGINE_WIRING = {"converter": _wire_converter, "gen_trt_engine": _wire_gen_trt_engine}


def _step_settings(mount_dir, options: CompileOptions) -> Callable:
    """What every step gets, applied once for the whole pipeline: the build's options and
    each op's own policy (its class attributes in tao_iva_classification_ops)."""
    from kfp.onprem import use_k8s_secret
    from kubernetes import client as k8s

    if options.image_pull_secrets:
        dsl.get_pipeline_conf().set_image_pull_secrets(
            [k8s.V1LocalObjectReference(name=name) for name in options.image_pull_secrets]
        )
    # A hostPath is node-local: every step must land on the node that holds it, so
    # scheduling constraints then apply to all steps, not only to the GPU ones.
    pin_all_steps = options.pvc is None
    if options.pvc:
        source = {"persistent_volume_claim":
                  k8s.V1PersistentVolumeClaimVolumeSource(claim_name=options.pvc)}
    else:  # Directory: a node without the workspace fails the pod instead of creating it
        source = {"host_path": k8s.V1HostPathVolumeSource(path=str(mount_dir), type="Directory")}
    workspace = k8s.V1Volume(name=WORKSPACE_VOLUME, **source)
    images = options.images()
    # The Secret behind each kind an op may read, and the variable it is read from.
    secrets = {ops.TAO_KEY: (options.key_secret, KEY_ENV),
               ops.NGC_KEY: (options.ngc_secret, NGC_KEY_ENV)}

    def env(op, name: str, value: str) -> None:
        op.container.add_env_variable(k8s.V1EnvVar(name=name, value=value))

    def apply(op):
        op.container.image = images[op.image_role]
        # The v1 backend caches by template, not by workspace contents: a re-run with the
        # same form would silently skip all training. P0D is the switch it honours.
        op.execution_options.caching_strategy.max_cache_staleness = "P0D"
        op.set_caching_options(False)  # the label alone does nothing on v1; keeps YAML honest
        op.add_volume(workspace)
        op.container.add_volume_mount(
            k8s.V1VolumeMount(name=WORKSPACE_VOLUME, mount_path=str(mount_dir)))

        # Which run the step belongs to: a step that writes re-takes the run's claim on the
        # workspace (tao_step.claims), so a run resumed by KFP's Retry is covered again ...
        run = (str(mount_dir), ops.RUN_NAME, ops.RUN_UID)
        for name, value in zip(claims.RUN_ENV, run, strict=True):
            env(op, name, value)
        # ... and its name, which names the result it keeps for the summary (tao_step.results).
        env(op, results.STEP_ENV, op.human_name)
        for kind in op.secrets:
            secret, variable = secrets[kind]
            if secret:
                op.apply(use_k8s_secret(secret.name, {secret.key: variable}))
        if op.uses_gpu or pin_all_steps:
            for label, value in options.node_selector:
                op.add_node_selector_constraint(label, value)
            if options.gpu_toleration:
                op.add_toleration(k8s.V1Toleration(
                    key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"))
        if op.runs_tao:
            for name, value in options.profile.env:
                env(op, name, value)
        cpu, memory = ((options.cpu_request, options.memory_request) if op.runs_tao else
                       (options.light_cpu_request, options.light_memory_request))
        if cpu != "0":
            op.container.add_resource_request("cpu", cpu)
        if memory != "0":
            op.container.add_resource_request("memory", memory)
        if op.retry:
            op.set_retry(**op.retry._asdict())
        op.set_timeout(options.timeout(op.human_name))
        return op

    return apply


# What a failed step stops: only the steps that depend on it (docs/pipeline.md argues why).
# Argo defaults a DAG's failFast to true, which from v3.3.8 to v4.0.5 never keeps a ready task
# from starting (workflow/controller/dag.go: failFast is read only in assessDAGPhase, to fail
# the DAG once nothing runs); false says what happens, and the rehearsal does the same.
FAIL_FAST = False


def compile_pipeline(options: CompileOptions, output: Path) -> None:
    from kfp import compiler

    class Compiler(compiler.Compiler):
        # kfp 1.8 has no setting for a DAG's failFast; _create_workflow is the one place
        # compile() and create_workflow() build the workflow, before it is validated and
        # written in the format the suffix chooses.
        def _create_workflow(self, *args, **kwargs):
            workflow = super()._create_workflow(*args, **kwargs)
            for template in workflow["spec"]["templates"]:
                if "dag" in template:
                    template["dag"]["failFast"] = FAIL_FAST
            return workflow

    with _kfp_quiet():
        Compiler().compile(make_pipeline(options), str(output))


@contextlib.contextmanager
def _kfp_quiet():
    with warnings.catch_warnings():
        # kfp 1.8 warns on every direct ContainerOp; these steps are ContainerOps by design.
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message="Please create reusable components"
        )
        yield




# The default build, which `dsl-compile --py` finds when it imports this module.
tao_iva_classification_pipeline = make_pipeline()

if __name__ == "__main__":
    # The documented command; its options and the dry run live in their own module.
    from tao_iva_classification_cli import run

    run()
