"""Benchmarks: the KnativeExecutor against stock Airflow, side by side (``make bench``)."""
