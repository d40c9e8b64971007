"""Rehearse a compiled pipeline on this machine, without a cluster or a GPU.

The compiled workflow is executed as Argo would run it (``rehearsal.local_runner``): every
step in DAG order, parameters substituted, conditions honoured. The TAO, NGC and TensorRT
commands are the fake ones in ``rehearsal/fake_tao/``, which follow TAO's contract (they
read the specs, fail when an input is missing, write TAO's files, refuse to overwrite where
TAO refuses).

The workspace volume (hostPath or claim) is mapped onto a local folder at ``tao_mount_dir``,
so specs written for the cluster (naming paths under ``tao_mount_dir``) are read unchanged:
the runner maps container paths in arguments, and the fake TAO maps the spec's paths through
``LOCAL_RUNNER_PATH_MAP``. A new workspace (a temporary one, or a ``--workspace`` folder that
is absent or empty) is seeded with the specs and a small generated dataset; an existing
folder is rehearsed as it is: nothing is generated into it.

    .venv/bin/python tao_iva_classification_pipeline.py --dry-run [--param NAME=VALUE]
        [--specs DIR] [--workspace DIR]
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rehearsal import local_runner
from rehearsal.fake_tao import experiment
from rehearsal.fake_tao.make_dataset import DEFAULT_CLASSES, make_dataset
from rehearsal.fake_tao.releases import FAIL_ENV, RELEASES
from rehearsal.outputs import staging_folder
from tao_iva_classification_ops import RUNTIME_BOOTSTRAP
from tao_step import profiles

REPO = Path(__file__).resolve().parents[1]
FAKE_BIN = Path(__file__).resolve().parent / "fake_tao" / "bin"
SHIPPED_SPECS = REPO / "specs"
# Values the fake secrets hold: a dry run never sees a real key.
REHEARSAL_TAO_KEY = "nvidia_tlt"
REHEARSAL_NGC_KEY = "rehearsal-ngc-key"
# Images per class in val and test; train gets what INT8 calibration needs.
SMALL_SPLIT = 6
# The interpreter that runs the steps' ``python3`` (tao_step), e.g. a Python 3.6 like the
# TAO 3.0 image's; the fake TAO commands always run on this one.
STEP_PYTHON_ENV = "TAO_STEP_PYTHON"
# The most training images a rehearsal generates (a few seconds of work): 40 batches of the
# shipped specs' 64. A larger calibrate_max_batches is refused rather than filling the disk.
MAX_GENERATED_TRAIN_IMAGES = 2560
# The Create Run parameter of the workspace's mount point (original-interface.md).
MOUNT_PARAMETER = "tao_mount_dir"
# TAO's experiment spec option, which a step passes to TAO's classification command.
SPEC_FLAG = "-e"
# What FAKE_TAO_FAIL may name, per TAO release: the subtasks of its fake classification
# command, and SUBTASK:status where a subtask may record a failure in status.json yet exit 0.
FAILABLE = {version: release.failable for version, release in RELEASES.items()}


class RehearsalError(Exception):
    """A rehearsal that cannot start as asked; the message is one line naming the option."""


def check_workspace_option(workspace: Path) -> bool:
    """Whether the ``--workspace`` folder is new (absent or empty), so it may be seeded;
    RehearsalError when it cannot be a workspace. Creates nothing."""
    if workspace.is_dir():
        if not os.access(workspace, os.R_OK | os.W_OK | os.X_OK):
            raise RehearsalError(f"--workspace {workspace}: the folder is not writable (the "
                                 "steps write their results into it); name a folder you own")
        return not any(workspace.iterdir())
    if workspace.exists() or workspace.is_symlink():
        raise RehearsalError(f"--workspace {workspace}: is a file, not a folder; name a folder "
                             "(a new one is created and seeded with a generated dataset)")
    parent = workspace.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RehearsalError(f"--workspace {workspace}: {parent} is not a folder, so it cannot "
                             "be created there; name a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RehearsalError(f"--workspace {workspace}: cannot be created ({parent} is not "
                             "writable); name a folder you can write")
    return True


def check_fail_setting(value: str, failable: Sequence[str]) -> None:
    """``FAKE_TAO_FAIL`` names subtasks the fake TAO fails; refuse names it never runs."""
    unknown = sorted({n.strip() for n in value.split(",") if n.strip()} - set(failable))
    if unknown:
        raise RehearsalError(f"{FAIL_ENV}={value}: {', '.join(unknown)} is not a fake TAO "
                             f"subtask; use a comma-separated list of {', '.join(failable)}")


def _container_args(workflow: Mapping) -> list[list[str]]:
    return [(t.get("container") or {}).get("args") or [] for t in workflow["spec"]["templates"]]


def compiled_release(workflow: Mapping) -> str:
    """The TAO release the workflow was compiled for, read from it: the one whose
    classification command (its profile's CLI) the steps run."""
    used = {arg for args in _container_args(workflow) for arg in args}
    found = [p.version for p in profiles.PROFILES.values() if p.cli in used]
    if len(found) != 1:
        raise RehearsalError(f"the compiled workflow runs {' and '.join(found) or 'none'} of "
                             "the TAO releases' classification commands, not one")
    return found[0]


def spec_parameters(workflow: Mapping) -> tuple[str, ...]:
    """The Create Run parameters that name a TAO spec, read from the compiled workflow: those
    a step passes after ``-e`` to TAO's classification command (the profiles' CLI), in the
    form's order."""
    commands = {profile.cli for profile in profiles.PROFILES.values()}
    named = set()
    for args in _container_args(workflow):
        first = next((i for i, arg in enumerate(args) if arg in commands), len(args))
        for flag, value in itertools.pairwise(args[first:]):
            if flag == SPEC_FLAG:
                named.update(re.findall(r"\{\{inputs\.parameters\.(\w+)\}\}", value))
    return tuple(p["name"] for p in workflow["spec"]["arguments"]["parameters"]
                 if p["name"] in named and p["name"] != MOUNT_PARAMETER)


def spec_sources(form: Mapping[str, str], specs_dir: Path,
                 names: Sequence[str]) -> dict[str, Path]:
    """Workspace-relative spec path -> the file of ``specs_dir`` with its name, for each
    spec parameter in ``names`` and ``specs_dir`` holds; RehearsalError for one that is not
    text."""
    sources = {}
    for name in names:
        source = specs_dir / Path(form[name]).name
        if not source.is_file():
            continue  # a missing spec is the preflight's to report
        try:
            source.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise RehearsalError(f"--specs {source}: is not a text spec file (byte {e.start} "
                                 "is not UTF-8); give TAO spec files in protobuf text "
                                 "format") from None
        except OSError as e:
            raise RehearsalError(f"--specs {source}: cannot be read ({e.strerror})") from None
        sources[form[name]] = source
    return sources


def plan_specs(form: Mapping[str, str], workspace: Path, *, names: Sequence[str],
               specs_dir: Path | None, fresh: bool, shipped: Path = SHIPPED_SPECS
               ) -> tuple[dict[str, Path], list[str]]:
    """The spec files to copy into ``workspace`` (relative path -> source) and a line per
    spec parameter in ``names`` saying which file the rehearsal uses. Copies only into a
    new workspace or what ``--specs`` names explicitly, and never over a workspace's own
    spec."""
    sources = spec_sources(form, specs_dir or shipped, names) if (specs_dir or fresh) else {}
    if specs_dir is not None and not sources:
        files = ", ".join(dict.fromkeys(Path(form[name]).name for name in names))
        raise RehearsalError(f"--specs {specs_dir}: holds none of the spec files the form "
                             f"names ({files}); name the folder that holds them")
    copies, used = {}, []
    for relative in dict.fromkeys(form[name] for name in names):
        roles = ", ".join(n.split("_")[0] for n in names if form[n] == relative)
        target = workspace / relative
        source = sources.get(relative)
        if target.exists() and not fresh:
            if source is not None and (not target.is_file()
                                       or target.read_bytes() != source.read_bytes()):
                raise RehearsalError(
                    f"--specs {source}: the workspace already has {target}, which differs; a "
                    "rehearsal never overwrites it: drop --specs to rehearse the workspace's "
                    "own specs, or name a new --workspace")
            used.append(f"{relative} ({roles}): the workspace's own {target}")
        elif source is not None:
            copies[relative] = source
            used.append(f"{relative} ({roles}): copied from {source}")
        else:
            used.append(f"{relative} ({roles}): missing (preflight reports it)")
    return copies, used


def _train_images_needed(batches_text: str, spec_file: Path | None) -> tuple[int, int]:
    """(images per class, batch size): enough training images for calibrate_max_batches
    batches of the calibration spec's batch size."""
    batch = _spec_batch_size(spec_file) if spec_file else None
    try:
        batches = int(batches_text)
    except ValueError:
        batches = 1
    if not isinstance(batch, int) or batch < 1 or batches < 1:
        return SMALL_SPLIT, 0
    return max(SMALL_SPLIT, math.ceil(batches * batch / len(DEFAULT_CLASSES))), batch


def _spec_batch_size(spec_file: Path) -> int | None:
    """batch_size_per_gpu as TAO reads the spec (0 when unset), None when no release's
    protos parse it; only this number matters here, so any release that reads it will do."""
    try:
        text = spec_file.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    for release in RELEASES.values():
        try:
            return experiment.parse(text, release.spec_format).train_config.batch_size_per_gpu
        except experiment.SpecError:
            continue
    return None


def plan_dataset(form: Mapping[str, str], spec_file: Path | None) -> int:
    """Training images per class to generate; RehearsalError naming calibrate_max_batches
    when that would exceed :data:`MAX_GENERATED_TRAIN_IMAGES`."""
    per_class, batch = _train_images_needed(form["calibrate_max_batches"], spec_file)
    if per_class * len(DEFAULT_CLASSES) > MAX_GENERATED_TRAIN_IMAGES:
        most = MAX_GENERATED_TRAIN_IMAGES // batch
        raise RehearsalError(
            f"--param calibrate_max_batches={form['calibrate_max_batches']}: a rehearsal "
            f"generates at most {MAX_GENERATED_TRAIN_IMAGES} training images, {most} batches "
            f"of {batch} (batch_size_per_gpu in {spec_file.name if spec_file else 'the spec'});"
            f" rehearse with calibrate_max_batches={most} or less, or rehearse a workspace "
            "holding your dataset with --workspace")
    return per_class


def write_seed(workspace: Path, *, spec_copies: Mapping[str, Path], data: Path,
               train_per_class: int | None) -> None:
    """Copy specs into ``workspace`` unchanged (they name paths under tao_mount_dir, which
    the rehearsal maps onto ``workspace``), each complete or not at all, and, given
    ``train_per_class``, generate a dataset under ``data/split`` unless one is there."""
    for relative, source in spec_copies.items():
        target = workspace / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            shutil.copyfile(source, partial)
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if train_per_class is not None and not (data / "split").exists():
        make_dataset(str(data), counts={"train": train_per_class,
                                        "val": SMALL_SPLIT, "test": SMALL_SPLIT})


def seed_workspace(workspace: Path, *, form: Mapping[str, str], specs_dir: Path) -> None:
    """What a new rehearsal workspace gets: the form's spec files from ``specs_dir`` (the
    values that name one of its files), copied unchanged, and a generated dataset sized for
    calibrate_max_batches (RehearsalError beyond the bound). Read the specs with
    ``tao_mount_dir`` mapped onto ``workspace``."""
    names = [name for name, value in form.items() if (specs_dir / Path(value).name).is_file()]
    copies, _ = plan_specs(form, workspace, names=names, specs_dir=specs_dir, fresh=True)
    per_class = plan_dataset(form, copies.get(form["calibrate_classification_spec"]))
    write_seed(workspace, spec_copies=copies, data=workspace / form["train_classification_data"],
               train_per_class=per_class)


class Rehearsal:
    """A dry run prepared: where it runs, what it copies and generates, what it says."""

    def __init__(self, workflow: dict, *, overrides: Mapping[str, str],
                 specs_dir: Path | None, workspace: Path, fresh: bool,
                 shipped_specs: Path = SHIPPED_SPECS, tao_version: str | None = None):
        defaults = {p["name"]: p["value"]
                    for p in workflow["spec"]["arguments"]["parameters"]}
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise RehearsalError(f"--param {unknown[0]}: not a Create Run parameter of this "
                                 "build")
        check_fail_setting(os.environ.get(FAIL_ENV, ""),
                           FAILABLE[tao_version or compiled_release(workflow)])
        self.workflow = workflow
        self.overrides = dict(overrides)
        self.form = {**defaults, **overrides}
        self.workspace = workspace
        self.fresh = fresh
        self.spec_copies, self.spec_lines = plan_specs(
            self.form, workspace, names=spec_parameters(workflow), specs_dir=specs_dir,
            fresh=fresh, shipped=shipped_specs)
        self.data = workspace / self.form["train_classification_data"]
        self.train_per_class = None
        if fresh:
            calibrate = self.form["calibrate_classification_spec"]
            self.train_per_class = plan_dataset(self.form, self.spec_copies.get(calibrate))

    def describe(self) -> list[str]:
        """What the user should know before the steps start: specs, dataset."""
        lines = [f"specs: {line}" for line in self.spec_lines]
        if self.fresh:
            lines.append(f"dataset: generated under {self.data / 'split'} "
                         f"({len(DEFAULT_CLASSES)} classes)")
        elif (self.data / "split").is_dir():
            lines.append(f"dataset: the workspace's own {self.data / 'split'}")
        else:
            lines.append(f"dataset: none at {self.data / 'split'} (train_classification_data); "
                         "nothing is generated into a folder you named, so preflight will "
                         "report it: put your split there, or omit --workspace to rehearse "
                         "with a generated dataset")
        return lines

    def create_workspace(self) -> None:
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RehearsalError(f"--workspace {self.workspace}: cannot be created "
                                 f"({e.strerror or e}); name a folder you can write") from None

    def seed(self) -> None:
        """Write the planned spec copies and dataset into the workspace. A new one is filled
        as a hidden sibling and then renamed into place, so an interrupted seeding leaves
        it empty, never with half a dataset that the next run would take for the user's."""
        self.create_workspace()
        if not self.fresh:
            write_seed(self.workspace, spec_copies=self.spec_copies, data=self.data,
                       train_per_class=None)
            return
        staging = staging_folder(self.workspace, "seeding")
        try:
            write_seed(staging, spec_copies=self.spec_copies,
                       data=staging / self.data.relative_to(self.workspace),
                       train_per_class=self.train_per_class)
            self.workspace.rmdir()  # new, so empty; fails rather than lose what appeared
            staging.rename(self.workspace)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def run(self, *, logs: Path, echo: Callable[[str], None] | None = None,
            progress: Callable[[str], None] | None = None) -> local_runner.RunResult:
        """Run the workflow against the fake TAO with the workspace mounted at
        ``tao_mount_dir``; ``logs`` (absent or empty) receives a folder per step."""
        workspace = self.workspace
        # Stand-ins for the Secrets and claims the build names.
        secrets, claims = {}, {}
        for template in self.workflow["spec"]["templates"]:
            for env in template.get("container", {}).get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    fake = (REHEARSAL_NGC_KEY if env["name"] == "NGC_CLI_API_KEY"
                            else REHEARSAL_TAO_KEY)
                    secrets[(ref["name"], ref["key"])] = fake
            for volume in template.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    claims[volume["persistentVolumeClaim"]["claimName"]] = workspace

        result = local_runner.run_workflow(
            self.workflow,
            self.overrides,
            workdir=logs,
            host_paths={self.form[MOUNT_PARAMETER]: workspace},
            claims=claims,
            per_step_dirs=["/tmp/kfp-outputs"],
            base_env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
                      "LC_ALL": "C.UTF-8",
                      # rehearse a crash: FAKE_TAO_FAIL=prune makes the fake prune fail
                      FAIL_ENV: os.environ.get(FAIL_ENV, "")},
            secrets=secrets,
            path_prefix=[FAKE_BIN, Path(sys.executable).parent],
            executables={"python3": os.environ.get(STEP_PYTHON_ENV) or sys.executable},
            echo=echo,
            progress=progress,
            masked=[self.form["api_key"]] if "api_key" in self.form else [],
        )
        for step in result.steps:  # show the runtime as the command it is equivalent to
            if step.argv[:3] == ["python3", "-c", RUNTIME_BOOTSTRAP]:
                step.argv = ["python3", "-m", "tao_step", *step.argv[3:]]
        return result
