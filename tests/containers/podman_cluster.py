"""A tiny "cluster" on podman: runs the plans of kube_podman.py as real containers.

It plays the parts of the kubelet (volumes, init containers, probes), the ReplicaSet /
StatefulSet / Job controllers (keep replicas running, replace a dead pod, retry a failed
Job) and kube-proxy (one forwarder container per Service). Everything it creates carries
the label io.airflow-knative.run=<run id> and lives on one `--internal` network, so
`delete()` removes all of it, also after a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.containers.kube_podman import (
    ClaimVolume,
    ContainerRun,
    EmptyDirVolume,
    FilesVolume,
    PodPlan,
    Probe,
    Release,
    ServicePlan,
    Workload,
    podman_run_args,
)

HERE = Path(__file__).resolve().parent
RUN_LABEL = "io.airflow-knative.run"
#: How long one engine call may take before the test gives up on it.
CALL_TIMEOUT = 300
#: Restarts of a pod whose init container failed before the pod counts as failed.
INIT_RETRIES = 4


class ClusterError(AssertionError):
    """Something the test waited for did not happen; the message says what and where to look."""


@dataclass
class Podman:
    """The podman CLI with the flags these machines need (images/build.py decides them)."""

    argv: tuple[str, ...]
    limits: tuple[str, ...]

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = CALL_TIMEOUT,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        full_env |= env or {}
        result = subprocess.run(
            [*self.argv, *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
            input=input_text,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"podman {' '.join(args[:4])} ... failed: {result.stderr.strip()[-1500:]}")
        return result


@dataclass
class RunningPod:
    plan: PodPlan
    workload: Workload
    #: The main containers were started (init containers done).
    started: threading.Event = field(default_factory=threading.Event)
    failed: str = ""


class PodmanCluster:
    """Apply renderings, wait for readiness, replace dead pods, clean up."""

    def __init__(self, podman: Podman, state_dir: Path, helper_image: str, namespace: str = "airflow"):
        self.podman = podman
        self.run_id = secrets.token_hex(4)
        self.network = f"ak-boot-{self.run_id}"
        self.namespace = namespace
        self.state_dir = state_dir
        self.helper_image = helper_image
        self.release: Release | None = None
        self.pods: dict[str, RunningPod] = {}
        self.completed_jobs: set[str] = set()
        self.lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None

    # names ------------------------------------------------------------------------------

    def container_name(self, name: str) -> str:
        return f"{self.network}-{name}"

    def _labels(self) -> list[str]:
        return ["--label", f"{RUN_LABEL}={self.run_id}"]

    # lifecycle --------------------------------------------------------------------------

    def create(self) -> None:
        """The internal network and the helper ("node") container used for probes and calls."""
        self.podman("network", "create", "--internal", *self._labels(), self.network)
        self._run_helper(self.container_name("node"), ["python", "-c", "import time; time.sleep(10**6)"])

    def _run_helper(self, name: str, command: list[str], *extra: str) -> None:
        """A container of the test itself (node, Service forwarder): the app image, locked down."""
        self.podman(
            "run", "-d", "--name", name, "--network", self.network, "--pull", "never",
            *self._labels(), *self.podman.limits, *extra,
            "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
            "--mount", f"type=bind,source={HERE},destination=/boot-test,ro",
            "--entrypoint", json.dumps(command),
            self.helper_image,
        )  # fmt: skip

    def delete(self) -> None:
        """Remove every container, volume and the network of this run (best effort, bounded)."""
        self._stop.set()
        if self._reconciler:
            self._reconciler.join(timeout=10)
        label = f"label={RUN_LABEL}={self.run_id}"
        ids = self.podman("ps", "-aq", "--filter", label, check=False).stdout.split()
        if ids:
            self.podman("rm", "-f", "-t", "0", *ids, check=False)
        volumes = self.podman("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
        if volumes:
            self.podman("volume", "rm", "-f", *volumes, check=False)
        self.podman("network", "rm", "-f", self.network, check=False)
        shutil.rmtree(self.state_dir / self.run_id, ignore_errors=True)

    # applying a rendering ---------------------------------------------------------------

    def apply(self, release: Release) -> None:
        """Start what is new, replace pods whose spec changed, run new Jobs (helm upgrade).

        Holds the lock throughout, so the ReplicaSet controller (reconcile_once) never sees
        a pod this rollout is replacing and restarts it from the old rendering.
        """
        with self.lock:
            self._apply(release)
        if self._reconciler is None:
            self._reconciler = threading.Thread(target=self._reconcile_loop, daemon=True)
            self._reconciler.start()

    def _apply(self, release: Release) -> None:
        previous = self.release
        self.release = release
        for claim in sorted(release.claims):
            self._directory("claims", claim)
        for service in release.services.values():
            if previous is None or previous.services.get(service.name) != service:
                self._start_service(service)
        for key, workload in release.workloads.items():
            if workload.is_helm_test:
                continue
            old = previous.workloads.get(key) if previous else None
            changed = old is None or self._spec_of(previous, old) != self._spec_of(release, workload)
            if workload.kind == "Job":
                # A Job is named after the Helm revision, which `helm template` cannot raise:
                # a changed Job is the next revision's new Job.
                if changed:
                    self.completed_jobs.discard(key)
                    self._spawn(self._run_job, workload)
            else:
                self._roll_out(workload, changed)
        for pod_name, running in list(self.pods.items()):
            if running.workload.key not in release.workloads:  # left the rendering: delete its pods
                self._remove_pod(pod_name)

    def _roll_out(self, workload: Workload, changed: bool) -> None:
        """Replace the pods of a changed workload; re-own the pods of an unchanged one."""
        mine = [(n, p) for n, p in self.pods.items() if p.workload.key == workload.key]
        if not changed:
            # The pods keep running; they now belong to this rendering's workload (readiness
            # and the ReplicaSet controller look workloads up in the current rendering).
            for _, running in mine:
                running.workload = workload
            return
        for pod_name, _ in mine:
            self._remove_pod(pod_name)
        for ordinal in range(workload.replicas):
            self._spawn(self._start_pod, workload, ordinal)

    @staticmethod
    def _spec_of(release: Release | None, workload: Workload) -> str:
        """What decides a rollout: the translated pod (secrets and config included), not its name."""
        assert release is not None
        plan = release.pod(workload, "pod")
        return repr((plan.init_containers, plan.containers, plan.volumes, plan.aliases))

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pod_name(self, workload: Workload, ordinal: int) -> str:
        if workload.kind == "StatefulSet":
            return f"{workload.name}-{ordinal}"
        if workload.kind == "Pod":
            return workload.name
        return f"{workload.name}-{secrets.token_hex(3)}"

    # pods -------------------------------------------------------------------------------

    def _start_pod(self, workload: Workload, ordinal: int) -> None:
        assert self.release is not None
        plan = self.release.pod(workload, self._pod_name(workload, ordinal), ordinal)
        running = RunningPod(plan, workload)
        with self.lock:
            self.pods[plan.name] = running
        for attempt in range(INIT_RETRIES + 1):
            try:
                self._run_pod(plan, detach=True)
                running.started.set()
                return
            except ClusterError as exc:
                # The kubelet restarts failed init containers with a growing back-off
                # (e.g. a wait-for-migrations that met a database still starting).
                if attempt == INIT_RETRIES or self._stop.is_set() or plan.name not in self.pods:
                    running.failed = str(exc)
                    running.started.set()
                    return
                time.sleep(min(5 * 2**attempt, 40))

    def _run_pod(self, plan: PodPlan, detach: bool) -> int:
        """Init containers to completion, then the containers; returns the exit code when not detached."""
        sources = self._prepare_volumes(plan)
        for init in plan.init_containers:
            code = self._run_container(init, plan, sources, detach=False)
            if code != 0:
                raise ClusterError(f"pod {plan.name}: init container {init.name} exited {code}")
        code = 0
        for container in plan.containers:
            code = self._run_container(container, plan, sources, detach=detach) or code
        return code

    def _run_container(self, run: ContainerRun, plan: PodPlan, sources: dict[str, str], detach: bool) -> int:
        name = self.container_name(run.name)
        args = podman_run_args(run, plan, self.network, sources)
        args[args.index("--name") + 1] = name
        # The pod's name resolves to its containers, as a pod IP would (probes, debugging).
        args = [*args[:2], "--network-alias", plan.name, *args[2:]]
        base = ["run", *self._labels(), *self.podman.limits]
        if detach:
            self.podman(*base, "-d", *args, env=run.env)
            return 0
        result = self.podman(*base, *args, env=run.env, check=False, timeout=1200)
        logs = self.state_dir / self.run_id / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{run.name}.log").write_text(result.stdout + result.stderr)
        self.podman("rm", "-f", name, check=False)
        return result.returncode

    def _directory(self, *parts: str, mode: int = 0o755) -> Path:
        """A node directory for a volume (podman volumes get chowned on first mount; these do not)."""
        directory = self.state_dir.joinpath(self.run_id, *parts)
        if not directory.exists():
            directory.mkdir(parents=True)
            directory.chmod(mode)
        return directory

    def _prepare_volumes(self, plan: PodPlan) -> dict[str, str]:
        """Create each volume of the pod; return what podman mounts for each name."""
        sources = {}
        for name, volume in plan.volumes.items():
            if isinstance(volume, FilesVolume):
                directory = self._directory("files", plan.name, name)
                for file_name, content in volume.files.items():
                    target = directory / file_name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                    target.chmod(volume.mode)
                    if plan.fs_group is not None:
                        os.chown(target, 0, plan.fs_group)
                sources[name] = str(directory)
            elif isinstance(volume, EmptyDirVolume):
                sources[name] = str(self._directory("empty-dirs", plan.name, name, mode=0o777))
            elif isinstance(volume, ClaimVolume):
                claim = self._directory("claims", volume.claim)
                if plan.fs_group is not None:
                    self._apply_fs_group(str(claim), plan.fs_group)
                sources[name] = str(claim)
        return sources

    @staticmethod
    def _apply_fs_group(root: str, gid: int) -> None:
        """The kubelet's volume ownership management: group fsGroup, group rw, setgid dirs."""
        for directory, dirs, files in os.walk(root):
            for entry in [directory, *(os.path.join(directory, f) for f in files)]:
                stat = os.lstat(entry)
                os.lchown(entry, -1, gid)
                if os.path.isdir(entry):
                    os.chmod(entry, stat.st_mode | 0o2070)
                elif not os.path.islink(entry):
                    os.chmod(entry, stat.st_mode | 0o060)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(directory, d))]

    def _remove_pod(self, pod_name: str) -> None:
        with self.lock:
            running = self.pods.pop(pod_name, None)
        if running is None:
            return
        names = [self.container_name(c.name) for c in running.plan.containers]
        self.podman("rm", "-f", "-t", "10", *names, check=False)

    # jobs -------------------------------------------------------------------------------

    def _run_job(self, workload: Workload) -> None:
        assert self.release is not None
        for attempt in range(workload.backoff_limit + 1):
            plan = self.release.pod(workload, self._pod_name(workload, attempt))
            try:
                code = self._run_pod(plan, detach=False)
            except ClusterError:
                code = -1
            if code == 0:
                with self.lock:
                    self.completed_jobs.add(f"Job/{workload.name}")
                return
            time.sleep(min(10 * 2**attempt, 60) / 5)
        with self.lock:
            self.completed_jobs.add(f"Job/{workload.name}:failed")

    def run_helm_tests(self) -> list[tuple[str, int, str]]:
        """`helm test`: run every test-hook Pod to completion; (name, exit code, output)."""
        assert self.release is not None
        results = []
        for workload in self.release.workloads.values():
            if not workload.is_helm_test:
                continue
            plan = self.release.pod(workload, workload.name)
            code = self._run_pod(plan, detach=False)
            log = self.state_dir / self.run_id / "logs" / f"{plan.containers[0].name}.log"
            results.append((workload.name, code, log.read_text()))
        return results

    # services ---------------------------------------------------------------------------

    def _start_service(self, service: ServicePlan) -> None:
        name = self.container_name(f"svc-{service.name}")
        self.podman("rm", "-f", "-t", "0", name, check=False)
        aliases = [a for dns in service.dns_names for a in ("--network-alias", dns)]
        ports = [f"{port}:{service.backend_alias}:{target}" for port, target in service.ports]
        self._run_helper(
            name,
            ["python", "/boot-test/service_proxy.py", *ports],
            *aliases,
            # Binds the Service port (e.g. 80) without root or capabilities.
            "--sysctl", "net.ipv4.ip_unprivileged_port_start=0",
        )  # fmt: skip

    # waiting ----------------------------------------------------------------------------

    def probe(self, pod: PodPlan, run: ContainerRun, probe: Probe) -> bool:
        """One readiness check: exec in the container, or HTTP/TCP from the node container."""
        timeout = probe.timeout_seconds + 30
        if probe.exec_command:
            args = ["exec", self.container_name(run.name), *probe.exec_command]
        else:
            url = f"http://{pod.name}:{probe.http_port}{probe.http_path}" if probe.http_path else ""
            target = url or f"{pod.name}:{probe.http_port}"
            args = ["exec", self.container_name("node"), "python", "/boot-test/probe.py", target]
            args.append(str(probe.timeout_seconds))
        try:
            return self.podman(*args, check=False, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_ready(self, timeout: float) -> None:
        """Until every Job succeeded and every pod of every workload is ready (bounded)."""
        assert self.release is not None
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            previous, pending = pending, self._not_ready()
            if pending != previous:  # progress for `pytest -s` and for a hung wait's logs
                print(f"[boot {time.strftime('%H:%M:%S')}] waiting for {pending}", flush=True)
            if not pending:
                return
            time.sleep(2)
        raise ClusterError(f"not ready after {timeout:.0f}s: {pending}\n{self.describe()}")

    def _not_ready(self) -> list[str]:
        assert self.release is not None
        pending = []
        with self.lock:
            done = set(self.completed_jobs)
            pods = list(self.pods.values())
        for key, workload in self.release.workloads.items():
            if workload.is_helm_test:
                continue
            if workload.kind == "Job":
                if f"{key}:failed" in done:
                    raise ClusterError(
                        f"{key} failed after {workload.backoff_limit + 1} tries\n{self.describe()}"
                    )
                if key not in done:
                    pending.append(key)
                continue
            mine = [p for p in pods if p.workload is workload]
            ready = 0
            for running in mine:
                if running.failed:
                    raise ClusterError(f"{key}: {running.failed}\n{self.describe()}")
                if running.started.is_set() and self._pod_ready(running.plan):
                    ready += 1
            if ready < workload.replicas:
                pending.append(f"{key} {ready}/{workload.replicas}")
        return pending

    def _pod_ready(self, plan: PodPlan) -> bool:
        for run in plan.containers:
            state = self.podman(
                "inspect", "--format", "{{.State.Running}}", self.container_name(run.name), check=False
            )
            if state.stdout.strip() != "true":
                return False
            if run.readiness and not self.probe(plan, run, run.readiness):
                return False
        return True

    # the ReplicaSet / StatefulSet controller --------------------------------------------

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(2):
            try:
                self.reconcile_once()
            except (ClusterError, subprocess.TimeoutExpired):
                continue

    def reconcile_once(self) -> list[str]:
        """Replace every started pod whose container is gone or has exited; return their names."""
        # Under the lock: a rollout (apply) cannot replace pods between the listing and the
        # decision; pods first, then the listing: a pod started after it would look dead.
        with self.lock:
            assert self.release is not None
            pods = [(n, p) for n, p in self.pods.items() if p.started.is_set() and not p.failed]
            label = f"label={RUN_LABEL}={self.run_id}"
            listing = self.podman("ps", "--filter", label, "--format", "{{.Names}}").stdout.split()
            running_names = set(listing)
            replaced = []
            for pod_name, running in pods:
                names = {self.container_name(c.name) for c in running.plan.containers}
                if names <= running_names:
                    continue
                self._remove_pod(pod_name)
                if self.release.workloads.get(running.workload.key) is not running.workload:
                    continue  # a pod of an older rendering: the rollout starts its successor
                ordinal = int(pod_name.rsplit("-", 1)[1]) if running.workload.kind == "StatefulSet" else 0
                self._spawn(self._start_pod, running.workload, ordinal)
                replaced.append(pod_name)
            return replaced

    def pods_of(self, kind: str, name: str) -> list[PodPlan]:
        with self.lock:
            return [p.plan for p in self.pods.values() if p.workload.kind == kind and p.workload.name == name]

    # calls from inside the network ------------------------------------------------------

    def call(self, script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a tests/containers script in the node container (inside the internal network)."""
        return self.podman(
            "exec", self.container_name("node"), "python", f"/boot-test/{script}", *args,
            check=False, timeout=timeout,
        )  # fmt: skip

    def kill(self, run: ContainerRun) -> None:
        self.podman("kill", "--signal", "KILL", self.container_name(run.name))

    def logs(self, run: ContainerRun, tail: int = 60) -> str:
        result = self.podman("logs", "--tail", str(tail), self.container_name(run.name), check=False)
        return result.stdout + result.stderr

    def describe(self, tail: int = 25) -> str:
        """Status and last log lines of every container, for failure messages."""
        label = f"label={RUN_LABEL}={self.run_id}"
        table = self.podman("ps", "-a", "--filter", label, "--format", "{{.Names}} {{.Status}}", check=False)
        parts = [table.stdout]
        for name in table.stdout.split("\n"):
            if not name.strip():
                continue
            container = name.split()[0]
            logs = self.podman("logs", "--tail", str(tail), container, check=False)
            parts.append(f"--- {container}\n{logs.stdout}{logs.stderr}")
        logs_dir = self.state_dir / self.run_id / "logs"
        if logs_dir.exists():
            for log in sorted(logs_dir.iterdir()):
                parts.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-tail:]))
        return "\n".join(parts)


def running_pod_names(cluster: PodmanCluster) -> Sequence[str]:
    with cluster.lock:
        return sorted(cluster.pods)
