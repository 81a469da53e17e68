"""The one rule that turns a (dag_id, task_id) pair into a Knative service name.

The generator, the Helm chart data and the executor all call :func:`service_name`,
so a service rendered into the chart is exactly the service the executor calls.
"""

from __future__ import annotations

import base64
import hashlib
import re

#: Knative names each revision ``<service>-00001``; that name must still be a
#: 63-character DNS label, so a service name keeps six characters in reserve.
SERVICE_NAME_MAX_LENGTH = 57

#: Characters of the hash suffix that keeps sanitised names apart.
HASH_LENGTH = 8

#: Kubernetes' DNS-1035 label (Services, Knative Services): starts with a letter.
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: Kubernetes' DNS-1123 label (most other object names): may start with a digit.
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Longest DNS label.
DNS_LABEL_MAX_LENGTH = 63
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def is_dns_1035_label(name: str) -> bool:
    """Whether ``name`` may name a Kubernetes Service or a Knative Service."""
    return len(name) <= DNS_LABEL_MAX_LENGTH and bool(DNS_1035_LABEL.match(name))


def is_dns_1123_label(name: str) -> bool:
    """Whether ``name`` is a DNS-1123 label (most Kubernetes object names, label values of names)."""
    return len(name) <= DNS_LABEL_MAX_LENGTH and bool(DNS_1123_LABEL.match(name))


class InvalidServiceNameError(ValueError):
    """A service name given by a user is not a valid Knative service name."""


def _slug(text: str) -> str:
    """Lower-case ``text`` and fold every run of other characters into one dash."""
    return _NOT_ALNUM.sub("-", text.lower()).strip("-")


def _digest(dag_id: str, task_id: str) -> str:
    """Return a short hash of the exact ids.

    Sanitising is lossy (``compute_sum`` and ``compute-sum`` share a slug), so the
    hash of the untouched ids is what keeps two tasks from sharing a service.
    """
    raw = hashlib.sha256(f"{dag_id}\x00{task_id}".encode()).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:HASH_LENGTH]


def service_name(dag_id: str, task_id: str) -> str:
    """Return the Knative service name that serves ``task_id`` of ``dag_id``.

    The result is a DNS-1035 label of at most :data:`SERVICE_NAME_MAX_LENGTH`
    characters, the same for the same ids on every machine and release, and
    distinct for distinct ids (up to a 40-bit hash collision, which the
    generator checks for).
    """
    if not dag_id or not task_id:
        raise ValueError(f"dag_id and task_id must be non-empty, got {dag_id!r}, {task_id!r}")
    suffix = _digest(dag_id, task_id)
    readable = "-".join(part for part in (_slug(dag_id), _slug(task_id)) if part) or "task"
    if not readable[0].isalpha():
        readable = f"t-{readable}"
    readable = readable[: SERVICE_NAME_MAX_LENGTH - HASH_LENGTH - 1].rstrip("-")
    return f"{readable}-{suffix}"


def validate_service_name(name: str, *, source: str) -> str:
    """Check a service name a user chose (``executor_config`` or values); return it.

    ``source`` says where the name came from, so the error can point at it.
    """
    if len(name) > SERVICE_NAME_MAX_LENGTH or not DNS_1035_LABEL.match(name):
        raise InvalidServiceNameError(
            f"{source}: service name {name!r} is not valid: use lower-case letters, digits "
            f"and '-', start with a letter, end with a letter or digit, and keep it to "
            f"{SERVICE_NAME_MAX_LENGTH} characters"
        )
    return name
