"""airflow-knative: Apache Airflow 3 tasks on pre-warmed, autoscaled Knative services."""

__version__ = "0.1.0"
