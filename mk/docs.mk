# Generated documentation (included by the Makefile).
#   make docs-tables  - rewrite the option tables (README: [knative_executor], worker, dev;
#                       docs/gateway.md: gateway) from their declarations (tools/docs_tables.py)

.PHONY: docs-tables readme-config

docs-tables: $(STAMP)
	$(PY) -m tools.docs_tables

readme-config: docs-tables
