from __future__ import annotations

from tests.conftest import REPO_ROOT
from tools.values_docs import main as values_docs


def test_values_reference_is_generated_from_the_schema(capsys) -> None:  # type: ignore[no-untyped-def]
    """Fails when chart/values.schema.json changed without `make values-docs`."""
    stale = values_docs(["--output", str(REPO_ROOT / "docs" / "values.md"), "--check"])

    assert stale == 0, capsys.readouterr().err


def test_values_reference_lists_every_key_with_its_default() -> None:
    text = (REPO_ROOT / "docs" / "values.md").read_text()

    assert "| `workers.defaults.containerConcurrency` | integer | `1` |" in text
    assert "| `metrics.statsd.enabled` | boolean | `false` |" in text
    assert '| `gateway.visibility` | `"public"` \\| `"cluster-local"` | `"public"` |' in text
