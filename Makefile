# care-edge: every target sets up what it needs, from nothing, on a fresh machine.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install -q --disable-pip-version-check
# A portable llama.cpp build (no -march=native), so a wheel built here runs on other x86-64 CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run serve serve-load test test-slow test-browser setup-runtime setup-test setup-tools models bootstrap prebuilt e5-symmetric care-eval full-eval shipped-eval icd10-relex wording-eval prebuilt-install bench package package-smoke clean

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

# The fast suite without the tools extra; the tests that need it (marked needs_tools) run in test-slow.
test: setup-test
	$(VPY) -m pytest -q -m "not slow and not needs_tools"

# The search page in headless Chromium: the system's Chromium (installed here with apt when run as root, with a CJK
# font so Chinese renders), driven by Playwright's Python package (the `browser` extra; its browser downloads are never
# used). Without Chromium the tests skip with one line. Screenshots of the main states go to $(SCREENSHOTS).
SCREENSHOTS ?= build/screenshots
test-browser: setup-test
	$(PIP) -e '.[test,browser]'
	@{ test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -qi wqy; } || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null; } || \
		echo "test-browser: chromium could not be installed (apt-get install -y chromium): the browser tests will skip"
	CARE_EDGE_SCREENSHOTS=$(SCREENSHOTS) $(VPY) -m pytest -q -m browser

# Real GGUF encoding and training on small real inputs, and the fast tests that need the tools extra (torch, bm25s).
# The binary's tests (tests/test_packaging.py, slow) run in package-smoke, which builds the binary first.
test-slow: setup-tools
	$(VPY) -m tools.models fetch
	$(VPY) -m pytest -q -m "(slow or needs_tools) and not browser" --ignore=tests/test_packaging.py \
		--ignore=tests/test_serve_binary.py

models: setup-tools
	$(VPY) -m tools.models fetch

# The bootstrap default (symmetric multilingual-e5-small INT8 on both sides), until the CARE encoder ships.
E5 = $$($(VPY) -m tools.models path e5-small)
E5_PRUNED = $$($(VPY) -m tools.models path e5-small-pruned)
bootstrap: setup-tools
	$(VPY) -m tools.models fetch --only e5-small
	$(VPY) -m tools.build.vocab prune --model $(E5) --out $(E5_PRUNED)
	$(VPY) -m tools.export --model $(E5_PRUNED) --out prebuilt_index/query_encoder --prompt "query: " \
		--max-tokens 64 --symmetric-passage-prompt "passage: " --name multilingual-e5-small-int8
	$(VPY) -m tools.build.index build --corpus cmed-zh --encoder onnx:prebuilt_index/query_encoder \
		--dims 384 --dtype f16 --expansion-search 128 --default-mode hybrid --out prebuilt_index/cmed-zh
	$(VPY) -m tools.build.index build --corpus icd10 --encoder onnx:prebuilt_index/query_encoder \
		--dims 384 --dtype f16 --expansion-search 512 --out prebuilt_index/icd10
	printf '{"collection": "cmed-zh", "query_encoder": "query_encoder"}\n' > prebuilt_index/default.json

# CARE, from the models and ../shared/data: EmbeddingGemma GGUF document vectors, the two training stages, INT8
# export, then the collections, all into $(CARE_RUN). Every step resumes where it stopped (text-keyed vector cache,
# training checkpoints, a finished stage reused when its settings match); about 3.5 hours on 2 free cores if run in
# this order (README, "Training the query encoder", gives the wall time of each step). The student is
# trained at the GGUF's full 768 dims. What ships is $(SHIP_DIMS) dims with $(SHIP_DTYPE) vectors; a Matryoshka
# width below 768 would cut the query encoder (`export --dims`) and the collections alike. 768 i8 was measured
# better and smaller than 512 f16 (README, "Dims and dtype"). `make care-eval` evaluates it against BM25, e5 and the LLM in one
# run; `make prebuilt-install` makes it the shipped default.
CACHE_DIR = $${CARE_EDGE_CACHE:-$$HOME/.cache/care-edge}
CARE_RUN = $(CACHE_DIR)/runs/care
CARE_DIMS = 768
SHIP_DIMS = 768
SHIP_DTYPE = i8
# Run folders carry the recipe's version: a finished stage with other settings is refused, so a new recipe needs new folders.
CARE_RECIPE = v2
STAGE1_DATA = --max-per-source 4000 --source-caps cmedir=0,toyhom=0,icd=3000,medquad=1500 --documents 1500 \
	--document-chars 64 --titles 10000
STAGE2_DATA = --max-per-source 1500 --source-caps cmedir=0,icd=8000 --sources cmedir,kuake,chip,medquad,icd \
	--negative-corpora cmedir-titles,icd10
# A second stage-II pass on a subset of STAGE2_DATA's pairs (no new teacher vectors), weighted to cMedIR; negatives
# are re-mined with the first pass's student.
STAGE2C_DATA = --max-per-source 1000 --source-caps cmedir=0,icd=3000 --sources cmedir,kuake,chip,medquad,icd \
	--negative-corpora cmedir-titles,icd10
EVAL_TASKS = cmedir-retrieval,toyhom-qa,icd-coding-es,icd-coding-fr,icd-coding-pt,icd-coding-de,icd-coding-zh,kuake-qqr-sts
LLM_SKIPPED = llm:toyhom-qa,llm:icd-coding-es,llm:icd-coding-fr,llm:icd-coding-pt,llm:icd-coding-de,llm:icd-coding-zh,\
	llm:kuake-qqr-sts
prebuilt: setup-tools models
	-$(VPY) -m tools.build.index seed-cache prebuilt_index/cmed-zh prebuilt_index/icd10
	test -d $(E5_PRUNED) || $(VPY) -m tools.build.vocab prune --model $(E5) --out $(E5_PRUNED)
	$(VPY) -m tools.train teacher stage1 $(STAGE1_DATA)
	$(VPY) -m tools.train stage1 --student $(E5_PRUNED) --out $(CARE_RUN)/stage1-$(CARE_RECIPE) --dims $(CARE_DIMS) \
		$(STAGE1_DATA) --epochs 1 --resume
	$(VPY) -m tools.build.index embed --corpus cmedir-titles
	$(VPY) -m tools.build.index embed --corpus icd10
	$(VPY) -m tools.train teacher stage2 $(STAGE2_DATA)
	$(VPY) -m tools.train stage2 --student $(CARE_RUN)/stage1-$(CARE_RECIPE) --out $(CARE_RUN)/stage2-$(CARE_RECIPE) \
		$(STAGE2_DATA) --epochs 2 --resume
	$(VPY) -m tools.train stage2 --student $(CARE_RUN)/stage2-$(CARE_RECIPE) --out $(CARE_RUN)/stage2c-$(CARE_RECIPE) \
		$(STAGE2C_DATA) --epochs 2.5 --resume
	$(VPY) -m tools.build.index embed --corpus cmed-zh
	test -d $(CARE_RUN)/qe-stage1-$(CARE_RECIPE) || $(VPY) -m tools.export \
		--student $(CARE_RUN)/stage1-$(CARE_RECIPE) --out $(CARE_RUN)/qe-stage1-$(CARE_RECIPE) --name care-stage1-$(CARE_RECIPE)
	test -d $(CARE_RUN)/qe-ship-$(CARE_RECIPE) || $(VPY) -m tools.export \
		--student $(CARE_RUN)/stage2c-$(CARE_RECIPE) --out $(CARE_RUN)/qe-ship-$(CARE_RECIPE) --dims $(SHIP_DIMS) \
		--name care-stage2c-$(CARE_RECIPE)
	$(VPY) -m tools.build.index build --corpus icd10 --out $(CARE_RUN)/icd10 --dims $(SHIP_DIMS) \
		--dtype $(SHIP_DTYPE) --expansion-search 256 $(ICD10_SEARCH)
	$(VPY) -m tools.build.index build --corpus cmed-zh --out $(CARE_RUN)/cmed-zh --dims $(SHIP_DIMS) \
		--dtype $(SHIP_DTYPE) --expansion-search 256 --default-mode hybrid

# The symmetric e5 baseline the evaluation compares with (the bootstrap's encoder, exported the same way).
e5-symmetric: setup-tools models
	test -d $(E5_PRUNED) || $(VPY) -m tools.build.vocab prune --model $(E5) --out $(E5_PRUNED)
	test -d $(CARE_RUN)/e5-symmetric || $(VPY) -m tools.export --model $(E5_PRUNED) --out $(CARE_RUN)/e5-symmetric \
		--prompt "query: " --max-tokens 64 --symmetric-passage-prompt "passage: " --name multilingual-e5-small-int8

# The LLM runs cMedIR only here: its other columns (an hour of GGUF query vectors on 2 cores) are in the first
# CARE run's report, eval-care-first-run, on the same splits with the same code.
care-eval: prebuilt e5-symmetric
	$(VPY) -m tools.evaluate --tasks $(EVAL_TASKS) --systems bm25,e5,llm,care,hybrid --skip $(LLM_SKIPPED) \
		--e5-encoder $(CARE_RUN)/e5-symmetric \
		--care-encoder $(CARE_RUN)/qe-stage1-$(CARE_RECIPE),$(CARE_RUN)/qe-ship-$(CARE_RECIPE) \
		--latency-queries 100 --threads 2 --out prebuilt_index/reports --name eval-care

# Every task of tools.data.tasks (retrieval, rerank, STS, ICD coding, MedQuAD, pair classification, the department probe,
# chapter clustering) for every system, brute force, in one run: the README's headline table. The GGUF's vectors
# come from the text-keyed cache; on a fresh cache the LLM's query side and the LiveQA / MedQuAD answers take
# hours on 2 cores, everything else minutes.
full-eval: e5-symmetric
	$(VPY) -m tools.evaluate --tasks all --systems bm25,e5,llm,care,hybrid --e5-encoder $(CARE_RUN)/e5-symmetric \
		--care-encoder $(CARE_RUN)/qe-stage1-$(CARE_RECIPE),prebuilt_index/query_encoder --latency-queries 100 --threads 2 \
		--out prebuilt_index/reports --name eval-all

# The shipped default searched through the runtime itself (ANN, BM25 postings, fusion), dense and hybrid, against
# brute-force BM25 and e5 on the same splits: what `care-edge search` answers. Chooses each collection's default_mode.
SHIPPED_TASKS = cmedir-retrieval,toyhom-qa,icd-coding-es,icd-coding-fr,icd-coding-pt,icd-coding-de,icd-coding-zh
# icd10's lexical side indexes every language's name of a code and fuses by score, hybrid by default: chosen on the
# ICD-10 wording-shift tasks (prebuilt_index/reports/probe-lexical-fusion.json, eval-wording). `make icd10-relex`
# rewrites only the lexical tables and the search block of the shipped collection (vectors and documents unchanged).
ICD10_SEARCH = --lexical-fields 'text,meta.names.*' --fusion scores:0.6,0.4 --default-mode hybrid
icd10-relex: setup-tools
	$(VPY) -m tools.build.index relex --collection prebuilt_index/icd10 $(ICD10_SEARCH)

WORDING_TASKS = icd-parent-en,icd-parent-es,icd-parent-fr,icd-parent-pt,icd-parent-de,icd-parent-zh,icd-parent-it
WORDING_TASKS := $(WORDING_TASKS),icd-children-en,icd-children-es,icd-children-fr,icd-children-pt,icd-children-de
WORDING_TASKS := $(WORDING_TASKS),icd-children-zh,icd-edition-zh,icd-edition-es,icd-zeroshot-it
WORDING_TASKS := $(WORDING_TASKS),icd-coding-es,icd-coding-fr,icd-coding-pt,icd-coding-de,icd-coding-zh,cmedir-retrieval
# The LLM's query vectors cost about 1 s each on a loaded 2-core machine: it runs the wording tasks but the children
# of four languages, and not the ICD coding or cMedIR tasks (its figures there are in eval-all); e5 sits cMedIR out.
WORDING_SKIPPED = llm:icd-children-es,llm:icd-children-fr,llm:icd-children-pt,llm:icd-children-de
WORDING_SKIPPED := $(WORDING_SKIPPED),llm:icd-coding-es,llm:icd-coding-fr,llm:icd-coding-pt,llm:icd-coding-de
WORDING_SKIPPED := $(WORDING_SKIPPED),llm:icd-coding-zh,llm:cmedir-retrieval,e5:cmedir-retrieval
wording-eval: e5-symmetric
	$(VPY) -m tools.evaluate --tasks $(WORDING_TASKS) --systems bm25,e5,llm,care,hybrid,shipped \
		--skip $(WORDING_SKIPPED) --e5-encoder $(CARE_RUN)/e5-symmetric --latency-queries 20 --threads 2 \
		--out prebuilt_index/reports --name eval-wording

shipped-eval: e5-symmetric
	$(VPY) -m tools.evaluate --tasks $(SHIPPED_TASKS) --systems bm25,e5,shipped --e5-encoder $(CARE_RUN)/e5-symmetric \
		--latency-queries 100 --threads 2 --out prebuilt_index/reports --name eval-shipped

prebuilt-install: prebuilt
	rm -rf prebuilt_index/query_encoder prebuilt_index/cmed-zh prebuilt_index/cmedir-titles prebuilt_index/icd10
	cp -r $(CARE_RUN)/qe-ship-$(CARE_RECIPE) prebuilt_index/query_encoder
	cp -r $(CARE_RUN)/cmed-zh $(CARE_RUN)/icd10 prebuilt_index/
	printf '{"collection": "cmed-zh", "query_encoder": "query_encoder"}\n' > prebuilt_index/default.json
	$(VENV)/bin/care-edge info --verify

bench: setup-runtime
	$(VENV)/bin/care-edge bench --json

# The local search page on 127.0.0.1 (Ctrl+C stops it).
serve: setup-runtime
	$(VENV)/bin/care-edge serve --open

# 4 clients for 30 s of real queries against `care-edge serve`: latency, errors, memory, answers equal to the CLI's.
serve-load: setup-runtime
	$(VPY) -m edge.serve.loadtest --clients 4 --seconds 30

clean:
	rm -rf $(VENV) build dist *.egg-info

# One offline binary (PyInstaller onefile) holding the runtime and prebuilt_index/; see packaging/README.md.
# dist/care-edge.sources.sha256 records what the binary was built from (packaging/sources_digest.py).
package: setup-runtime
	$(PIP) -e '.[package]'
	digest=$$($(VPY) packaging/sources_digest.py) && $(VPY) packaging/build.py && \
		printf '%s\n' "$$digest" > dist/care-edge.sources.sha256

# Rebuilds first when the binary is missing or edge/, packaging/, prebuilt_index/ or pyproject.toml changed since it
# was built.
package-smoke: setup-test
	@test -x dist/care-edge && $(VPY) packaging/sources_digest.py --check dist/care-edge.sources.sha256 \
		|| $(MAKE) package
	$(VPY) -m pytest -q -m slow tests/test_packaging.py tests/test_serve_binary.py
