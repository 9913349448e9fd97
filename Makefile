# The two set-up commands of the README: both install what they need first.
PY := .venv/bin/python
# bytecode is written (into this checkout's gitignored __pycache__): pytest's rewritten test
# modules and hil's own are then compiled once, not in every run (~2 s of each pytest start)
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup kernels demo test test-deep test-unit bench doctor
setup:
	./scripts/setup.sh

# the kernel series the suite runs (cached; installs the matching linux-headers, which hil run never does)
kernels: setup
	.venv/bin/hil kernel build --series dedicated-cpu
	.venv/bin/hil kernel build --series dedicated-cpu --base 6.12
	.venv/bin/hil kernel build --series dedicated-cpu-direct

demo: setup
	.venv/bin/hil run probe-basic --accel auto

# pytest's live log: the progress lines of in-process lab runs appear as they happen.
# test: every feature on the real stack once (the tier a developer runs often);
# test-deep: the same features again for statistical depth or from a cold cache (CI runs both)
test: setup kernels
	$(PY) -m pytest -q -rs -m "not deep" --durations=15 -o log_cli=true -o log_cli_level=INFO

test-deep: setup kernels
	$(PY) -m pytest -q -rs -m deep --durations=15 -o log_cli=true -o log_cli_level=INFO

test-unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) bench/demo_bench.py
	$(PY) bench/model_bench.py
	$(PY) bench/kernel_build_bench.py
	$(PY) bench/kick_bench.py
	$(PY) bench/batch_bench.py

doctor: setup
	.venv/bin/hil doctor
