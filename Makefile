# Set-up and the two main jobs. Every target installs what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: all test demo demo-real live-demo faults sample-bag train-models bench lint clean venv ros-env \
  regress regress-update

all: test

$(STAMP): setup.py pyproject.toml constraints.txt scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,torch,vlm,ray,foxglove,ocr]'
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps rapidocr-onnxruntime
	touch $(STAMP)

venv: $(STAMP)

# ROS 2 Jazzy in the venv (rclpy from PyPI wheels; vision_msgs, radar_msgs and tf2_msgs built
# from their .msg files, cached in .cache/ros); a no-op when a system ROS 2 is sourced.
ros-env: $(STAMP)
	scripts/install-ros.sh $(VENV) .cache/ros

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) ros-env
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

SAMPLE ?= bags/urban_crossing_5s
MODEL_DIR ?= ../shared/models

# With a real model directory the demo also runs the image-text models: the zero-shot
# scorer (MobileNetV2 ImageNet + WordNet) for findings, captions and answers.
IMAGE_TEXT = --set vlm.backend=zero_shot \
  --set "open_vocab.prompts=vehicle,person,bicycle,trash can,forklift,ladder" \
  --ask "how many vehicles?" --ask "is there a person?" --ask "is there a forklift?"

# The main job: the pipeline over the shipped synthetic bag (project-trained models, or real
# ones with MMP_MODEL_DIR set), writing output.mcap, report.json, report.md and pictures.
demo: $(STAMP)
	$(BIN)/mmp replay $(SAMPLE) --out $(OUT) $(if $(MMP_MODEL_DIR),$(IMAGE_TEXT))
	$(BIN)/mmp eval $(OUT)
	@echo "demo outputs: $(OUT)/output.mcap $(OUT)/report.json $(OUT)/report.md $(OUT)/frame_*.jpg"

# The node under real rclpy (ROS 2 from PyPI wheels unless a system ROS 2 is sourced): its
# own process, the shipped bag played over DDS with /clock, every output recorded to
# out/live/output; prints latency p50/p95 (and where it goes), output rates and drops.
live-demo: $(STAMP) ros-env
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(BIN)/python -m multimodal_perception.ros_pkg.live \
	  $(SAMPLE) --out out/live

# The fault corpus: damaged bags generated from the shipped one, replayed; prints the
# table of fault kinds and what became of them.
faults: $(STAMP)
	$(BIN)/python -m pytest -q -s test/test_faults.py

# The regression suite: fixed bags replayed and compared with test/regress_baseline.json
# (the real part where ../shared is present); regress-update rewrites it, listing what moved.
regress: $(STAMP)
	$(BIN)/mmp regress

regress-update: $(STAMP)
	$(BIN)/mmp regress --update

# Bags built from the real recordings in ../shared/data (never committed), replayed with
# the real models (YOLOX-nano tiled over the horizon band, the Cityscapes DeepLab letterbox
# plus full-resolution windows around the small boxes).
demo-real: $(STAMP)
	$(BIN)/mmp make-bag --dataset all --out .cache/bags
	for b in kitti_raw kitti_object vod; do \
	  $(BIN)/mmp replay .cache/bags/$$b --out out/real/$$b --model-dir $(MODEL_DIR) --tiled \
	    --set detector.tile_region=horizon --set segmenter.mode=regions \
	    $(IMAGE_TEXT) \
	    || exit 1; $(BIN)/mmp eval out/real/$$b; done

# Rebuild the shipped synthetic bag (test/test_sim.py checks a rebuild matches it: messages,
# stamps and ground truth exactly (its floats to 1e-9), pixels and points within measured
# cross-CPU tolerances).
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
