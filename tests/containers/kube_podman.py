"""Rendered Kubernetes manifests -> `podman run` specifications (no engine calls here).

The boot test (test_release_boots.py) starts a `helm template` rendering as real
containers. This module is the whole translation, pure and unit-tested on its own
(test_kube_podman.py): every container keeps exactly its manifest's image, command,
args, env (Secrets and ConfigMaps resolved), volume mounts, user and security
context. Kubernetes features podman lacks are translated in small, named steps; each
one is listed in docs/containers.md ("Translations"):

- Secret / ConfigMap values: decoded here and given as env values or as files.
- configMap / secret volumes: files written into a host directory, bind-mounted read-only.
- emptyDir: a node (host) directory per pod and volume, mode 0777 like the kubelet's.
- persistentVolumeClaim / volumeClaimTemplates: one node directory per claim, group-owned
  by the pod's fsGroup (what the kubelet's volume ownership management does).
- Service: a forwarder container with the Service's DNS names, port -> targetPort, to
  the pods its selector picks (they carry a network alias per selecting Service).
- Pod: one container per Kubernetes container, hostname = pod name; init containers run
  to completion first, one after another.
- Probes: run by the test (podman exec), which waits for readiness; they do not gate traffic.
- Job: run the pod until it exits 0, at most backoffLimit + 1 times.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]

#: The labels and kinds this translator knows how to run.
POD_OWNERS = ("Deployment", "StatefulSet", "Job", "Pod")
#: Kinds with no runtime effect in podman (RBAC, policies, accounts, ...): named so that a
#: kind nobody thought about fails loudly instead of being skipped.
INERT_KINDS = frozenset(
    {
        "ServiceAccount",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Role",
        "RoleBinding",
    }
)


class TranslationError(ValueError):
    """A manifest uses something this translator cannot run faithfully."""


# --- small value types -----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A readiness probe, run by the test with `podman exec` in the pod's container."""

    exec_command: tuple[str, ...] = ()
    http_port: int = 0
    http_path: str = ""
    period_seconds: int = 10
    timeout_seconds: int = 1


@dataclass(frozen=True)
class FilesVolume:
    """configMap / secret volume: file name -> content, mode."""

    files: Mapping[str, bytes]
    mode: int


@dataclass(frozen=True)
class EmptyDirVolume:
    memory: bool = False


@dataclass(frozen=True)
class ClaimVolume:
    """A PersistentVolumeClaim (or a StatefulSet claim), shared by every pod using it."""

    claim: str


Volume = FilesVolume | EmptyDirVolume | ClaimVolume


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool
    sub_path: str = ""


@dataclass
class ContainerRun:
    """Everything one `podman run` of one Kubernetes container needs."""

    name: str
    image: str
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    working_dir: str | None
    user: str | None
    groups: list[int]
    security: list[str]
    mounts: list[Mount]
    memory_limit: str | None = None
    readiness: Probe | None = None
    ports: dict[str, int] = field(default_factory=dict)


@dataclass
class PodPlan:
    """One pod: its containers (init first), volumes and the Service aliases it carries."""

    name: str
    owner: str
    labels: dict[str, str]
    init_containers: list[ContainerRun]
    containers: list[ContainerRun]
    volumes: dict[str, Volume]
    fs_group: int | None
    aliases: list[str]
    restart_policy: str


@dataclass(frozen=True)
class ServicePlan:
    """A ClusterIP Service: DNS names and port -> targetPort forwarding to selected pods."""

    name: str
    dns_names: tuple[str, ...]
    ports: tuple[tuple[int, int], ...]
    backend_alias: str
    selector: Mapping[str, str]


@dataclass(frozen=True)
class Workload:
    """A pod owner: Deployment, StatefulSet, Job or bare Pod."""

    kind: str
    name: str
    replicas: int
    backoff_limit: int
    manifest: Manifest

    @property
    def key(self) -> str:
        """``Kind/name``, as releases index their workloads."""
        return f"{self.kind}/{self.name}"

    @property
    def pod_spec(self) -> Manifest:
        if self.kind == "Pod":
            spec: Manifest = self.manifest["spec"]
            return spec
        template: Manifest = self.manifest["spec"]["template"]["spec"]
        return template

    @property
    def pod_labels(self) -> dict[str, str]:
        if self.kind == "Pod":
            return dict(self.manifest["metadata"].get("labels", {}))
        return dict(self.manifest["spec"]["template"].get("metadata", {}).get("labels", {}))

    @property
    def is_helm_test(self) -> bool:
        annotations = self.manifest["metadata"].get("annotations", {}) or {}
        return "test" in str(annotations.get("helm.sh/hook", "")).split(",")


# --- helpers -----------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values ($$ escapes $)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(substitute, text)


def quantity_bytes(quantity: str) -> str:
    """A Kubernetes memory quantity as podman's --memory value (bytes)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if str(quantity).endswith(unit):
            return str(int(float(str(quantity)[: -len(unit)]) * factor))
    return str(int(float(quantity)))


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- the translation ---------------------------------------------------------------------


class Release:
    """The objects of one rendering, indexed, with the translations above."""

    def __init__(
        self,
        docs: Iterable[Manifest],
        namespace: str,
        cluster_domain: str = "cluster.local",
        keep_secrets_of: Release | None = None,
    ):
        """Index docs. keep_secrets_of: the installed release, whose Secrets an upgrade keeps.

        `helm template` cannot `lookup` the cluster, so each rendering generates new
        random Secrets; on a real `helm upgrade` the chart reads the installed ones back.
        Passing the installed release gives a rendering those same values.
        """
        self.namespace = namespace
        self.cluster_domain = cluster_domain
        self.secrets: dict[str, dict[str, bytes]] = {}
        self.config_maps: dict[str, dict[str, bytes]] = {}
        self.workloads: dict[str, Workload] = {}
        self.services: dict[str, ServicePlan] = {}
        self.claims: set[str] = set()
        service_docs = []
        for doc in docs:
            kind = doc.get("kind")
            name = doc["metadata"]["name"]
            if kind == "Secret":
                data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                data |= {k: str(v).encode() for k, v in (doc.get("stringData") or {}).items()}
                self.secrets[name] = data
            elif kind == "ConfigMap":
                self.config_maps[name] = {k: str(v).encode() for k, v in (doc.get("data") or {}).items()}
            elif kind in POD_OWNERS:
                workload = self._workload(doc)
                self.workloads[workload.key] = workload
            elif kind == "Service" and doc["apiVersion"] == "v1":
                service_docs.append(doc)
            elif kind == "PersistentVolumeClaim":
                self.claims.add(name)
            elif kind not in INERT_KINDS:
                raise TranslationError(f"{kind} {name}: no podman translation for this kind")
        if keep_secrets_of is not None:
            for name, data in keep_secrets_of.secrets.items():
                if name in self.secrets:
                    self.secrets[name] = {**self.secrets[name], **data}
        for doc in service_docs:
            plan = self._service(doc)
            self.services[plan.name] = plan

    # objects ---------------------------------------------------------------------------

    @staticmethod
    def _workload(doc: Manifest) -> Workload:
        kind = doc["kind"]
        spec = doc.get("spec", {})
        replicas = 1 if kind in ("Job", "Pod") else int(spec.get("replicas", 1))
        backoff = int(spec.get("backoffLimit", 6)) if kind == "Job" else 0
        return Workload(kind, doc["metadata"]["name"], replicas, backoff, doc)

    def _service(self, doc: Manifest) -> ServicePlan:
        name = doc["metadata"]["name"]
        spec = doc["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("clusterIP") == "None":
            raise TranslationError(f"Service {name}: only ClusterIP Services are translated")
        selector = dict(spec.get("selector") or {})
        backends = [w for w in self.workloads.values() if selector_matches(selector, w.pod_labels)]
        ports = []
        for port in spec["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                target = self._named_port(name, target, backends)
            ports.append((int(port["port"]), int(target)))
        domain = f"{name}.{self.namespace}.svc.{self.cluster_domain}"
        dns = (name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc", domain)
        return ServicePlan(name, dns, tuple(ports), f"{name}--endpoints", selector)

    @staticmethod
    def _named_port(service: str, port_name: str, backends: list[Workload]) -> int:
        numbers = {
            p["containerPort"]
            for w in backends
            for c in w.pod_spec.get("containers", [])
            for p in c.get("ports", [])
            if p.get("name") == port_name
        }
        if len(numbers) != 1:
            raise TranslationError(
                f"Service {service}: targetPort {port_name!r} names {len(numbers)} container ports"
            )
        return numbers.pop()

    # pods ------------------------------------------------------------------------------

    def pod(self, workload: Workload, pod_name: str, ordinal: int = 0) -> PodPlan:
        """The plan of one pod of a workload (Deployment replicas, StatefulSet ordinal, Job try)."""
        spec = workload.pod_spec
        volumes = {v["name"]: self._volume(workload, v, ordinal) for v in spec.get("volumes", [])}
        for template in workload.manifest.get("spec", {}).get("volumeClaimTemplates", []) or []:
            claim = f"{template['metadata']['name']}-{workload.name}-{ordinal}"
            volumes[template["metadata"]["name"]] = ClaimVolume(claim)
        pod_security = spec.get("securityContext", {}) or {}
        labels = workload.pod_labels
        aliases = [s.backend_alias for s in self.services.values() if selector_matches(s.selector, labels)]

        def run(container: Manifest, prefix: str) -> ContainerRun:
            return self._container(f"{pod_name}{prefix}{container['name']}", container, pod_security, volumes)

        return PodPlan(
            name=pod_name,
            owner=f"{workload.kind}/{workload.name}",
            labels=labels,
            init_containers=[run(c, "--init-") for c in spec.get("initContainers", [])],
            containers=[run(c, "--") for c in spec["containers"]],
            volumes=volumes,
            fs_group=pod_security.get("fsGroup"),
            aliases=aliases,
            restart_policy=spec.get("restartPolicy", "Always"),
        )

    def _volume(self, workload: Workload, volume: Manifest, ordinal: int) -> Volume:
        name = volume["name"]
        if "configMap" in volume or "secret" in volume:
            is_secret = "secret" in volume
            source = volume["secret"] if is_secret else volume["configMap"]
            ref = source["secretName"] if is_secret else source["name"]
            store = self.secrets if is_secret else self.config_maps
            if ref not in store:
                if source.get("optional"):
                    return FilesVolume({}, 0o644)
                kind = "Secret" if is_secret else "ConfigMap"
                raise TranslationError(
                    f"{workload.name}: volume {name} needs {kind} {ref}, not in the rendering"
                )
            data = store[ref]
            items = source.get("items")
            files = {i["path"]: data[i["key"]] for i in items} if items else dict(data)
            return FilesVolume(files, int(source.get("defaultMode", 0o644)))
        if "emptyDir" in volume:
            return EmptyDirVolume(memory=(volume["emptyDir"] or {}).get("medium") == "Memory")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in self.claims:
                raise TranslationError(
                    f"{workload.name}: volume {name} needs PVC {claim}, not in the rendering"
                )
            return ClaimVolume(claim)
        raise TranslationError(f"{workload.name}: volume {name} has a source with no podman translation")

    def _env(self, container: Manifest) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []) or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self.secrets.get(source["secretRef"]["name"], {})
            else:
                data = self.config_maps.get(source["configMapRef"]["name"], {})
            env |= {prefix + k: v.decode() for k, v in data.items()}
        for item in container.get("env", []) or []:
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            ref = item.get("valueFrom", {})
            if "secretKeyRef" in ref or "configMapKeyRef" in ref:
                is_secret = "secretKeyRef" in ref
                key_ref = ref["secretKeyRef"] if is_secret else ref["configMapKeyRef"]
                store = self.secrets if is_secret else self.config_maps
                data = store.get(key_ref["name"])
                if data is None or key_ref["key"] not in data:
                    if key_ref.get("optional"):
                        continue
                    raise TranslationError(
                        f"container {container['name']}: env {name} needs key {key_ref['key']!r} "
                        f"of {'Secret' if is_secret else 'ConfigMap'} {key_ref['name']}, not in the rendering"
                    )
                env[name] = data[key_ref["key"]].decode()
            elif "fieldRef" in ref and ref["fieldRef"]["fieldPath"] == "metadata.namespace":
                env[name] = self.namespace
            else:
                raise TranslationError(
                    f"container {container['name']}: env {name} has an untranslated source"
                )
        return env

    def _container(
        self, run_name: str, container: Manifest, pod_security: Manifest, volumes: Mapping[str, Volume]
    ) -> ContainerRun:
        security = {**pod_security, **(container.get("securityContext") or {})}
        env = self._env(container)
        command = [expand(a, env) for a in container["command"]] if "command" in container else None
        args = [expand(a, env) for a in container["args"]] if "args" in container else None
        user = None
        if "runAsUser" in security:
            user = str(security["runAsUser"])
            if "runAsGroup" in security:
                user += f":{security['runAsGroup']}"
        if security.get("runAsNonRoot") and (user is None or user.split(":")[0] == "0"):
            raise TranslationError(f"container {container['name']}: runAsNonRoot needs a non-zero runAsUser")
        groups = [int(g) for g in pod_security.get("supplementalGroups", [])]
        if pod_security.get("fsGroup") is not None:
            groups.append(int(pod_security["fsGroup"]))
        flags: list[str] = []
        if security.get("readOnlyRootFilesystem"):
            # podman adds tmpfs on /tmp, /var/tmp and /run with --read-only; Kubernetes does not.
            flags += ["--read-only", "--read-only-tmpfs=false"]
        if security.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        capabilities = security.get("capabilities") or {}
        flags += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
        flags += [f"--cap-add={c}" for c in capabilities.get("add", [])]
        if security.get("privileged"):
            raise TranslationError(f"container {container['name']}: privileged containers are not run")
        seccomp = (security.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            flags += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise TranslationError(f"container {container['name']}: seccomp profile {seccomp} not translated")
        mounts = []
        for mount in container.get("volumeMounts", []) or []:
            if mount["name"] not in volumes:
                raise TranslationError(
                    f"container {container['name']}: mounts unknown volume {mount['name']}"
                )
            volume = volumes[mount["name"]]
            read_only = bool(mount.get("readOnly")) or isinstance(volume, FilesVolume)
            mounts.append(Mount(mount["name"], mount["mountPath"], read_only, mount.get("subPath", "")))
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        return ContainerRun(
            name=run_name,
            image=container["image"],
            command=command,
            args=args,
            env=env,
            working_dir=container.get("workingDir"),
            user=user,
            groups=groups,
            security=flags,
            mounts=mounts,
            memory_limit=quantity_bytes(memory) if memory else None,
            readiness=self._probe(container, container.get("readinessProbe")),
            ports={
                p.get("name", str(p["containerPort"])): int(p["containerPort"])
                for p in container.get("ports", [])
            },
        )

    @staticmethod
    def _probe(container: Manifest, probe: Manifest | None) -> Probe | None:
        if not probe:
            return None
        timing = {
            "period_seconds": int(probe.get("periodSeconds", 10)),
            "timeout_seconds": int(probe.get("timeoutSeconds", 1)),
        }
        if "exec" in probe:
            return Probe(exec_command=tuple(probe["exec"]["command"]), **timing)
        if "httpGet" in probe:
            port = probe["httpGet"].get("port")
            if isinstance(port, str) or port is None:
                ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
                port = ports[port] if port in ports else next(iter(ports.values()))
            return Probe(http_port=int(port), http_path=probe["httpGet"].get("path", "/"), **timing)
        if "tcpSocket" in probe:
            return Probe(http_port=int(probe["tcpSocket"]["port"]), **timing)
        raise TranslationError(f"container {container['name']}: probe type not translated")


def podman_run_args(
    run: ContainerRun, pod: PodPlan, network: str, mount_sources: Mapping[str, str]
) -> list[str]:
    """`podman run` arguments (after `run`) for one container; env values travel separately.

    mount_sources maps a volume name to what the engine mounts: a host directory (bind
    mount), or a podman volume name (mounted with nocopy). Env values are passed through the podman process's
    environment (`--env NAME`), so no secret appears in a command line.
    """
    args = ["--name", run.name, "--hostname", pod.name, "--network", network, "--pull", "never"]
    args += [
        "--label",
        f"io.airflow-knative.pod={pod.name}",
        "--label",
        f"io.airflow-knative.owner={pod.owner}",
    ]
    for alias in pod.aliases:
        args += ["--network-alias", alias]
    if run.user:
        args += ["--user", run.user]
    for group in run.groups:
        args += ["--group-add", str(group)]
    args += run.security
    if run.working_dir:
        args += ["--workdir", run.working_dir]
    if run.memory_limit:
        args += ["--memory", run.memory_limit]
    for name in run.env:
        args += ["--env", name]
    for mount in run.mounts:
        source = mount_sources[mount.volume]
        options = ["ro"] if mount.read_only else []
        if isinstance(pod.volumes[mount.volume], FilesVolume) or source.startswith("/"):
            path = f"{source}/{mount.sub_path}" if mount.sub_path else source
            args += [
                "--mount",
                ",".join(["type=bind", f"source={path}", f"destination={mount.path}", *options]),
            ]
        else:
            if mount.sub_path:
                raise TranslationError(f"{run.name}: subPath on a volume is not translated")
            # nocopy: Kubernetes never copies image content into a volume; podman would.
            args += ["--volume", f"{source}:{mount.path}:{','.join([*options, 'nocopy'])}"]
    if run.command is not None:
        import json

        args += ["--entrypoint", json.dumps(run.command)]
    args.append(run.image)
    if run.args is not None:
        args += run.args
    return args
