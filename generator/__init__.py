"""``make generate``: DAG files in ``workflows/`` -> per-task service data in the Helm chart."""
