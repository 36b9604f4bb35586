# care-edge: every target sets up what it needs, from nothing, on a fresh machine.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install -q --disable-pip-version-check
# A portable llama.cpp build (no -march=native), so a wheel built here runs on other x86-64 CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test test-slow setup-runtime setup-test setup-tools models bootstrap bench package package-smoke clean

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
	$(VPY) -m tools.models fetch
	$(VPY) -m pytest -q -m slow

models: setup-tools
	$(VPY) -m tools.models fetch

# The bootstrap default (symmetric multilingual-e5-small INT8 on both sides), until the CARE encoder ships.
E5 = $$($(VPY) -m tools.models path e5-small)
E5_PRUNED = $$($(VPY) -m tools.models path e5-small-pruned)
bootstrap: setup-tools
	$(VPY) -m tools.models fetch --only e5-small
	$(VPY) -m tools.vocab prune --model $(E5) --out $(E5_PRUNED)
	$(VPY) -m tools.export --model $(E5_PRUNED) --out prebuilt_index/query_encoder --prompt "query: " \
		--max-tokens 64 --symmetric-passage-prompt "passage: " --name multilingual-e5-small-int8
	$(VPY) -m tools.build_index build --corpus cmed-zh --encoder onnx:prebuilt_index/query_encoder \
		--dims 384 --dtype f16 --expansion-search 128 --out prebuilt_index/cmed-zh
	$(VPY) -m tools.build_index build --corpus icd10 --encoder onnx:prebuilt_index/query_encoder \
		--dims 384 --dtype f16 --expansion-search 512 --out prebuilt_index/icd10
	printf '{"collection": "cmed-zh", "query_encoder": "query_encoder"}\n' > prebuilt_index/default.json

bench: setup-runtime
	$(VENV)/bin/care-edge bench --json

clean:
	rm -rf $(VENV) build dist *.egg-info

# One offline binary (PyInstaller onefile) holding the runtime and prebuilt_index/; see packaging/README.md.
package: setup-runtime
	$(PIP) -e '.[package]'
	$(VPY) packaging/build.py

package-smoke: setup-test
	@test -x dist/care-edge || $(MAKE) package
	$(VPY) -m pytest -q -m slow tests/test_packaging.py
