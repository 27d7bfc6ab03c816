# DETR Studio developer commands. Each target creates .venv and installs when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen

.PHONY: run test bench lint install clean package demo-model screenshots

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The window, after checking that Qt's system libraries are here (it prints the install command when not);
# on a first start (no recent project) it writes and opens the demo project.
run: $(STAMP)
	QT_QPA_PLATFORM= $(BIN)/detr-studio --check-display
	QT_QPA_PLATFORM= $(BIN)/detr-studio

# A one-folder PyInstaller build in dist/detr-studio/, checked by starting it offscreen.
package: $(STAMP)
	$(BIN)/pip install -c constraints.txt -e '.[packaging]'
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/detr-studio.spec
	dist/detr-studio/detr-studio --version
	QT_QPA_PLATFORM=offscreen dist/detr-studio/detr-studio --smoke-test

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

# The README's "closing the loop" screenshots (docs/loop-*.png), from the real window on the demo project
# (fine-tunes the demo model on the CPU: several minutes).
screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python docs/make_screenshots.py --out docs

lint: $(STAMP)
	$(BIN)/ruff check detr_studio tests
	$(BIN)/ruff format --check detr_studio tests

clean:
	rm -rf $(VENV) build dist *.egg-info

# Train the built-in demo model from scratch (see detr_studio/resources/demo/README.md; about an hour on 2 cores).
DEMO_TRAIN = $(BIN)/detr-studio train --data build/demo/annotations/instances_train.json --images build/demo/train \
	--val-data build/demo/annotations/instances_val.json --val-images build/demo/val \
	--scales 96,112,128 --max-size 128 --val-size 128 --no-crop --workers 0 --device cpu
demo-model: $(STAMP)
	$(BIN)/detr-studio demo build/demo --train 600 --val 100 --size 128 --overwrite
	$(DEMO_TRAIN) --arch demo --num-queries 20 --query-groups 4 --batch 8 --epochs 90 --lr 0.0002 \
		--lr-backbone 0.0002 --lr-drop 65 --eval-every 5 --out build/demo-run
	$(DEMO_TRAIN) --weights build/demo-run/best.safetensors --masks --stage masks --batch 4 --epochs 6 --lr 1e-4 \
		--lr-backbone 0 --lr-drop 5 --eval-every 2 --out build/demo-masks
	cp build/demo-masks/best.safetensors detr_studio/resources/demo/model.safetensors
	cp build/demo-masks/best.json detr_studio/resources/demo/model.json
