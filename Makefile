# Kairos — `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOME_DIR ?= var/demo
CUSTOMERS ?= 5000
SEED ?= 7
# The demo replays a synthetic world that ends on 2025-12-31: its answers are computed as of the day after
# (one clock, docs/features.md), not as of today, which would age every customer by the months since.
DEMO_CLOCK ?= 2026-01-02T00:00:00+00:00
HOST ?= 127.0.0.1
PORT ?= 8000
# LightGBM (OpenMP) threads spin while they wait; on a busy machine passive waiting is much faster.
export OMP_WAIT_POLICY ?= PASSIVE

.DEFAULT_GOAL := help
.PHONY: help install demo demo-build serve test lint typecheck pytest security bench image image-test clean

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,spark]"
	touch $@

install: $(BIN)/.installed ## Create .venv and install Kairos with pinned dependencies

demo-build: install ## Synthesise a CRM world, ingest it, build features, train and register every model
	$(BIN)/kairos synth --customers $(CUSTOMERS) --seed $(SEED) --out $(HOME_DIR)/raw
	$(BIN)/kairos ingest --dev --input $(HOME_DIR)/raw --mapping synthetic --out $(HOME_DIR)/data
	$(BIN)/kairos features build --data $(HOME_DIR)/data
	$(BIN)/kairos train all --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db --value-horizon-days 180
	$(BIN)/kairos train recs --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db
	$(BIN)/kairos train sendtime --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db
	$(BIN)/kairos train offers --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db --no-compare
	$(BIN)/kairos compile --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db

demo: demo-build ## Build the embedded default and serve the API on 127.0.0.1:8000 (development: the demo key)
	KAIROS_CLOCK=$(DEMO_CLOCK) $(BIN)/kairos serve --dev --data $(HOME_DIR)/data --tracking-uri sqlite:///$(HOME_DIR)/mlflow.db --host $(HOST) --port $(PORT)

lint: install ## ruff
	$(BIN)/ruff check features models bundles training batch serving ops cli synth tests bench image
	$(BIN)/ruff format --check features models bundles training batch serving ops cli synth tests bench image

typecheck: install ## mypy on the packages
	$(BIN)/mypy

pytest: install ## the test suite only
	$(BIN)/pytest -q

test: lint typecheck pytest ## Lint, type-check and run the whole suite (what CI runs)

security: install ## The security battery alone, fuzzing harder; ends with its table of figures (all must be 0)
	SECURITY_FUZZ_EXAMPLES=$${SECURITY_FUZZ_EXAMPLES:-200} $(BIN)/pytest -q -m security

image: ## Build the container image kairos:latest (docker build, or buildah --isolation chroot without a daemon)
	image/build.sh kairos:latest

image-test: install ## Build the image and prove it runs: non-root, production, jobs, readiness, a score, a cart (root; buildah, podman, debootstrap)
	image/build.sh kairos:latest
	$(BIN)/python image/check.py --tag kairos:latest --no-build
	image/inputs.sh > .ci/image-proven

bench: install ## Benchmarks that print figures (need ../shared/data)
	$(BIN)/python bench/ingest.py

clean: ## Remove generated data (keeps .venv)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
