# Two commands on a fresh machine:
#   make run    create .venv, install, export the shipped model to ONNX, generate images on the CPU
#   make test   create .venv if needed, lint, and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= models/faces64.safetensors
OUT    ?= out
BUNDLE := $(OUT)/faces64.sgbundle

.PHONY: run test lint bench clean

$(BIN)/stylegan: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[train,export,demo,dev]'
	@touch $@

run: $(BIN)/stylegan
	$(BIN)/stylegan-export $(MODEL) --out $(BUNDLE)
	$(BIN)/stylegan generate $(BUNDLE) --seeds 0-35 --psi 0.7 --out $(OUT)/images --grid $(OUT)/grid.png
	$(BIN)/stylegan mix $(BUNDLE) --rows 1-4 --cols 10-15 --styles coarse --out $(OUT)/mix-coarse.png
	$(BIN)/stylegan noise $(BUNDLE) --seed 3 --out $(OUT)/noise.png
	$(BIN)/stylegan truncation $(BUNDLE) --seeds 0-3 --psi -1,-0.5,0,0.5,1 --out $(OUT)/truncation.png
	cp models/faces64-directions.npz $(BUNDLE)/directions.npz
	$(BIN)/stylegan edit $(BUNDLE) --seed 1-3 --direction hair_dark --strengths -3,-1.5,0,1.5,3 --layers fine --out $(OUT)/edit-hair-dark.png
	@echo "images in $(OUT)/: grid.png, mix-coarse.png, noise.png, truncation.png, edit-hair-dark.png, images/"

lint: $(BIN)/stylegan
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/stylegan
	$(BIN)/stylegan bench $(MODEL) --backends torch,torch.compile,onnxruntime --precisions fp32,int8 --batch 1,4

clean:
	rm -rf $(OUT) .pytest_cache
