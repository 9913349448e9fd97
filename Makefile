# The two set-up commands of the README: both install what they need first.
PY := .venv/bin/python

.PHONY: setup demo test test-unit bench doctor
setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/hil run probe-basic --accel auto

test: setup
	$(PY) -m pytest -q -rs

test-unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) bench/demo_bench.py
	$(PY) bench/model_bench.py
	$(PY) bench/kernel_build_bench.py
	$(PY) bench/kick_bench.py

doctor: setup
	.venv/bin/hil doctor
