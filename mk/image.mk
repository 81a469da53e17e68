# The container image (included by the Makefile).
#   make image        - build images/Dockerfile with docker or podman (images/build.py):
#                       official apache/airflow base, or a stand-in built offline from
#                       Debian + pinned wheels where it cannot be pulled; skipped while
#                       its inputs are unchanged. IMAGE=repo:tag, BASE=auto|official|standin,
#                       IMAGE_CA_FILE=PEM bundle pip trusts inside the build.
#   make podman       - install podman, runc and debootstrap (root, apt-get) when missing
#   make image-lint   - hadolint on the Dockerfiles, shellcheck on every shell script
#   make test-containers - only the podman boot test of the chart (part of `make test`; docs/containers.md)

.PHONY: image podman image-lint test-containers

IMAGE ?= airflow-knative:dev
BASE ?= auto
IMAGE_CA_FILE ?=

# No engine answering: install podman (Debian) when we may; docker users have theirs.
podman:
	@if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing podman, runc and debootstrap (apt-get)"; \
		apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq podman runc debootstrap >/dev/null; \
	else \
		echo "podman/runc/debootstrap missing and not root with apt-get: install them (or a Docker engine)"; \
	fi

image: $(STAMP)
	@docker info >/dev/null 2>&1 || $(MAKE) --no-print-directory podman
	$(PY) images/build.py --tag $(IMAGE) --base $(BASE) $(if $(IMAGE_CA_FILE),--ca-file $(IMAGE_CA_FILE))

# The container tests of `make test` (tests/images, tests/containers) need an engine.
pytest: podman

image-lint: $(STAMP)
	$(PY) -m pytest tests/images -q -k lint

# The podman boot test of the rendered chart (tests/containers/test_release_boots.py):
# part of `make test`; this runs it alone (docs/containers.md).
test-containers: podman helm $(STAMP)
	HELM=$(HELM) $(PY) -m pytest tests/containers -q
