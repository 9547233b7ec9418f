# Set-up and the two main jobs. Every target installs what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: all test demo demo-real sample-bag train-models bench lint clean venv

all: test

$(STAMP): setup.py pyproject.toml constraints.txt scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,torch]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

SAMPLE ?= bags/urban_crossing_5s

# The main job, on the project's own synthetic bag. Until the pipeline lands it reports
# the bag (topics, types, counts, rates) and draws ground-truth pictures of the scenarios.
demo: $(STAMP)
	$(BIN)/mmp info $(SAMPLE)
	$(BIN)/mmp preview --scenario urban_crossing --time 2.0 --out $(OUT)/urban_crossing_t2.png
	$(BIN)/mmp preview --scenario highway_following --time 4.5 --out $(OUT)/highway_following.png
	$(BIN)/mmp preview --scenario indoor_aisle --time 4.5 --out $(OUT)/indoor_aisle.png
	@echo "demo outputs in $(OUT)/"

# Bags built from the real recordings in ../shared/data (never committed).
demo-real: $(STAMP)
	$(BIN)/mmp make-bag --dataset all --out .cache/bags --force
	$(BIN)/mmp info .cache/bags/*

# Rebuild the shipped synthetic bag (the tests check it regenerates byte for byte).
sample-bag: $(STAMP)
	rm -rf $(SAMPLE)
	$(BIN)/mmp make-bag --synthetic --scenario urban_crossing --seconds 5 --seed 0 --out $(SAMPLE)

# Reproduce the project-trained tiny models in models/ (CPU, about 25 minutes).
train-models: $(STAMP)
	$(BIN)/python -u -m multimodal_perception.perception.training.train_all

bench: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache out build *.egg-info
