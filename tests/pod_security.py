"""The Baseline Pod Security Standard, as the API server's PodSecurity admission applies it
to a pod created in a namespace labelled ``pod-security.kubernetes.io/enforce: baseline``.

A test-side transcription of kubernetes/pod-security-admission at tag v0.36.2 (Kubernetes
1.36.2): every check in ``policy/check_*.go`` registered with ``Level: api.LevelBaseline``,
in the newest version of each, which is what a namespace gets when it sets no
``enforce-version`` (Kubeflow's and KFP's labels set none). ``policy/visitor.go``: a
container check covers init, regular and ephemeral containers. ``admission/admission.go``
(``Validate``, ``defaultPodSpecResources``): only pods, namespaces and pod templates of
workload objects are evaluated; a PersistentVolume never is.

Between v0.33 (Kubernetes 1.33) and v0.36.2 the Baseline profile changed twice:
hostProbesAndHostLifecycle is new in 1.34, and 1.35 lets procMount be anything in a pod
with ``hostUsers: false``. The other checks and their allowed values are the same from 1.32
on (sysctls last changed in 1.32, seLinuxOptions in 1.31).

Each check takes a pod (the dict of its YAML) and returns None when it passes, else what
it found, as a short text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

# check_capabilities_baseline.go: the container runtime's default set.
ALLOWED_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
# check_seLinuxOptions.go, version 1.31.
ALLOWED_SELINUX_TYPES = frozenset({
    "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t",
})
# check_sysctls.go, version 1.32: the namespaced, pod-isolated ones.
ALLOWED_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
})
# check_seccompProfile_baseline.go (1.19) and check_appArmorProfile.go: profile types that
# keep a confinement; Unconfined is the one they refuse.
ALLOWED_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def containers(spec: dict) -> Iterator[dict]:
    """Init, regular and ephemeral containers, as visitContainers walks them."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _context(holder: dict) -> dict:
    return holder.get("securityContext") or {}


def _names(found: list) -> str | None:
    return ", ".join(found) or None


def host_process(pod: dict) -> str | None:
    spec = pod["spec"]
    setters = ["pod"] if (_context(spec).get("windowsOptions") or {}).get("hostProcess") else []
    setters += [c["name"] for c in containers(spec)
                if (_context(c).get("windowsOptions") or {}).get("hostProcess")]
    return _names(setters)


def host_namespaces(pod: dict) -> str | None:
    return _names([f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC")
                   if pod["spec"].get(key)])


def privileged(pod: dict) -> str | None:
    return _names([c["name"] for c in containers(pod["spec"]) if _context(c).get("privileged")])


def capabilities(pod: dict) -> str | None:
    return _names([f"{c['name']} adds {cap}" for c in containers(pod["spec"])
                   for cap in (_context(c).get("capabilities") or {}).get("add") or []
                   if cap not in ALLOWED_CAPABILITIES])


def host_path_volumes(pod: dict) -> str | None:
    return _names([v["name"] for v in pod["spec"].get("volumes") or []
                   if v.get("hostPath") is not None])


def host_ports(pod: dict) -> str | None:
    return _names([f"{c['name']} hostPort {p['hostPort']}" for c in containers(pod["spec"])
                   for p in c.get("ports") or [] if p.get("hostPort")])


def host_probes_and_lifecycle(pod: dict) -> str | None:
    found = []
    for container in containers(pod["spec"]):
        handlers = [container.get(probe) for probe in
                    ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = container.get("lifecycle") or {}
        handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in filter(None, handlers):
            for action in ("httpGet", "tcpSocket"):
                host = (handler.get(action) or {}).get("host")
                if host:
                    found.append(f"{container['name']} host {host}")
    return _names(found)


def _bad_profile(context: dict, field: str) -> str | None:
    profile = context.get(field)
    if profile is not None and profile.get("type") not in ALLOWED_PROFILE_TYPES:
        return str(profile.get("type"))
    return None


def apparmor(pod: dict) -> str | None:
    spec = pod["spec"]
    found = [f"{name}: {bad}" for name, holder in
             [("pod", spec), *((c["name"], c) for c in containers(spec))]
             if (bad := _bad_profile(_context(holder), "appArmorProfile"))]
    for key, value in (pod.get("metadata", {}).get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"{key}={value}")
    return _names(found)


def proc_mount(pod: dict) -> str | None:
    spec = pod["spec"]
    if spec.get("hostUsers") is False:  # version 1.35: a user-namespaced pod may
        return None
    return _names([f"{c['name']}: {_context(c)['procMount']}" for c in containers(spec)
                   if _context(c).get("procMount") not in (None, "Default")])


def selinux(pod: dict) -> str | None:
    spec = pod["spec"]
    found = []
    for name, holder in [("pod", spec), *((c["name"], c) for c in containers(spec))]:
        options = _context(holder).get("seLinuxOptions")
        if options is not None and (options.get("type", "") not in ALLOWED_SELINUX_TYPES
                                    or options.get("user") or options.get("role")):
            found.append(name)
    return _names(found)


def seccomp(pod: dict) -> str | None:
    spec = pod["spec"]
    return _names([f"{name}: {bad}" for name, holder in
                   [("pod", spec), *((c["name"], c) for c in containers(spec))]
                   if (bad := _bad_profile(_context(holder), "seccompProfile"))])


def sysctls(pod: dict) -> str | None:
    return _names([s["name"] for s in _context(pod["spec"]).get("sysctls") or []
                   if s["name"] not in ALLOWED_SYSCTLS])


# Check ID (as the admission reports it) -> the check.
BASELINE_CHECKS: dict[str, Callable[[dict], str | None]] = {
    "windowsHostProcess": host_process,
    "hostNamespaces": host_namespaces,
    "privileged": privileged,
    "capabilities_baseline": capabilities,
    "hostPathVolumes": host_path_volumes,
    "hostPorts": host_ports,
    "hostProbesAndHostLifecycle": host_probes_and_lifecycle,
    "appArmorProfile": apparmor,
    "procMount": proc_mount,
    "seLinuxOptions": selinux,
    "seccompProfile_baseline": seccomp,
    "sysctls": sysctls,
}


def baseline_violations(pod: dict) -> dict:
    """``{check ID: what it found}`` for every Baseline check the pod fails."""
    results = {check_id: check(pod) for check_id, check in BASELINE_CHECKS.items()}
    return {check_id: found for check_id, found in results.items() if found}
