"""Rehearse a compiled pipeline on this machine, without a cluster or a GPU.

The compiled workflow is executed as Argo would run it (``rehearsal.local_runner``): every
step in DAG order, parameters substituted, conditions honoured. The TAO, NGC and TensorRT
commands are the fake ones in ``rehearsal/fake_tao/``, which follow TAO's contract (they
read the specs, fail when an input is missing, write TAO's files, refuse to overwrite where
TAO refuses). The workspace is a local directory seeded with the specs and a small
generated dataset.

    python tao_iva_classification_pipeline.py --dry-run [--param NAME=VALUE] [--specs DIR]
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from rehearsal import local_runner
from rehearsal.fake_tao.fake_tao import FAIL_ENV
from rehearsal.fake_tao.make_dataset import DEFAULT_CLASSES, make_dataset
from tao_iva_classification_ops import RUNTIME_BOOTSTRAP
from tao_step.specs import check_spec_file

REPO = Path(__file__).resolve().parents[1]
FAKE_BIN = Path(__file__).resolve().parent / "fake_tao" / "bin"
# Values the fake secrets hold: a dry run never sees a real key.
REHEARSAL_TAO_KEY = "nvidia_tlt"
REHEARSAL_NGC_KEY = "rehearsal-ngc-key"
# Images per class in val and test; train gets what INT8 calibration needs.
SMALL_SPLIT = 6
# The interpreter that runs the steps' ``python3`` (tao_step), e.g. a Python 3.6 like the
# TAO 3.0 image's; the fake TAO commands always run on this one.
STEP_PYTHON_ENV = "TAO_STEP_PYTHON"


def seed_workspace(workspace: Path, *, form: Mapping[str, str], specs_dir: Path) -> None:
    """Specs and a dataset where the form says, unless the workspace already has them.

    The specs name paths under the mount directory they were written for (the form's
    ``tao_mount_dir``); the copies name the same paths under ``workspace``.
    """
    mount = form["tao_mount_dir"].rstrip("/")
    for spec_param in ("train_classification_spec", "retrain_classification_spec",
                       "calibrate_classification_spec"):
        target = workspace / form[spec_param]
        source = specs_dir / Path(form[spec_param]).name
        if target.exists() or not source.is_file():
            continue  # a missing spec is the preflight's to report
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text().replace(mount + "/", f"{workspace}/"))

    data = workspace / form["train_classification_data"]
    if not (data / "split").exists():
        make_dataset(str(data), counts={"train": _train_images_needed(workspace, form),
                                        "val": SMALL_SPLIT, "test": SMALL_SPLIT})


def _train_images_needed(workspace: Path, form: Mapping[str, str]) -> int:
    """Per class: enough for calibrate_max_batches batches of the spec's batch size."""
    spec, _ = check_spec_file(str(workspace / form["calibrate_classification_spec"]))
    batch = spec.field("train_config.batch_size_per_gpu")[0] if spec else None
    try:
        batches = int(form["calibrate_max_batches"])
    except ValueError:
        batches = 1
    if not isinstance(batch, int) or batch < 1 or batches < 1:
        return SMALL_SPLIT
    return max(SMALL_SPLIT, math.ceil(batches * batch / len(DEFAULT_CLASSES)))


def rehearse(
    workflow: dict,
    *,
    overrides: Mapping[str, str],
    specs_dir: Path,
    workspace: Path,
    logs: Path,
    echo: Callable[[str], None] | None = None,
) -> local_runner.RunResult:
    """Run ``workflow`` against the fake TAO with ``workspace`` as the mounted volume;
    ``logs`` (absent or empty) receives a folder per step with its log."""
    defaults = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"--param {unknown[0]}: not a Create Run parameter of this build")
    form = {**defaults, **overrides}
    workspace.mkdir(parents=True, exist_ok=True)
    seed_workspace(workspace, form=form, specs_dir=specs_dir)

    # Stand-ins for the Secrets and claims the build names.
    secrets, claims = {}, {}
    for template in workflow["spec"]["templates"]:
        for env in template.get("container", {}).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                fake = REHEARSAL_NGC_KEY if env["name"] == "NGC_CLI_API_KEY" else REHEARSAL_TAO_KEY
                secrets[(ref["name"], ref["key"])] = fake
        for volume in template.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claims[volume["persistentVolumeClaim"]["claimName"]] = workspace

    result = local_runner.run_workflow(
        workflow,
        {**overrides, "tao_mount_dir": str(workspace)},
        workdir=logs,
        host_paths={str(workspace): workspace},
        claims=claims,
        per_step_dirs=["/tmp/kfp-outputs"],
        base_env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
                  "LC_ALL": "C.UTF-8",
                  # rehearse a crash: FAKE_TAO_FAIL=prune makes the fake prune fail like TAO
                  FAIL_ENV: os.environ.get(FAIL_ENV, "")},
        secrets=secrets,
        path_prefix=[FAKE_BIN, Path(sys.executable).parent],
        executables={"python3": os.environ.get(STEP_PYTHON_ENV) or sys.executable},
        echo=echo,
        masked=[form["api_key"]] if "api_key" in form else [],
    )
    for step in result.steps:  # show the runtime as the command it is equivalent to
        if step.argv[:3] == ["python3", "-c", RUNTIME_BOOTSTRAP]:
            step.argv = ["python3", "-m", "tao_step", *step.argv[3:]]
    return result
