# Generated documentation (included by the Makefile).
#   make docs-tables  - rewrite the option tables (README: [knative_executor], worker, dev;
#                       docs/gateway.md: gateway) from their declarations (tools/docs_tables.py)
#   make values-docs  - rewrite docs/values.md (the chart values reference) from chart/values.schema.json

.PHONY: docs-tables readme-config values-docs

docs-tables: $(STAMP)
	$(PY) -m tools.docs_tables

readme-config: docs-tables

values-docs: $(STAMP)
	$(PY) -m tools.values_docs
