"""chart/values.schema.json describes every value, and its defaults are chart/values.yaml's."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.chart.chart_helpers import CHART
from tools.values_docs import schema_properties

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
KEYS = list(schema_properties(SCHEMA))


def value_at(key: str) -> Any:
    node: Any = VALUES
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"{key} is in the schema but not in values.yaml"
        node = node[part]
    return node


def values_keys(node: dict[str, Any], path: str = "") -> list[str]:
    """Every key of values.yaml down to the schema's leaves (free-form maps are one key)."""
    keys = []
    for name, value in node.items():
        key = f"{path}.{name}" if path else name
        keys.append(key)
        schema = dict(KEYS).get(key, {})
        if isinstance(value, dict) and "properties" in schema:
            keys += values_keys(value, key)
    return keys


def test_the_schema_has_the_keys_of_values_yaml() -> None:
    assert len(KEYS) > 90
    assert sorted(key for key, _ in KEYS) == sorted(values_keys(VALUES))


@pytest.mark.parametrize(("key", "prop"), KEYS, ids=[key for key, _ in KEYS])
def test_every_key_has_a_description_and_the_default_of_values_yaml(key: str, prop: dict[str, Any]) -> None:
    assert len(prop.get("description", "")) >= 10, f"{key}: say what it does and what to set"
    assert "default" in prop, f"{key}: no default"
    assert prop["default"] == value_at(key), f"{key}: schema default differs from values.yaml"
