# Two commands do all set-up: `make run` (launch the app) and `make test` (run the tests).
# Both create or update the virtual environment in .venv first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint mutate venv clean wheel bundle

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" "setuptools>=77,<82" wheel
	$(PY) -m pip install --quiet -e ".[gui,align,dev,fast]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sketchstudio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check sketchstudio trainer tests benchmarks packaging research
	$(VENV)/bin/lint-imports  # the layer contracts in .importlinter

# Mutation testing of the pure modules ([tool.mutmut] in pyproject.toml): slow, not part of CI.
# MUTANTS narrows the run, e.g. make mutate MUTANTS='trainer.losses.* sketchstudio.faces.geometry.*'
MUTANTS ?=
mutate: $(STAMP)
	cd $(CURDIR) && OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen $(VENV)/bin/mutmut run --max-children 1 $(MUTANTS); \
	  $(VENV)/bin/mutmut results

# a complete wheel (model, icons, samples, NLDA projection inside) in dist/, built offline
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps --no-build-isolation --no-index -w dist .

# the standalone bundle (no Python needed on the target machine) in dist/sketchstudio/, then its
# smoke test: start offscreen, translate the sample photo in the window, save the result
# (BUNDLE_DIST=/elsewhere to build outside the checkout: the bundle is several GB)
BUNDLE_DIST ?= dist
BUNDLE_WORK ?= build/pyinstaller
bundle: $(STAMP)
	$(PY) -m pip install --quiet "pyinstaller>=6.10"
	OMP_NUM_THREADS=1 $(VENV)/bin/pyinstaller --noconfirm --distpath $(BUNDLE_DIST) \
	    --workpath $(BUNDLE_WORK) packaging/sketchstudio.spec
	QT_QPA_PLATFORM=offscreen $(BUNDLE_DIST)/sketchstudio/sketchstudio \
	    --self-test $(BUNDLE_WORK)/self-test.png
	@du -sh $(BUNDLE_DIST)/sketchstudio

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache mutants
