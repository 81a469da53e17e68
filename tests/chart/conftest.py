"""Fixtures of the chart tests; the rendering helpers live in chart_helpers.py (a unique module name)."""

from __future__ import annotations

from tests.chart.chart_helpers import generated_services, rendered

__all__ = ["generated_services", "rendered"]
