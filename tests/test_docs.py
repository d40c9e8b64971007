"""Docs that are generated stay in step with the code; README commands are what CI runs."""

from __future__ import annotations

import html
import importlib.util
import re

import pytest
from conftest import REPO


def load_renderer(name: str = "render_dag"):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workflow, picture", [("default_workflow", "pipeline-dag"),
                                               ("tao5_workflow", "pipeline-dag-tao5")])
def test_committed_dag_picture_matches_the_compiled_pipeline(request, workflow, picture):
    source = load_renderer().build_graph(request.getfixturevalue(workflow)).source
    committed = (REPO / "docs" / "images" / f"{picture}.gv").read_text()
    assert source == committed, "DAG changed: regenerate with `.venv/bin/python docs/render_dag.py`"
    svg = html.unescape((REPO / "docs" / "images" / f"{picture}.svg").read_text())
    for name in ("download-model", "convert-trt", "calibrate-model"):
        assert name in svg
    if workflow == "tao5_workflow":  # TAO 5 builds the engine itself; no INT8 export step
        assert "classification_tf1 gen_trt_engine" in committed
        assert "export-int8-model" not in committed


def readme_commands() -> list:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```(?:sh|bash)\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command.strip() in ci


def test_readme_first_command_installs_and_compiles():
    first = readme_commands()[0]
    assert "-r requirements.txt" in first
    assert "tao_iva_classification_pipeline.py" in first


def test_readme_parameter_table_is_generated_from_the_form():
    from tao_step import form

    text = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = text.index(form.BEGIN), text.index(form.END)
    assert text[start + len(form.BEGIN):end] == "\n" + form.markdown_table(), \
        "README.md's form table is stale: run .venv/bin/python -m tao_step.form --write"
    import tao_iva_classification_pipeline as pipeline

    rows = re.findall(r"^\| `([a-z0-9_]+)` \| `([^`]*)` \|", text, flags=re.M)
    assert rows == [(p.name, p.default) for p in pipeline.PARAMETERS]


def test_readme_documents_every_compile_option():
    import tao_iva_classification_cli as cli

    text = (REPO / "README.md").read_text()
    options = [o for action in cli.build_parser()._actions for o in action.option_strings
               if o.startswith("--") and o != "--help"]
    assert len(options) >= 11
    for option in options:
        assert f"`{option}" in text, option


def test_docs_run_repository_commands_with_the_venv_python():
    """One convention: host commands use the README's .venv, which has kfp; a bare `python`
    fails with "No module named 'kfp'" outside an activated venv. `python3 -m venv` creates
    the venv and `python3 -m tao_step` is the container's own command."""
    bare = re.compile(r"(?<![\w/.-])python3?[ \t]+(?!-m (venv|tao_step)\b)\S+")
    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("*/README.md")]
    found = [f"{doc.name}: {match.group(0)}" for doc in docs
             for match in bare.finditer(doc.read_text())]
    assert found == []
    assert any(".venv/bin/python tao_iva_classification_pipeline.py" in doc.read_text()
               for doc in docs)


def test_quick_start_says_the_image_must_be_built_and_pushed_first():
    quick_start = (REPO / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    assert "docker/build.sh" in quick_start and "--push" in quick_start
    assert "--image" in quick_start


def test_every_fake_tao_failure_the_docs_show_is_one_a_rehearsal_accepts():
    from rehearsal.dry_run import FAILABLE, RehearsalError, check_fail_setting

    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("*/README.md")]
    shown = {match for doc in docs
             for match in re.findall(r"FAKE_TAO_FAIL=([\w:,-]+)", doc.read_text())}
    assert len(shown) >= 3, shown
    for value in shown:
        refused = []
        for failable in FAILABLE.values():
            try:
                check_fail_setting(value, failable)
            except RehearsalError as error:
                refused.append(str(error))
        assert len(refused) < len(FAILABLE), refused  # some release's fake TAO takes it


def test_the_preview_picture_is_refused_when_a_card_shows_nothing(tmp_path):
    """A web-app frame not rendered when the screenshot is taken leaves its card blank:
    docs/render_run_output.py must notice in the picture, not report success."""
    import json
    import shutil

    from rehearsal import run_page

    renderer = load_renderer("render_run_output")
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: .ci/run installs it (apt-get install chromium)"
    run = {"workflow": {"name": "wf-abcde", "phase": "Succeeded"},
           "tasks": [{"name": "s", "path": "s", "status": "Succeeded", "retry": False,
                      "outputs": {"mlpipeline-ui-metadata": "s/x"}}]}
    curve = '<svg width="300" height="200"><rect width="300" height="200" fill="teal"/></svg>'
    pages, shots = {}, {}
    for kind, frame in (("drawn", curve), ("blank", "<p></p>")):  # blank: nothing drawn
        outputs = [{"type": "markdown", "storage": "inline", "source": "# Training"},
                   {"type": "web-app", "storage": "inline", "source": frame}]
        pages[kind] = tmp_path / f"{kind}.html"
        pages[kind].write_text(run_page.render_page(run, {"s": {
            run_page.UI_METADATA_FILE: json.dumps({"outputs": outputs})}}))
        shots[kind] = tmp_path / f"{kind}.png"
        renderer.screenshot(chromium, pages[kind], shots[kind])
    assert renderer.blank_cards(chromium, pages["drawn"], shots["drawn"]) == []
    assert renderer.blank_cards(chromium, pages["drawn"], shots["blank"]) == ["s web-app"]


def test_readme_kfp_commands_are_ones_the_installed_kfp_cli_takes():
    """Every `kfp ...` line of the README parses with kfp 1.8.22's own CLI (options, the
    subcommand, required options), without contacting a cluster."""
    import shlex
    import warnings

    import click
    import kfp
    from kfp.cli.cli import cli
    from kfp.cli.pipeline import pipeline
    from kfp.cli.run import run

    assert kfp.__version__ == "1.8.22"
    cli.add_command(run)
    cli.add_command(pipeline)
    lines = [line for block in readme_commands() for line in block.splitlines()
             if line.startswith("kfp ")]
    assert len(lines) >= 3
    for line in lines:
        name, command, tokens, context = "kfp", cli, shlex.split(line)[1:], None
        while isinstance(command, click.Group):
            context = command.make_context(name, tokens, parent=context)
            with warnings.catch_warnings():  # click 8.2+ deprecates protected_args
                warnings.simplefilter("ignore", DeprecationWarning)
                tokens = [*context.protected_args, *context.args]
            name, command, tokens = command.resolve_command(context, tokens)
        command.make_context(name, tokens, parent=context)  # UsageError if it does not fit
    # what the README says the CLI lacks, and where the SDK keeps the CLI's login
    assert not {"delete", "archive"} & set(run.commands)
    assert not {"token", "cookie", "cookies"} & {
        p.name for p in cli.params + run.commands["submit"].params}
    assert kfp.Client.LOCAL_KFP_CONTEXT.endswith("/.config/kfp/context.json")


def test_readme_python_calls_use_parameters_kfp_has():
    import ast
    import inspect
    import textwrap

    import kfp
    from kfp import auth
    from kfp_server_api.api.run_service_api import RunServiceApi

    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n *```", text, flags=re.S)  # in list items too
    calls = [node for block in blocks for node in ast.walk(ast.parse(textwrap.dedent(block)))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
    checked = set()
    for call in calls:
        target = kfp.Client if call.func.attr == "Client" else getattr(
            kfp.Client, call.func.attr, None)
        if target is None:
            continue
        parameters = inspect.signature(target).parameters
        for keyword in call.keywords:
            assert keyword.arg in parameters, (call.func.attr, keyword.arg)
        checked.add(call.func.attr)
    assert checked == {"Client", "create_run_from_pipeline_package"}
    for method in ("archive_run", "delete_run"):  # client.runs.<method>(id=...)
        assert "id" in inspect.signature(getattr(RunServiceApi, method)).parameters
    assert auth.KF_PIPELINES_SA_TOKEN_PATH == "/var/run/secrets/kubeflow/pipelines/token"



def test_the_readme_test_commands_are_what_ci_runs_and_a_declared_tier():
    """The README's full command is the one .ci/run runs (and times); its fast one
    deselects a marker pyproject.toml declares (--strict-markers refuses any other)."""
    import tomllib

    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    full = next(c for c in readme_commands() if c.endswith(".venv/bin/python -m pytest"))
    assert f"\n{full} || status=$?\n" in ci and "tests took" in ci
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    markers = [line.split(":")[0] for line in config["ini_options"]["markers"]]
    assert "--strict-markers" in config["ini_options"]["addopts"]
    assert '.venv/bin/python -m pytest -m "not e2e"\n' in readme and markers == ["e2e"]
