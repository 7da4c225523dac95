# Two commands do all set-up on a machine with only Python 3.10+ and pip:
#   make lab    creates .venv, installs the course, opens JupyterLab at lesson 00
#   make test   creates or updates .venv, then runs the whole test suite (lint and format checks included)
# While editing: `make quick` (the fast tier: lint, unit tests and the cheap notebooks, at most 3 minutes).
PYTHON ?= python3
VENV_PY := .venv/bin/python

.PHONY: lab test quick lint format release bench doctor

lab:
	$(PYTHON) -m mmcourse lab

test:
	$(PYTHON) -m mmcourse.course.bootstrap test hub
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

quick:
	$(PYTHON) -m mmcourse.course.bootstrap test hub
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint:
	$(PYTHON) -m mmcourse.course.bootstrap test
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .

format:
	$(PYTHON) -m mmcourse.course.bootstrap test
	$(VENV_PY) -m ruff check --fix .
	$(VENV_PY) -m ruff format .

release:
	$(PYTHON) -m mmcourse.course.bootstrap
	$(VENV_PY) -m mmcourse release

doctor:
	$(PYTHON) -m mmcourse.course.bootstrap
	$(VENV_PY) -m mmcourse doctor

# Benchmarks are not part of `make test`; each prints a table.
bench:
	$(PYTHON) -m mmcourse.course.bootstrap test
	$(VENV_PY) benchmarks/scene_generation.py
	$(VENV_PY) benchmarks/clip.py
	$(VENV_PY) benchmarks/vlm.py
	$(VENV_PY) benchmarks/attention_widgets.py
	$(VENV_PY) benchmarks/grading.py
	$(VENV_PY) benchmarks/exchange.py
	$(VENV_PY) benchmarks/two_stage.py --real
	$(VENV_PY) benchmarks/course_runtime.py
