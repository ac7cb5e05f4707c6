# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv (the
# package, its C decoder and the test dependencies) the first time and whenever the build inputs
# change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUILD_INPUTS := pyproject.toml setup.py build_decoder.py $(wildcard csrc/*.c csrc/*.h)
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=
# The conformance suite's real peers: build scripts and sources (docs/conformance.md), and the
# cache the build goes to (outside the checkout, so reruns take a second).
COCAINE_SHARED ?= ../shared/cocaine-runtime
COCAINE_CACHE ?= $(HOME)/.cache/cocaine-runtime

# The decoder's fuzz harness (fuzz/fuzz_records.c): clang's libFuzzer with ASan and UBSan,
# installed from Debian when missing. FUZZ_FLAGS bounds the run; the inputs it finds go to
# build/fuzz/corpus, and then every input is replayed against the Python reference decoder.
FUZZ_CC ?= clang
FUZZ_PACKAGES ?= clang libclang-rt-14-dev
FUZZ_FLAGS ?= -runs=200000
FUZZ_BIN := build/fuzz/fuzz_records
FUZZ_SRC := fuzz/fuzz_records.c csrc/cdecoder.c csrc/machine.c
FUZZ_CFLAGS := -g -O1 -std=c99 -Wall -Wextra -Icsrc \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# Then the compiled fast paths (csrc/request.c, environ.c, accessline.c, framing.c) against their
# Python rules (fuzz/fuzz_native.py, atheris, installed into the venv when missing), built with
# ASan and UBSan into build/fuzz/native; FUZZ_NATIVE_FLAGS bounds that run. Python's own
# allocator is switched to malloc there so that ASan sees every object's bounds.
FUZZ_NATIVE_FLAGS ?= -runs=200000
FUZZ_NATIVE := build/fuzz/native
FUZZ_NATIVE_MODULES := _crequest:request _cenviron:environ _caccess:accessline _cframing:framing
FUZZ_NATIVE_SRC := csrc/request.c csrc/environ.c csrc/accessline.c csrc/framing.c
ATHERIS_ASAN = $$($(BIN)/python -c "import atheris, os; print(os.path.join(atheris.path(), 'asan_with_fuzzer.so'))")

.PHONY: all venv test conformance conformance12 typecheck run bench clean fuzz fuzz-toolchain

all: test

$(STAMP): $(BUILD_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

conformance: $(STAMP)
	@test -x "$(COCAINE_SHARED)/build.sh" || { echo "make conformance: no $(COCAINE_SHARED)/build.sh: the real cocaine-runtime sources are missing (set COCAINE_SHARED=DIR)" >&2; exit 1; }
	"$(COCAINE_SHARED)/build.sh" "$(COCAINE_CACHE)/v0.11"
	. "$(COCAINE_CACHE)/v0.11/env.sh" && $(BIN)/python -m pytest tests/conformance $(PYTEST_ARGS)

# The real cocaine-runtime v0.12 (built once into the cache, about 14 minutes from nothing) and
# the tests that run our services client, worker and example apps under it (docs/v012.md).
conformance12: $(STAMP)
	@test -x "$(COCAINE_SHARED)/build12.sh" || { echo "make conformance12: no $(COCAINE_SHARED)/build12.sh: the real cocaine-runtime sources are missing (set COCAINE_SHARED=DIR)" >&2; exit 1; }
	"$(COCAINE_SHARED)/build12.sh" "$(COCAINE_CACHE)/v0.12"
	. "$(COCAINE_CACHE)/v0.12/env.sh" && COCAINE_CONFORMANCE12=1 COCAINE_CACHE="$(COCAINE_CACHE)" \
		$(BIN)/python -m pytest tests/conformance_v012 $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy

run: $(STAMP)
	$(BIN)/cocaine-http dev --host $(HOST) --port $(PORT) examples.flask_app.app:app

bench: $(STAMP)
	$(BIN)/python -m bench

$(FUZZ_BIN): $(FUZZ_SRC) $(wildcard csrc/*.h)
	mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) -o $@ 2>/dev/null || \
		{ $(MAKE) fuzz-toolchain && $(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) -o $@; }

fuzz-toolchain:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FUZZ_PACKAGES)

$(FUZZ_NATIVE)/.built: $(FUZZ_NATIVE_SRC) $(wildcard csrc/*.h) $(FUZZ_BIN) $(STAMP)
	mkdir -p $(FUZZ_NATIVE)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install -q atheris
	include=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	suffix=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"); \
	for pair in $(FUZZ_NATIVE_MODULES); do \
		$(FUZZ_CC) -g -O1 -fPIC -shared -Wall -Wextra -fno-sanitize-recover=all \
			-fsanitize=address,undefined,fuzzer-no-link -I"$$include" \
			csrc/$${pair#*:}.c -o $(FUZZ_NATIVE)/$${pair%:*}$$suffix || exit 1; \
	done
	touch $@

fuzz: $(FUZZ_BIN) $(STAMP) $(FUZZ_NATIVE)/.built
	mkdir -p build/fuzz/corpus
	$(FUZZ_BIN) $(FUZZ_FLAGS) -print_final_stats=1 -artifact_prefix=build/fuzz/ \
		build/fuzz/corpus fuzz/corpus
	$(BIN)/python -m fuzz.replay fuzz/corpus build/fuzz/corpus
	mkdir -p build/fuzz/native_corpus
	$(BIN)/python -m fuzz.fuzz_native --seeds build/fuzz/native_seeds
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$(ATHERIS_ASAN)" \
		$(BIN)/python -m fuzz.fuzz_native $(FUZZ_NATIVE_FLAGS) -dict=fuzz/native.dict \
		-print_final_stats=1 -artifact_prefix=build/fuzz/ \
		build/fuzz/native_corpus build/fuzz/native_seeds
	$(BIN)/python -m fuzz.fuzz_native --replay build/fuzz/native_corpus build/fuzz/native_seeds

clean:
	rm -rf $(VENV) build dist *.egg-info cocaine_http/*/_c*.so
