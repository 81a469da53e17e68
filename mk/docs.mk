# Generated documentation (included by the Makefile).
#   make readme-config  - rewrite the README's [knative_executor] table from airflow_knative/settings.py
#   make values-docs    - rewrite docs/values.md (the chart values reference) from chart/values.schema.json

.PHONY: readme-config values-docs

readme-config: $(STAMP)
	$(PY) -m tools.readme_config

values-docs: $(STAMP)
	$(PY) -m tools.values_docs
