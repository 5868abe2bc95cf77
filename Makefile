# Two commands do all the set-up: `make demo` and `make test`. Both are idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
FS     := $(VENV)/bin/faceswap
PYTEST_ARGS ?=

.PHONY: setup assets browser demo test bench clean

$(VENV)/.torch:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
	bash .ci/install_torch.sh $(PY)
	touch $@

$(VENV)/.installed: $(VENV)/.torch setup.py
	$(PIP) install --quiet -e '.[test,ray]'
	bash .ci/match_opencv.sh $(PY)
	touch $@

setup: $(VENV)/.installed

assets: setup
	$(FS) models fetch
	$(FS) samples fetch

demo: assets
	$(FS) run pipelines/demo.yaml

# the browser tests drive Debian's chromium; installed here when missing (as root, or with sudo)
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || echo "chromium could not be installed: the browser tests will be skipped"; }

test: assets browser
	$(PY) -m pytest $(PYTEST_ARGS)

bench: assets
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) output *.egg-info
