# Generated documentation (included by the Makefile).
#   make readme-config  - rewrite the README's [knative_executor] table from airflow_knative/settings.py

.PHONY: readme-config

readme-config: $(STAMP)
	$(PY) -m tools.readme_config
