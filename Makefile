# Set-up and the two main jobs. Every target installs what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: all test demo demo-real bench lint clean venv

all: test

$(STAMP): setup.py pyproject.toml scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,open3d]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The main job. Until the synthetic world and the pipeline land, it builds the bags
# that exist (from ../shared/data when present) and reports their topics.
demo: $(STAMP)
	$(BIN)/mmp make-bag --dataset all --out $(OUT)/bags --force
	$(BIN)/mmp info $(OUT)/bags/*

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache out build *.egg-info
