# One command sets everything up; `make test` also runs the suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup main test lint docs bench miniature ask demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is pinned and installed first so that no CUDA build is pulled onto a CPU machine.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "lmms-eval==0.7.3"  # its deps are in .[lmms] (see pyproject.toml)
	touch $@

setup: $(VENV)/.installed

# The main job: offline, on CPU, with the embedded reader: low-res vs full-res vs AwaRes on a synthetic
# high-resolution benchmark, printed as a table (a few minutes).
main: setup
	$(BIN)/awares eval --bench synthetic --limit $(or $(LIMIT),40) --policy low-res,full-res,awares --out runs/main

test: setup
	$(BIN)/python -m pytest -q

# The console demo: offline on the embedded reader with bundled sample pages (IMAGE=..., ARGS="--base-url ...").
demo: setup
	$(BIN)/awares demo $(IMAGE) $(ARGS)

lint: setup
	$(BIN)/ruff check .

# The documentation site (docs/, mkdocs.yml) into site/; any warning (a broken link, a docstring mkdocstrings
# cannot read) fails the build. NO_MKDOCS_2_WARNING quiets Material's end-of-life banner.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Ask one question through an OpenAI-compatible server you run (vLLM, SGLang, Ollama, OpenAI...).
ask: setup
	@test -n "$(IMAGE)" -a -n "$(QUESTION)" -a -n "$(MODEL)" || \
	  { echo 'usage: make ask IMAGE=page.png QUESTION="..." MODEL=name [BASE_URL=http://localhost:8000/v1]'; exit 2; }
	$(BIN)/awares ask "$(IMAGE)" "$(QUESTION)" --model "$(MODEL)" $(if $(BASE_URL),--base-url "$(BASE_URL)")

# The AwaRes miniature: label, SFT, GRPO and evaluate a tiny VLM through the CLI, offline on CPU (~13 min).
miniature: setup
	$(BIN)/python benchmarks/bench_miniature.py

bench: setup
	$(BIN)/python benchmarks/bench_location_probe.py
	$(BIN)/python benchmarks/bench_miniature.py
	$(BIN)/python benchmarks/bench_transformers_backend.py
	$(BIN)/python benchmarks/bench_streaming.py
	$(BIN)/python benchmarks/bench_agent_overhead.py
	$(BIN)/python benchmarks/bench_serve_overhead.py
	$(BIN)/python benchmarks/bench_serve_load.py
	$(BIN)/python benchmarks/bench_lowres_decode.py
	$(BIN)/python benchmarks/bench_collect_throughput.py
	$(BIN)/python benchmarks/bench_reliability.py
	$(BIN)/python benchmarks/bench_sft_learning.py
	$(BIN)/python benchmarks/bench_sft_learning.py --freeze-vision
	$(BIN)/python benchmarks/bench_grpo_learning.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
