"""Build the image every component of the chart runs (`make image`).

    python images/build.py [--tag airflow-knative:dev] [--base auto|official|standin] [--ca-file PEM]

- Engine: docker when its daemon answers, else podman (run with the runc runtime and
  ulimits within the host's hard limits, which these machines need).
- Base: the official apache/airflow image; where it cannot be pulled (air-gapped
  machines) a stand-in built offline from Debian bookworm (debootstrap) and the pinned
  wheels of images/base/requirements.txt (see images/base/Dockerfile, docs/containers.md).
- Build context: only what images/Dockerfile.dockerignore lets through, copied into a
  staging directory first, so every builder (BuildKit, Docker's legacy builder, podman)
  receives the same few files whatever ignore files it reads.
- Reuse: each image is tagged with a hash of its inputs (context, Dockerfile, base image
  id); when that tag exists the build is skipped, so a second `make image` or
  `make test` costs a few seconds.
- CA: pip inside the build trusts --ca-file (default: the host's CA bundle), passed as
  a build secret, for sites behind a TLS-intercepting proxy.

The last line printed on stdout is the image reference built (the hash tag).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
APP_DOCKERFILE = IMAGES / "Dockerfile"
APP_IGNORE = IMAGES / "Dockerfile.dockerignore"
BASE_DIR = IMAGES / "base"
AIRFLOW_VERSION = "3.3.2"
PYTHON_VERSION = "3.11"
OFFICIAL_BASE = f"docker.io/apache/airflow:{AIRFLOW_VERSION}-python{PYTHON_VERSION}"
ROOTFS_REPO = "localhost/airflow-knative-rootfs"
STANDIN_REPO = "localhost/airflow-knative-base"
POSTGRES_REPO = "localhost/airflow-knative-postgres"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
INPUTS_LABEL = "io.airflow-knative.inputs"


class BuildError(RuntimeError):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Engine:
    """A container engine CLI and the flags this machine needs on every call."""

    name: str
    argv: tuple[str, ...]
    #: Flags for `run`/`build`: ulimits within the host's hard limits.
    limits: tuple[str, ...] = field(default=())

    def command(self, *args: str) -> list[str]:
        """The full argv of one engine call."""
        return [*self.argv, *args]

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        """Run one engine call; raise BuildError when it fails and check is set."""
        result = subprocess.run(self.command(*args), text=True, capture_output=quiet, check=False)
        if check and result.returncode != 0:
            detail = f": {result.stderr.strip()[-2000:]}" if quiet else ""
            raise BuildError(
                f"`{' '.join(self.command(*args[:3]))} ...` failed ({result.returncode}){detail}"
            )
        return result

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when the engine does not have it."""
        result = subprocess.run(
            self.command("image", "inspect", "--format", "{{.Id}}", ref),
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or None if result.returncode == 0 else None


def ulimit_flags() -> tuple[str, ...]:
    """nofile/nproc ulimits at or below the host's hard limits (runc cannot raise them)."""
    flags = []
    for name, limit, cap in (
        ("nofile", resource.RLIMIT_NOFILE, 65536),
        ("nproc", resource.RLIMIT_NPROC, 8192),
    ):
        hard = resource.getrlimit(limit)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return tuple(flags)


def answers(argv: Sequence[str]) -> bool:
    """Whether a command exits 0 within 30 s (an engine that answers)."""
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_engine() -> Engine:
    """Docker when its daemon answers, else podman (with runc when installed)."""
    if shutil.which("docker") and answers(["docker", "info"]):
        return Engine("docker", ("docker",))
    if shutil.which("podman"):
        argv: tuple[str, ...] = ("podman",)
        if shutil.which("runc"):
            # Debian's default runtime crun fails on hybrid cgroups ("cgroups in hybrid mode").
            argv += ("--runtime", "runc")
        if answers([*argv, "info"]):
            return Engine("podman", argv, ulimit_flags())
    raise BuildError(
        "no container engine answers: start the Docker daemon, or install podman and runc "
        "(as root: `make podman`, which runs apt-get install -y podman runc)"
    )


# --- build context -------------------------------------------------------------------


def ignore_rules(ignore_file: Path) -> list[tuple[bool, str]]:
    """(is_exception, pattern) per line of a .dockerignore file, in order."""
    rules = []
    for raw in ignore_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negate, os.path.normpath(pattern)))
    return rules


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories."""
    patterns = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, p) for p in patterns for prefix in prefixes)


def is_ignored(rules: Sequence[tuple[bool, str]], path: str) -> bool:
    """The last matching rule wins, as in Docker."""
    ignored = False
    for negate, pattern in rules:
        if _matches(pattern, path):
            ignored = not negate
    return ignored


def context_files(root: Path, ignore_file: Path) -> list[str]:
    """Paths (relative, sorted) that a builder honouring ignore_file would receive."""
    rules = ignore_rules(ignore_file)
    exceptions = [p for negate, p in rules if negate]

    def may_hold_exception(rel_dir: str) -> bool:
        return any(p == rel_dir or p.startswith(rel_dir + "/") or "*" in p for p in exceptions)

    found = []

    def walk(directory: Path) -> Iterator[str]:
        for entry in sorted(directory.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if not is_ignored(rules, rel) or may_hold_exception(rel):
                    yield from walk(entry)
            elif not is_ignored(rules, rel):
                yield rel

    found.extend(walk(root))
    return found


def stage_context(root: Path, ignore_file: Path, dockerfile: Path, dest: Path) -> str:
    """Copy the context's files and the Dockerfile into dest; return a hash of all of them."""
    digest = hashlib.sha256()
    for rel in context_files(root, ignore_file):
        source = root / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        digest.update(f"{rel}\0{os.access(source, os.X_OK)}\0".encode())
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    shutil.copy2(dockerfile, dest / "Dockerfile")
    digest.update(b"Dockerfile\0" + dockerfile.read_bytes())
    return digest.hexdigest()


# --- base images ---------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt uses here (an air-gapped site has its own), else deb.debian.org."""
    for sources in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if sources.is_file():
            for line in sources.read_text().splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and len(words) > 1:
                    return words[1]
                if words[:1] == ["deb"] and len(words) > 2:
                    return words[2] if not words[1].startswith("[") else words[3]
    return DEFAULT_MIRROR


def ensure_rootfs(engine: Engine) -> str:
    """A Debian minbase root filesystem as an image (debootstrap, about a minute)."""
    mirror = os.environ.get("DEBIAN_MIRROR") or debian_mirror()
    key = hashlib.sha256(f"{DEBIAN_SUITE} minbase {mirror}".encode()).hexdigest()[:12]
    ref = f"{ROOTFS_REPO}:{DEBIAN_SUITE}-{key}"
    if engine.image_id(ref):
        return ref
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is missing: `make podman` installs it (apt-get install -y debootstrap)")
    print(f"building the Debian {DEBIAN_SUITE} root filesystem from {mirror} (debootstrap)", flush=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-") as tmp:
        target = Path(tmp) / "rootfs"
        step = subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(target), mirror],
            capture_output=True,
            text=True,
            check=False,
        )
        if step.returncode != 0:
            raise BuildError(
                f"debootstrap failed (needs root and the Debian mirror {mirror}): {step.stderr[-2000:]}"
            )
        tar = subprocess.Popen(["tar", "-C", str(target), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            engine.command("import", "-", ref), stdin=tar.stdout, capture_output=True, check=False
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise BuildError(f"importing the root filesystem failed: {imported.stderr.decode()[-2000:]}")
    return ref


def official_base(engine: Engine) -> str | None:
    """The official image when the engine has it or can pull it, else None."""
    if engine.image_id(OFFICIAL_BASE):
        return OFFICIAL_BASE
    try:
        pulled = subprocess.run(
            engine.command("pull", OFFICIAL_BASE), capture_output=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    return OFFICIAL_BASE if pulled.returncode == 0 else None


def build(engine: Engine, context: Path, tag: str, build_args: dict[str, str], ca_file: Path | None) -> None:
    """One `build` with the CA secret (an empty file when there is none)."""
    with tempfile.NamedTemporaryFile(prefix="build-ca-", suffix=".pem") as empty:
        secret = str(ca_file) if ca_file else empty.name
        args = [
            "build",
            "--file",
            str(context / "Dockerfile"),
            "--tag",
            tag,
            "--secret",
            f"id=build-ca,src={secret}",
        ]
        args += list(engine.limits)
        if engine.name == "podman":
            args += ["--format", "docker"]  # OCI format drops SHELL (pipefail)
        for name, value in build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        env_note = {"DOCKER_BUILDKIT": "1"} if engine.name == "docker" else {}
        result = subprocess.run(
            engine.command(*args, str(context)), env={**os.environ, **env_note}, check=False
        )
        if result.returncode != 0:
            raise BuildError(f"building {tag} failed (output above)")


def labelled_build(
    engine: Engine, repo: str, context: Path, inputs: str, build_args: dict[str, str], ca_file: Path | None
) -> str:
    """Build context as repo:<inputs hash> unless that image exists already; return the ref."""
    ref = f"{repo}:{inputs[:16]}"
    if engine.image_id(ref):
        print(f"{ref} is up to date (inputs unchanged)", file=sys.stderr, flush=True)
        return ref
    (context / "Dockerfile").write_text(
        (context / "Dockerfile").read_text() + f'\nLABEL {INPUTS_LABEL}="{inputs}"\n'
    )
    build(engine, context, ref, build_args, ca_file)
    return ref


def build_from_rootfs(engine: Engine, directory: Path, repo: str, ca_file: Path | None) -> str:
    """Build a Dockerfile whose FROM is the Debian rootfs; context = every file of directory."""
    rootfs = ensure_rootfs(engine)
    digest = hashlib.sha256((engine.image_id(rootfs) or rootfs).encode())
    with tempfile.TemporaryDirectory(prefix="rootfs-context-") as tmp:
        context = Path(tmp)
        for item in sorted(p for p in directory.iterdir() if p.is_file()):
            shutil.copy2(item, context / item.name)
            digest.update(item.name.encode() + b"\0" + item.read_bytes())
        return labelled_build(engine, repo, context, digest.hexdigest(), {"ROOTFS": rootfs}, ca_file)


def ensure_standin_base(engine: Engine, ca_file: Path | None) -> str:
    """Stand-in for the official Airflow image: Debian rootfs + Python + pinned Airflow wheels."""
    return build_from_rootfs(engine, BASE_DIR, STANDIN_REPO, ca_file)


def ensure_postgres_standin(engine: Engine) -> str:
    """Stand-in for postgres:16 from Debian's PostgreSQL (the container boot test's database)."""
    return build_from_rootfs(engine, IMAGES / "postgres", POSTGRES_REPO, None)


def default_ca_file() -> Path | None:
    """The host's CA bundle (pip's, then OpenSSL's, then the usual paths), if any."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), *HOST_CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build_image(
    tag: str, base: str, ca_file: Path | None, repo: str = "airflow-knative", root: Path = ROOT
) -> str:
    """Build (or reuse) the application image; tag it as `tag` too; return its hash ref."""
    engine = find_engine()
    base_ref = official_base(engine) if base in ("auto", "official") else None
    if base == "official" and not base_ref:
        raise BuildError(
            f"cannot pull {OFFICIAL_BASE}: use --base standin (or BASE=standin) on air-gapped machines"
        )
    if not base_ref:
        print(
            f"{OFFICIAL_BASE} is not available here: using the stand-in base (docs/containers.md)",
            file=sys.stderr,
        )
        base_ref = ensure_standin_base(engine, ca_file)
    base_id = engine.image_id(base_ref) or base_ref
    with tempfile.TemporaryDirectory(prefix="image-context-") as tmp:
        context = Path(tmp)
        inputs = stage_context(
            root, root / APP_IGNORE.relative_to(ROOT), root / APP_DOCKERFILE.relative_to(ROOT), context
        )
        inputs = hashlib.sha256(f"{inputs}\0{base_id}".encode()).hexdigest()
        ref = labelled_build(engine, repo, context, inputs, {"BASE_IMAGE": base_ref}, ca_file)
    if tag and tag != ref:
        engine.run("tag", ref, tag)
    return ref


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of `make image`; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="airflow-knative:dev", help="extra tag for the built image")
    parser.add_argument("--base", choices=("auto", "official", "standin"), default="auto")
    parser.add_argument(
        "--ca-file", type=Path, default=None, help="PEM bundle pip trusts (default: the host's)"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository to build from (default: this one)"
    )
    parser.add_argument(
        "--list-context", action="store_true", help="print the build context's files and exit"
    )
    parser.add_argument("--postgres", action="store_true", help="build the postgres stand-in instead")
    args = parser.parse_args(argv)
    if args.list_context:
        print("\n".join(context_files(args.root, args.root / "images" / "Dockerfile.dockerignore")))
        return 0
    ca_file = args.ca_file or default_ca_file()
    try:
        if args.postgres:
            print(ensure_postgres_standin(find_engine()))
            return 0
        ref = build_image(args.tag, args.base, ca_file, root=args.root.resolve())
    except BuildError as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 1
    print(ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
