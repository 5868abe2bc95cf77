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

# the speed benchmarks, each a ratio against a baseline of the same run; detail, occlusion and quality need a
# model or face sets, protocol and pretrain are quality runs of many minutes: run those by hand
BENCHES := media extract augment train convert reference ray ui
bench: assets browser
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) output *.egg-info
