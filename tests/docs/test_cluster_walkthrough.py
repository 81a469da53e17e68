"""docs/cluster-walkthrough.md and the README's "Deploy a new workflow", command by command.

Each shell command either runs here in a form that proves it right (make targets
exist and dry-run, helm install/upgrade render with the same chart, values and
flags, copied files exist) or is marked `# [cluster]` (the cluster tests run those).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.chart.chart_helpers import OFFLINE_SECRETS, find_helm
from tests.chart.knative_checks import DOCUMENTED_FEATURES
from tests.conftest import REPO_ROOT

WALKTHROUGH = REPO_ROOT / "docs" / "cluster-walkthrough.md"
CLUSTER_MARK = "# [cluster]"
#: helm flags that need a live release or cluster and mean nothing to `helm template`.
LIVE_ONLY_FLAGS = {"--wait", "--create-namespace", "--reuse-values", "--atomic"}
LIVE_ONLY_OPTIONS = {"--timeout"}


def shell_commands(text: str) -> list[str]:
    """Every line of the ```sh blocks, in document order."""
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def check_make(words: list[str]) -> None:
    result = subprocess.run(
        ["make", "-n", *words[1:]], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"`{' '.join(words)}` fails as a dry run: {result.stderr[-1500:]}"


def check_helm(words: list[str], tmp_path: Path) -> None:
    """`helm install|upgrade RELEASE CHART ...` renders with `helm template` and the same options."""
    verb, release, chart, *rest = words[1:]
    assert verb in ("install", "upgrade"), words
    assert (REPO_ROOT / chart / "Chart.yaml").is_file(), f"no chart at {chart}"
    args: list[str] = []
    skip_next = False
    for word in rest:
        if skip_next:
            skip_next = False
        elif word in LIVE_ONLY_OPTIONS:
            skip_next = True
        elif word not in LIVE_ONLY_FLAGS:
            args.append(word)
    for index, word in enumerate(args[:-1]):
        if word == "-f":
            assert (REPO_ROOT / args[index + 1]).is_file(), f"values file {args[index + 1]} does not exist"
    command = [find_helm(), "template", release, str(REPO_ROOT / chart), *args, *OFFLINE_SECRETS]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, f"`{' '.join(words)}` does not render: {result.stderr[-1500:]}"


def check_command(line: str, tmp_path: Path) -> None:
    if line.endswith(CLUSTER_MARK):
        return
    words = shlex.split(line, comments=True)
    assert words, line
    if words[0] == "make":
        check_make(words)
    elif words[0] == "helm":
        check_helm(words, tmp_path)
    elif words[0] == "cp":
        assert (REPO_ROOT / words[1]).is_file() and (REPO_ROOT / words[2]).is_dir(), line
    elif words[0] == "export" and words[1].startswith("PATH="):
        assert ".tools/bin" in words[1]
    else:
        pytest.fail(f"command neither checked here nor marked {CLUSTER_MARK!r}: {line}")


def test_walkthrough_commands_are_checked_or_marked(tmp_path: Path) -> None:
    commands = shell_commands(WALKTHROUGH.read_text())
    assert len(commands) > 15
    for line in commands:
        needs_cluster = line.split()[0] in ("kubectl", "curl") or "$(kubectl" in line
        needs_cluster = needs_cluster or line.startswith(("helm test", "helm status"))
        if needs_cluster:
            assert line.endswith(CLUSTER_MARK), f"needs a cluster but is not marked: {line}"
        check_command(line, tmp_path)


def test_walkthrough_order_cluster_flags_image_install_password_gateway_dag_upgrade() -> None:
    text = WALKTHROUGH.read_text()
    commands = shell_commands(text)

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(commands) if line.startswith(prefix))

    order = [
        first("make kind-up"),
        first("kubectl patch configmap/config-features"),
        first("make kind-load"),
        first("helm install"),
        first("PASSWORD="),
        first("kubectl port-forward --namespace kourier-system"),
        first("cp "),
        first("make generate"),
        first("helm upgrade"),
    ]
    assert order == sorted(order), order
    for feature in DOCUMENTED_FEATURES:
        assert text.index(feature) < text.index("helm install"), f"{feature} must be set before the install"
    assert "Host: $GATEWAY_HOST" in text, "reaching the gateway without DNS"
    assert '"$URL/runWorkflow' in text, "reaching the gateway with DNS"


def test_walkthrough_is_linked_from_readme_and_chart_docs() -> None:
    for doc in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "chart.md"):
        assert "cluster-walkthrough.md" in doc.read_text(), doc


def test_readme_deploys_a_new_workflow_in_at_most_five_commands(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Deploy a new workflow", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)[:1]
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert 1 < len(commands) <= 5, commands
    assert commands[0].startswith("cp ") and "workflows/" in commands[0]
    assert commands[1].startswith("make generate")
    assert commands[2].startswith(("make image", "make kind-load"))
    assert commands[-1].startswith("helm upgrade")
    for line in commands:
        check_command(line, tmp_path)
