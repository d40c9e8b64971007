"""A workflow's identity, fresh for every run as the cluster makes it.

A compiled KFP v1 pipeline has ``metadata.generateName`` (``tao-iva-classification-``), not
a name. The Kubernetes API server completes it with five random characters
(``SimpleNameGenerator.GenerateName`` in ``k8s.io/apiserver`` ``pkg/storage/names/
generate.go``: the base cut to 63 - 5 = 58 characters, then ``utilrand.String(5)`` of the
alphabet in ``k8s.io/apimachinery`` ``pkg/util/rand/rand.go``; both @v0.21.14 and unchanged
@v0.36.3). The KFP 1.8.5 API server replaces every ``{{workflow.uid}}`` with the run's id, a
random UUID, before it submits the workflow (``backend/src/apiserver/template/
argo_template.go`` ``RunWorkflow`` -> ``Workflow.ReplaceUID``, id from ``uuid.NewRandom`` in
``resource_manager.go`` ``CreateRun``@1.8.5). So no two runs share a name or a uid; the
claims every run takes on its workspace (``tao_step/claims.py``) rely on that, and so must a
rehearsal."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

# apimachinery's ``alphanums``: no vowels (no words) and no 0, 1, 3 (no look-alikes).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
MAX_NAME_LENGTH = 63
DEFAULT_BASE = "workflow-"  # what this runner uses for a workflow with neither field

_SYSTEM_RANDOM = random.SystemRandom()


def generate_name(base: str, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """``base`` completed as the API server completes a ``generateName``."""
    base = base[:MAX_NAME_LENGTH - SUFFIX_LENGTH]
    return base + "".join(rng.choice(NAME_ALPHABET) for _ in range(SUFFIX_LENGTH))


def new_identity(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """(workflow name, workflow uid) for one run of a workflow with ``metadata``: a fixed
    ``name`` is kept, a ``generateName`` completed; the uid is always new."""
    name = metadata.get("name") or generate_name(metadata.get("generateName") or DEFAULT_BASE)
    return name, str(uuid.uuid4())
