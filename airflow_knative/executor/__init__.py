"""The KnativeExecutor: ``[core] executor = airflow_knative.executor.KnativeExecutor``."""

from airflow_knative.executor.knative_executor import KnativeExecutor

__all__ = ["KnativeExecutor"]
