# Convenience targets for the lock files and the container images. Nothing here is needed to run
# or test the project (see README.md); each recipe is the plain command it runs.
#
#   make lock                        regenerate every lock file (add UPGRADE=--upgrade to move pins)
#   make images                      build the CPU and GPU images, tagged with pyproject's version
#   make image-cpu / make image-gpu  build one of them
#   make image-serving               build the KServe runtime's image (MLServer, docker/Dockerfile.serving)
#   make base-image                  build a Debian 12 + Python 3.11 base without Docker Hub
#   make push REGISTRY=my.registry/team
#   make lint-docker                 hadolint both Dockerfiles
#
# ENGINE=docker (default) or ENGINE=podman. BASE_IMAGE=<image> builds on another base (e.g. the
# one base-image prints). Behind a proxy that re-signs TLS, PIP_CA=<CA bundle> and
# PIP_CONF=<pip.conf> reach pip as build secrets only: nothing of them is left in the image.

.DEFAULT_GOAL := help
SHELL := /bin/bash

# Version of the project, read from pyproject.toml; the images are tagged with it.
VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
REGISTRY ?= ghcr.io/example
IMAGE ?= $(REGISTRY)/dec-pipeline
GPU_IMAGE ?= $(REGISTRY)/dec-pipeline-gpu
SERVING_IMAGE ?= $(REGISTRY)/dec-serving
# The locks are resolved for x86_64 Linux, so the images are built for it on any host.
PLATFORM ?= linux/amd64
SOURCE ?= https://github.com/example/dec-pipeline

ENGINE ?= $(or $(DOCKER),docker)
BASE_IMAGE ?=
BASE_TAG ?= localhost/dec-base:python3.11-bookworm
PIP_CONF ?=
PIP_CA ?=
comma := ,
UV ?= $(if $(wildcard .venv/bin/uv),.venv/bin/uv,uv)
HADOLINT ?= $(if $(wildcard .venv/bin/hadolint),.venv/bin/hadolint,hadolint)

LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
UPGRADE ?=
BUILD_ARGS = --platform $(PLATFORM) --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) \
	$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	$(if $(PIP_CONF),--secret id=pip_conf$(comma)src=$(PIP_CONF)) \
	$(if $(PIP_CA),--secret id=pip_ca$(comma)src=$(PIP_CA))
# podman reads its settings (runc, cgroupfs, ulimits) from the project: docker/podman-env.sh.
RUN_ENGINE = $(if $(filter podman,$(notdir $(ENGINE))),source docker/podman-env.sh && )$(ENGINE)

.PHONY: help lock images image-cpu image-gpu image-serving base-image push lint-docker print-version print-images

help:
	@echo "targets: lock images image-cpu image-gpu image-serving base-image push lint-docker print-version print-images"
	@echo "images: $(IMAGE):$(VERSION) $(GPU_IMAGE):$(VERSION)"

# requirements-gpu.lock is constrained by requirements.lock, so the GPU image runs every shared
# package at the CPU image's version; only TensorFlow and the NVIDIA wheels differ.
lock:
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) $(UPGRADE) -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) -o requirements-dev.lock
	$(UV) pip compile docker/requirements-mnist.in --no-deps $(LOCK_FLAGS) $(UPGRADE) -o requirements-mnist.lock
	$(UV) pip compile docker/requirements-gpu.in -c requirements.lock $(LOCK_FLAGS) $(UPGRADE) -o requirements-gpu.lock
	$(UV) pip compile docker/requirements-serving.in $(LOCK_FLAGS) $(UPGRADE) -o requirements-serving.lock

images: image-cpu image-gpu

image-cpu:
	$(RUN_ENGINE) build -f docker/Dockerfile $(BUILD_ARGS) -t $(IMAGE):$(VERSION) .

image-gpu:
	$(RUN_ENGINE) build -f docker/Dockerfile.gpu $(BUILD_ARGS) -t $(GPU_IMAGE):$(VERSION) .

image-serving:
	$(RUN_ENGINE) build -f docker/Dockerfile.serving $(BUILD_ARGS) -t $(SERVING_IMAGE):$(VERSION) .

base-image:
	ENGINE=$(ENGINE) docker/base-image.sh $(BASE_TAG)

push: images image-serving
	$(RUN_ENGINE) push $(IMAGE):$(VERSION)
	$(RUN_ENGINE) push $(GPU_IMAGE):$(VERSION)
	$(RUN_ENGINE) push $(SERVING_IMAGE):$(VERSION)

lint-docker:
	$(HADOLINT) --config docker/hadolint.yaml docker/Dockerfile docker/Dockerfile.gpu

print-version:
	@echo $(VERSION)

print-images:
	@echo $(IMAGE):$(VERSION)
	@echo $(GPU_IMAGE):$(VERSION)
