# Strata — build, demo, test, bench.
#
#   make demo   install what is missing, build host and plugins, run the example pipelines,
#               then serve the batch API on a temporary data dir and run examples/quickstart.sh
#   make test   build everything and run every test suite
#   make bench  run the benchmarks and write BENCHMARKS.md

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
# Read without running cargo: the pinned toolchain may not be installed yet.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM_DIR := $(TARGET_DIR)/wasm32-wasip2/plugin
DIST := plugins/dist
PLUGINS := text-extract lang-detect keywords hash-embed entities image-meta content-hash
FIXTURES := hostile identity future-major bad-manifest dependent stamp stamp-v2 sleeper wide amplifier legacy \
	columnar-raw columnar-uncarried columnar-struct-input
STRATA := $(TARGET_DIR)/debug/strata
export STRATA_CACHE_DIR ?= $(TARGET_DIR)/strata-cache
TEST_SERVERS := $(abspath $(TARGET_DIR))/test-servers
export STRATA_TEST_SERVERS ?= $(TEST_SERVERS)
FUZZ_TOOLS := $(abspath $(TARGET_DIR))/fuzz
export STRATA_TEST_FUZZER ?= $(FUZZ_TOOLS)

PY_TEMPLATE := examples/extractor-template-python
JS_TEMPLATE := examples/extractor-template-js

.PHONY: all setup host plugins py-plugins template templates language-fixtures demo test test-servers fuzz-tools browser-tools lint bench clean

all: host plugins

## setup: install the toolchain rust-toolchain.toml pins (with its wasm32-wasip2 target) when it is missing
setup:
	@rustup --quiet toolchain install
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

## host: build the strata binary (debug)
host: setup
	$(CARGO) build -p strata-host

## plugins: build every extractor and test fixture as a component into plugins/dist/
plugins: setup
	$(CARGO) build --profile plugin --target wasm32-wasip2 $(addprefix -p ,$(PLUGINS) $(FIXTURES) not-extractor)
	@mkdir -p $(DIST) tests/fixtures/dist
	@for p in $(PLUGINS); do cp $(WASM_DIR)/$${p//-/_}.wasm $(DIST)/$$p.wasm; done
	@for p in $(FIXTURES); do cp $(WASM_DIR)/$${p//-/_}.wasm tests/fixtures/dist/$$p.wasm; done
	@cp $(WASM_DIR)/not-extractor.wasm tests/fixtures/dist/not-extractor.wasm
	@echo "components in $(DIST)/ and tests/fixtures/dist/"

## template: build the out-of-tree example extractor as a component
template: setup
	$(CARGO) build --release --target wasm32-wasip2 --manifest-path examples/extractor-template/Cargo.toml --target-dir $(TARGET_DIR)/template

## templates: build the Rust, Python and JavaScript example extractors as components (a local venv and npm ci hold their tools)
templates: template
	$(MAKE) -C $(PY_TEMPLATE)
	$(MAKE) -C $(JS_TEMPLATE)

## py-plugins: the extractors written in Python (plugins/readability), into plugins/dist
py-plugins: $(DIST)/readability.wasm

$(DIST)/readability.wasm: $(wildcard plugins/readability/*.py) $(wildcard sdk/python/strata_sdk/*.py) wit/extractor.wit
	$(MAKE) -C plugins/readability
	@mkdir -p $(DIST)
	cp plugins/readability/readability.wasm $@

## language-fixtures: the Python and JavaScript test components, built with the templates' pinned tools
LANGUAGE_FIXTURES := $(addprefix tests/fixtures/dist/,hostile-py.wasm kinds-py.wasm hostile-js.wasm kinds-js.wasm)
language-fixtures: $(LANGUAGE_FIXTURES)

tests/fixtures/dist/%-py.wasm: tests/fixtures/%-py/*.py $(wildcard sdk/python/strata_sdk/*.py) wit/extractor.wit
	$(MAKE) -C $(PY_TEMPLATE) .venv/installed
	@mkdir -p tests/fixtures/dist
	$(PY_TEMPLATE)/.venv/bin/componentize-py -d wit -w columnar-plugin componentize app -p $(<D) -p sdk/python -o $@

tests/fixtures/dist/%-js.wasm: tests/fixtures/%-js/*.js $(wildcard sdk/js/*.js) wit/extractor.wit
	$(MAKE) -C $(JS_TEMPLATE) node_modules/.installed
	@mkdir -p tests/fixtures/dist $(JS_TEMPLATE)/dist/$*-js
	$(JS_TEMPLATE)/node_modules/.bin/esbuild $(<D)/app.js --bundle --format=esm --platform=neutral --log-level=warning '--external:strata:*' --outfile=$(JS_TEMPLATE)/dist/$*-js/app.js
	$(JS_TEMPLATE)/node_modules/.bin/jco componentize $(JS_TEMPLATE)/dist/$*-js/app.js --wit wit --world-name columnar-plugin --disable all --out $@

## demo: run the text and image pipelines over examples/data, then the batch API flow on `strata serve`
demo: host plugins
	@mkdir -p out
	$(STRATA) run --pipeline examples/pipelines/text.toml --input examples/data/docs --output out/text.jsonl
	$(STRATA) run --pipeline examples/pipelines/image.toml --input examples/data/images --output out/images.jsonl
	@echo; python3 examples/show-documents.py out/text.jsonl out/images.jsonl
	@echo; echo "== the batch API: strata serve + examples/quickstart.sh"
	examples/serve-demo.sh $(STRATA)

## test-servers: a Python environment with the S3- and MongoDB-protocol servers the tests start on loopback
test-servers: $(TEST_SERVERS)/installed

$(TEST_SERVERS)/installed: tests/servers.txt
	python3 -m venv $(TEST_SERVERS)
	$(TEST_SERVERS)/bin/pip install --quiet --disable-pip-version-check -r tests/servers.txt
	cp tests/servers.txt $@

## fuzz-tools: a Python environment with the contract fuzzer (Schemathesis) that tests/contract.rs runs
fuzz-tools: $(FUZZ_TOOLS)/installed

$(FUZZ_TOOLS)/installed: tests/fuzz/requirements.txt
	python3 -m venv $(FUZZ_TOOLS)
	$(FUZZ_TOOLS)/bin/pip install --quiet --disable-pip-version-check -r tests/fuzz/requirements.txt
	cp tests/fuzz/requirements.txt $@

## browser-tools: Debian's Chromium and ChromeDriver, which tests/browser.rs drives (installed when missing)
browser-tools:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

## test: build everything, then run every test suite (Rust, then the Python and JavaScript SDKs and templates, natively)
test: host plugins py-plugins templates language-fixtures test-servers fuzz-tools browser-tools
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) -C $(PY_TEMPLATE) test
	$(MAKE) -C plugins/readability test
	$(PY_TEMPLATE)/.venv/bin/python -m pytest -q sdk/python/tests
	$(MAKE) -C $(JS_TEMPLATE) test
	node --test sdk/js/test/

## bench: measure the engine side by side (release build) and write BENCHMARKS.md
bench: plugins templates test-servers
	$(CARGO) bench -p strata-host --bench pipeline --no-run
	@{ echo "<!-- Written by \`make bench\` ($$(date -u +%Y-%m-%d), $$(uname -m)); edit the bench, not this file. -->"; \
	   echo; $(CARGO) bench -q -p strata-host --bench pipeline; } > BENCHMARKS.md.new
	@mv BENCHMARKS.md.new BENCHMARKS.md
	@cat BENCHMARKS.md

## lint: formatting and clippy, as CI wants them
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target wasm32-wasip2 $(addprefix -p ,$(PLUGINS) $(FIXTURES)) -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DIST) tests/fixtures/dist out
	$(MAKE) -C $(PY_TEMPLATE) clean
	$(MAKE) -C $(JS_TEMPLATE) clean
	$(MAKE) -C plugins/readability clean
