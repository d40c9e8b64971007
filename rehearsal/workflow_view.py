"""Reads the step graph out of a compiled KFP v1 (Argo) workflow.

Used by the tests, which assert on what a cluster receives, and by docs/render_dag.py,
which draws the DAG from the same compiled YAML.
"""

from __future__ import annotations

import re


class CompiledWorkflow:
    """Read-only views of a compiled KFP v1 workflow (the dict of its YAML)."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.templates = {t["name"]: t for t in doc["spec"]["templates"]}

    @property
    def container_templates(self) -> list:
        return [t for t in self.doc["spec"]["templates"] if "container" in t]

    def display_name(self, template: dict) -> str:
        annotations = template.get("metadata", {}).get("annotations", {})
        return annotations.get("pipelines.kubeflow.org/task_display_name", template["name"])

    def steps(self, display: str) -> list:
        return [t for t in self.container_templates if self.display_name(t) == display]

    def step(self, display: str) -> dict:
        (template,) = self.steps(display)
        return template

    def parameters(self) -> list:
        return self.doc["spec"]["arguments"]["parameters"]

    def tasks(self) -> dict:
        """Every DAG task by task name (nested condition DAGs included) -> (dag, task)."""
        found = {}
        for template in self.doc["spec"]["templates"]:
            for task in template.get("dag", {}).get("tasks", []):
                found[task["name"]] = (template["name"], task)
        return found

    def step_edges(self) -> set:
        """(upstream step, downstream step) by display name, through condition groups."""
        tasks = self.tasks()
        task_of_dag = {task["template"]: name for name, (_, task) in tasks.items()}

        def leaf_steps(task_name: str) -> set:
            template = self.templates[tasks[task_name][1]["template"]]
            if "container" in template:
                return {self.display_name(template)}
            inner = template["dag"]["tasks"]
            return set().union(*(leaf_steps(t["name"]) for t in inner))

        def upstream(task_name: str) -> set:
            dag, task = tasks[task_name]
            deps = set(task.get("dependencies", []))
            if dag in task_of_dag:  # inside a condition group: inherit the group's edges
                deps |= {f"@{task_of_dag[dag]}"}
            return deps

        edges = set()
        for name, (_, task) in tasks.items():
            if "container" not in self.templates[task["template"]]:
                continue
            pending, seen = list(upstream(name)), set()
            while pending:
                dep = pending.pop()
                if dep in seen:
                    continue
                seen.add(dep)
                if dep.startswith("@"):
                    pending.extend(upstream(dep[1:]))
                    continue
                for source in leaf_steps(dep):
                    edges.add((source, self.display_name(self.templates[task["template"]])))
        return edges

    def gates(self) -> dict:
        """Steps that run only if another step's output allows it: {step: (producer, when)}.
        Conditions on the form's values (e.g. the engine's precision) are not gates."""
        tasks = self.tasks()
        found = {}

        def steps_under(template_name: str) -> list:
            template = self.templates[template_name]
            if "container" in template:
                return [self.display_name(template)]
            return [s for t in template["dag"]["tasks"] for s in steps_under(t["template"])]

        for _, task in tasks.values():
            when = task.get("when", "")
            match = re.search(r"\{\{tasks\.([^.]+)\.outputs", when)
            if not match:
                continue
            producer = self.display_name(self.templates[tasks[match.group(1)][1]["template"]])
            for step in steps_under(task["template"]):
                found[step] = (producer, when)
        return found
