"""Validators for rendered manifests: Kubernetes schemas, the Knative CRD, Knative's webhook rules.

Neither kubernetes-validate nor the CRD schema knows what Knative's admission
webhook enforces (annotation syntax, name length, timeout limit, one port...),
so those rules are written out here, from the Knative Serving docs.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from airflow_knative.naming import DNS_1035_LABEL

KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
INTEGER = re.compile(r"^(0|[1-9][0-9]*)$")
#: Knative's defaults: config-defaults max-revision-timeout-seconds, container-concurrency-max-limit.
MAX_REVISION_TIMEOUT = 600
MAX_CONTAINER_CONCURRENCY = 1000
#: Features the chart's docs ask to enable in config-features for the shared log volume.
DOCUMENTED_FEATURES = frozenset(
    {
        "kubernetes.podspec-persistent-volume-claim",
        "kubernetes.podspec-persistent-volume-write",
        "kubernetes.podspec-volumes-emptydir",
    }
)


def validate_core(doc: dict[str, Any]) -> None:
    """Validate a core Kubernetes object strictly (unknown fields rejected) for each supported version."""
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def _close(schema: Any) -> Any:
    """Return ``schema`` with ``additionalProperties: false`` where it lists properties, keeps no others."""
    if isinstance(schema, dict):
        closed = {key: _close(value) for key, value in schema.items()}
        if (
            "properties" in closed
            and "additionalProperties" not in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")
        ):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_close(item) for item in schema]
    return schema


@cache
def knative_validator(schemas_dir: Path) -> jsonschema.protocols.Validator:
    """Return a strict validator built from the Knative Service CRD in ``../shared/schemas``."""
    found = sorted(schemas_dir.glob("knative-serving-*-services.crd.yaml"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"expected one knative-serving-*-services.crd.yaml in {schemas_dir}, found {len(found)}: "
            "the tests read the Knative Service CRD from ../shared/schemas next to the checkout"
        )
    crd_file = found[0]
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _close(version["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return validator_class(schema)  # type: ignore[no-any-return]


def knative_schema_errors(doc: dict[str, Any], schemas_dir: Path) -> list[str]:
    """Return the CRD schema violations of a Knative Service, with their paths."""
    validator = knative_validator(schemas_dir)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


def _scale(annotations: dict[str, str], key: str, problems: list[str]) -> int | None:
    value = annotations.get(f"autoscaling.knative.dev/{key}")
    if value is None:
        return None
    if not isinstance(value, str) or not INTEGER.match(value):
        problems.append(
            f"annotation autoscaling.knative.dev/{key}={value!r} is not a non-negative integer string"
        )
        return None
    return int(value)


def _check_autoscaling(annotations: dict[str, str], problems: list[str]) -> None:
    low = _scale(annotations, "min-scale", problems)
    high = _scale(annotations, "max-scale", problems)
    if low is not None and high is not None and high > 0 and low > high:
        problems.append(f"min-scale {low} > max-scale {high}")
    target = annotations.get("autoscaling.knative.dev/target")
    if target is not None:
        try:
            if float(target) < 0.01:
                problems.append(f"autoscaling.knative.dev/target={target!r} is below 0.01")
        except (TypeError, ValueError):
            problems.append(f"autoscaling.knative.dev/target={target!r} is not a number")


def _check_container(container: dict[str, Any], problems: list[str]) -> None:
    ports = container.get("ports", [])
    if len(ports) > 1:
        problems.append(f"container {container['name']} declares {len(ports)} ports; Knative allows one")
    port = ports[0]["containerPort"] if ports else None
    if ports and ports[0].get("name") not in (None, "http1", "h2c"):
        problems.append(f"port name {ports[0]['name']!r} must be http1 or h2c")
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe_port = container.get(probe_name, {}).get("httpGet", {}).get("port")
        if probe_port is not None and probe_port != port:
            problems.append(f"{probe_name} port {probe_port!r} differs from containerPort {port}")


def _check_volumes(spec: dict[str, Any], features: frozenset[str], problems: list[str]) -> None:
    claims = {v["name"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}
    empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    if empty_dirs and "kubernetes.podspec-volumes-emptydir" not in features:
        problems.append(f"volumes {sorted(empty_dirs)} are emptyDirs, which need a feature flag")
    if claims and "kubernetes.podspec-persistent-volume-claim" not in features:
        problems.append(f"volumes {sorted(claims)} use persistentVolumeClaim, which needs a feature flag")
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            writable = mount["name"] in claims and not mount.get("readOnly")
            if writable and "kubernetes.podspec-persistent-volume-write" not in features:
                problems.append(f"writable PVC mount {mount['name']} needs persistent-volume-write")


def knative_webhook_problems(
    doc: dict[str, Any], features: frozenset[str] = DOCUMENTED_FEATURES
) -> list[str]:
    """Return what Knative's admission webhook would refuse in a Service."""
    problems: list[str] = []
    name = doc["metadata"]["name"]
    if not DNS_1035_LABEL.match(name):
        problems.append(f"name {name!r} is not a DNS-1035 label")
    if len(name) + len("-00001") > 63:
        problems.append(f"name {name!r} leaves no room for the revision suffix (-00001) within 63 characters")
    template = doc["spec"]["template"]
    _check_autoscaling(template.get("metadata", {}).get("annotations", {}), problems)
    spec = template["spec"]
    if len(spec["containers"]) != 1:
        problems.append("Knative needs exactly one serving container here")
    concurrency = spec.get("containerConcurrency", 0)
    if not 0 <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        problems.append(f"containerConcurrency {concurrency} outside 0..{MAX_CONTAINER_CONCURRENCY}")
    timeout = spec.get("timeoutSeconds", 300)
    if not 0 <= timeout <= MAX_REVISION_TIMEOUT:
        problems.append(f"timeoutSeconds {timeout} outside 0..{MAX_REVISION_TIMEOUT}")
    for container in spec["containers"]:
        _check_container(container, problems)
    _check_volumes(spec, features, problems)
    visibility = doc["metadata"].get("labels", {}).get("networking.knative.dev/visibility")
    if visibility not in (None, "cluster-local"):
        problems.append(f"networking.knative.dev/visibility={visibility!r} must be cluster-local or absent")
    return [f"ksvc {name}: {p}" for p in problems]
