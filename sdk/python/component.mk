# Rules that build a Python extractor as a component, for a project's
# Makefile to include after setting OUT (the .wasm) and SOURCES (its .py
# files). A local venv holds the pinned tools of the project's
# requirements.txt.
SDK ?= ../../sdk/python
WIT ?= ../../wit
VENV ?= .venv
PYTHON ?= python3

$(OUT): $(VENV)/installed $(SOURCES) $(wildcard $(SDK)/strata_sdk/*.py) $(WIT)/extractor.wit
	$(VENV)/bin/componentize-py -d $(WIT) -w columnar-plugin componentize app -p . -p $(SDK) -o $@

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

test: $(VENV)/installed
	PYTHONPATH=$(SDK) $(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) __pycache__ .pytest_cache

.PHONY: test clean
