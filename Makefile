# care-edge: every target sets up what it needs, from nothing, on a fresh machine.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install -q --disable-pip-version-check
# A portable llama.cpp build (no -march=native), so a wheel built here runs on other x86-64 CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test test-slow setup-runtime setup-test setup-tools models prebuilt bench package clean

$(VPY):
	$(PY) -m venv $(VENV)

setup-runtime: $(VPY)
	$(PIP) -e .

setup-test: $(VPY)
	$(PIP) -e '.[test]'

setup-tools: $(VPY)
	$(PIP) -e '.[tools,test]'

# The main job on the shipped default: a Chinese and an English query against the shipped collections.
run: setup-runtime
	$(VENV)/bin/care-edge info
	$(VENV)/bin/care-edge search "胸痛 呼吸困难" -k 5
	$(VENV)/bin/care-edge search "chest pain when breathing" --index icd10 -k 5

test: setup-test
	$(VPY) -m pytest -q

# Real GGUF encoding and training on small real inputs (needs the tools extra and the small GGUF).
test-slow: setup-tools
	$(VPY) -m tools.models fetch --only gemma3-270m,e5-small
	$(VPY) -m pytest -q -m slow

models: setup-tools
	$(VPY) -m tools.models fetch

bench: setup-runtime
	$(VENV)/bin/care-edge bench --json

clean:
	rm -rf $(VENV) build dist *.egg-info
