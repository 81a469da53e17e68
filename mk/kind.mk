# A local Kubernetes cluster with Knative for the cluster tests and docs/cluster-walkthrough.md
# (included by the Makefile). Needs docker (or podman), kind and kubectl on PATH; none of this
# runs on the project's own machines (no container engine that kind can drive, no registry).
#   make kind-up     - kind cluster + Knative Serving + Kourier from their release manifests,
#                      with the feature flags the chart's worker pods need (before any install)
#   make kind-load   - make image, then load $(IMAGE) into the kind node
#   make kind-test   - kind-load, then tests/cluster (pytest-helm-charts) against the cluster
#   make kind-down   - delete the cluster
#   make workflow-lint - actionlint on .github/workflows (also part of make test)

.PHONY: kind-up kind-load kind-test kind-down workflow-lint

KIND ?= kind
KUBECTL ?= kubectl
KIND_CLUSTER ?= airflow-knative
# Pinned: the Knative Service schema the chart is validated against is v1.23.0 (../shared/schemas).
KNATIVE_VERSION ?= 1.23.0
KNATIVE_SERVING := https://github.com/knative/serving/releases/download/knative-v$(KNATIVE_VERSION)
KNATIVE_KOURIER := https://github.com/knative-extensions/net-kourier/releases/download/knative-v$(KNATIVE_VERSION)
KIND_ENGINE ?= $(if $(shell docker info >/dev/null 2>&1 && echo ok),docker,podman)

kind-up:
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER) --wait 120s
	$(KUBECTL) apply -f $(KNATIVE_SERVING)/serving-crds.yaml
	$(KUBECTL) wait --for=condition=Established --timeout=120s crd/services.serving.knative.dev
	$(KUBECTL) apply -f $(KNATIVE_SERVING)/serving-core.yaml
	$(KUBECTL) apply -f $(KNATIVE_KOURIER)/kourier.yaml
	# Kourier as the networking layer.
	$(KUBECTL) patch configmap/config-network -n knative-serving --type merge \
		-p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
	# Feature flags the chart's worker pods need: the shared task-log volume (a PVC, written)
	# and the /tmp emptyDir of every read-only container.
	$(KUBECTL) patch configmap/config-features -n knative-serving --type merge \
		-p '{"data":{"kubernetes.podspec-persistent-volume-claim":"enabled","kubernetes.podspec-persistent-volume-write":"enabled","kubernetes.podspec-volumes-emptydir":"enabled"}}'
	# Images loaded with `kind load` exist in no registry: Knative must not resolve their tags.
	$(KUBECTL) patch configmap/config-deployment -n knative-serving --type merge \
		-p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local,docker.io,index.docker.io"}}'
	$(KUBECTL) wait --for=condition=Available --timeout=300s deployment --all -n knative-serving
	$(KUBECTL) wait --for=condition=Available --timeout=300s deployment --all -n kourier-system

kind-load:
	$(MAKE) image IMAGE=$(IMAGE)
	@if [ "$(KIND_ENGINE)" = docker ]; then \
		$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER); \
	else \
		archive=$$(mktemp --suffix .tar) && podman save -o $$archive $(IMAGE) \
		&& $(KIND) load image-archive $$archive --name $(KIND_CLUSTER); status=$$?; rm -f $$archive; exit $$status; \
	fi

kind-test: kind-load $(STAMP) helm
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE=$(IMAGE) HELM=$(HELM) \
		$(PY) -m pytest tests/cluster -m cluster -v -p no:cacheprovider $(PYTEST_ARGS)

kind-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER)

workflow-lint: tools
	$(ACTIONLINT) .github/workflows/*.yml
