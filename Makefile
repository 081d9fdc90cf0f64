# The project's commands. `make up` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

REPO := $(CURDIR)
VENV := $(REPO)/.venv
BIN := $(REPO)/.cache/bin
# The CLI must be the version of the SDK pinned in pyproject.toml: read it from there.
PULUMI_VERSION := $(shell sed -n 's/.*"pulumi==\([0-9.]*\)".*/\1/p' pyproject.toml)
# The libvirt provider plugin must be the version of the pulumi-libvirt SDK pinned there too.
PULUMI_LIBVIRT_VERSION := $(shell sed -n 's/.*"pulumi-libvirt==\([0-9.]*\)".*/\1/p' pyproject.toml)
STACK ?= dev

export PATH := $(BIN):$(VENV)/bin:$(PATH)
export PULUMI_BACKEND_URL ?= file://$(REPO)/.state
# The dev stack's passphrase; other stacks bring their own in the environment.
export PULUMI_CONFIG_PASSPHRASE ?= dev
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING := true
export PULUMI_VERSION PULUMI_LIBVIRT_VERSION

.PHONY: help setup venv pulumi plugin sdk libvirt images guestos actionlint env up preview preview-comment destroy test lint

help:
	@echo "make up     set everything up, then pulumi up the '$(STACK)' stack (local state, local libvirt)"
	@echo "make test   run the whole test suite (what CI runs)"
	@echo "make setup  set up only: libvirtd, the virtualenv, the pinned Pulumi CLI and its plugins"
	@echo 'eval "$$(make -s env)"  put the CLI, the virtualenv and the dev backend into your shell'

setup: libvirt venv pulumi plugin images guestos actionlint

libvirt:
	@bash toolchain/setup-libvirt.sh

venv: $(VENV)/.installed

# The project (editable: the `cloudservice` command, the provider, the components) and the
# provider's generated Python SDK (sdk/python), which the components build on.
$(VENV)/.installed: pyproject.toml sdk/python/setup.py
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' -e sdk/python
	@touch $@

pulumi: venv
	@bash toolchain/setup-pulumi.sh
	@bash toolchain/setup-plugins.sh

# This clone's provider as the `cloudservice` plugin, for programs in any directory.
plugin: pulumi
	@bash toolchain/install-provider.sh

# Regenerate the Python SDK from the schema (a test checks the committed one is up to date).
sdk: pulumi
	@$(VENV)/bin/cloudservice schema > provider/schema.json
	@bash toolchain/gen-sdk.sh

# The sample VM role's bootable disks (web-v1/v2/v3.vhd), built offline from Debian packages.
images: libvirt
	@python3 toolchain/testimage/build.py --out $(REPO)/.cache/images

# The Web/Worker roles' guest OS image (docs/guest.md), built from Debian packages and recorded
# in the catalog (~/.cache/cloudservice/guestos/catalog.json). The same inputs reuse the last
# build; a changed agent or builder publishes a new version (stacks on "*" move to it).
guestos: libvirt venv
	@$(VENV)/bin/cloudservice os build --family debian-12 >/dev/null

# actionlint, for tests/test_workflows.py (built once from its Go module).
actionlint:
	@bash toolchain/setup-actionlint.sh

env:
	@echo 'export PATH="$(BIN):$(VENV)/bin:$$PATH"'
	@echo 'export VIRTUAL_ENV="$(VENV)"'
	@echo 'export PULUMI_BACKEND_URL="$(PULUMI_BACKEND_URL)"'
	@echo 'export PULUMI_CONFIG_PASSPHRASE="$(PULUMI_CONFIG_PASSPHRASE)"'
	@echo 'export PULUMI_SKIP_UPDATE_CHECK=true'
	@echo 'export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true'

up: setup
	@mkdir -p $(REPO)/.state
	@pulumi stack select --create $(STACK) --non-interactive
	pulumi up --yes --stack $(STACK) --non-interactive

preview: setup
	pulumi preview --diff --stack $(STACK) --non-interactive

# The stack's preview as a pull-request comment (Markdown), as .github/workflows/preview.yml
# posts it; exits 1 (after writing the comment) when the preview failed.
COMMENT ?= $(REPO)/.cache/preview-$(STACK).md
preview-comment: setup
	@cloudservice preview-comment --stack $(STACK) --output $(COMMENT); \
	status=$$?; echo "make preview-comment: wrote $(COMMENT)" >&2; exit $$status

destroy: setup
	pulumi destroy --yes --stack $(STACK) --non-interactive

test: setup
	$(VENV)/bin/python -m pytest

# Lint: ruff's rules, ruff's formatting (check only: `ruff format PATHS` fixes it), mypy.
LINT_PATHS := provider components toolchain tests benchmarks __main__.py

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
