# Two commands for a new user: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help demo test pythons bench-parser bench-servers bench-driver bench-accuracy bench-flood clean venv

help:
	@echo "make demo   set up .venv and run the default comparison (every backend, ~2 min)"
	@echo "make test   set up .venv and run the test suite"
	@echo "make pythons  build CPython 3.13 and free-threaded 3.13t into ~/.cache/concurbench (once, ~5 min)"
	@echo "make bench-parser   parser throughput against h11 and httptools"
	@echo "make bench-servers  backends against uvicorn/gunicorn/http.server with wrk"
	@echo "make bench-driver   the Locust driver's capacity on one CPU, against wrk"
	@echo "make bench-accuracy the harness against wrk: req/s and p50 at 1, 8, 32 users on / and /sleep?ms=10 (~2 min)"
	@echo "                    narrow it: make bench-accuracy ACCURACY_ARGS='--path / --users 1 --rounds 5'"
	@echo "make bench-flood    what 200 clients sending a byte a millisecond leave 32 others, per backend (~4 min)"

# constraints.txt pins every package (direct and transitive) to the versions tested.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "concurbench needs Python 3.11+, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,peers]'
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/concurbench run --scenario quick --backend all

bench-parser: $(STAMP)
	$(BIN)/python bench/parser_bench.py

bench-servers: $(STAMP)
	$(BIN)/python bench/server_bench.py

bench-driver: $(STAMP)
	$(BIN)/python bench/driver_capacity.py

bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py $(ACCURACY_ARGS)

bench-flood: $(STAMP)
	$(BIN)/python bench/byte_flood.py

clean:
	rm -rf $(VENV) build *.egg-info

# The interpreters for the parallelism scenarios: CPython 3.13 with and without the GIL, from
# Debian's source package, into ~/.cache/concurbench/python (once per machine, ~5 min at -j2).
pythons: $(STAMP)
	$(BIN)/python -m harness.run.build_pythons
