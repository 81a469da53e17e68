"""The workflow gateway: POST /runWorkflow/<dag_id> -> DAG run -> output."""
