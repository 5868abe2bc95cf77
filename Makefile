# Two commands do all the set-up: `make demo` and `make test`. Both are idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
FS     := $(VENV)/bin/faceswap
PYTEST_ARGS ?=

.PHONY: setup assets demo test bench clean

$(VENV)/.torch:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
	bash .ci/install_torch.sh $(PY)
	touch $@

$(VENV)/.installed: $(VENV)/.torch setup.py
	$(PIP) install --quiet -e '.[test]'
	bash .ci/match_opencv.sh $(PY)
	touch $@

setup: $(VENV)/.installed

assets: setup
	$(FS) models fetch
	$(FS) samples fetch

demo: assets
	$(FS) run pipelines/demo.yaml

test: assets
	$(PY) -m pytest $(PYTEST_ARGS)

bench: assets
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) output *.egg-info
