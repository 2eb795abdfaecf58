# nhgw — top-level build. `make` builds everything (installing Debian packages and building the
# pinned dependencies on first use), `make test` runs every test, `make run` starts a dev stack.
# Objects go to build/opt (optimised) and build/asan (ASan+UBSan); dependencies to build/deps.

BUILD     ?= build
DEPS      := $(BUILD)/deps
CC        ?= cc
CLANG     ?= clang
ERR       ?= $(if $(filter true 1,$(CI)),1,0)
FUZZ_SECONDS ?= 60
export CI

-include $(DEPS)/deps.mk

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wundef
ifeq ($(ERR),1)
WARN      += -Werror
endif
NHGW_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CSTD      := -std=c11 -D_GNU_SOURCE -fno-omit-frame-pointer -g -MMD -MP
INCLUDES  := $(DEPS_CFLAGS) -Iproto -Igateway -Ibench
SYSLIBS   := -levent_core -levent_pthreads -lnats -ljansson -lz -lm -lpthread
OPT_FLAGS := -O2
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined

# The codecs and helpers that unit tests and fuzzers link (no libevent).
CODEC_SRC := gateway/buf.c gateway/xalloc.c gateway/ws.c gateway/phx.c gateway/http.c
# The link contract's codec (proto/), linked by every program.
PROTO_SRC := $(wildcard proto/*.c)
MAIN_SRC  := gateway/main.c
# Everything else in the daemon.
CORE_SRC  := $(filter-out $(CODEC_SRC) $(MAIN_SRC),$(wildcard gateway/*.c))
# The reference platform and the operator CLI (ops/). Their I/O-free parts are unit-tested.
PLATFORM_SRC := $(wildcard ops/platform/*.c)
PLATFORM_PURE_SRC := $(wildcard ops/platform/pure_*.c)
NHCTL_SRC := $(wildcard ops/nhctl/*.c)
UNIT_SRC  := $(wildcard tests/unit/*.c) tests/lib/test.c tests/lib/runner.c
# nhbench: load generator and the project's own C device client (bench/README.md).
BENCH_SRC := $(filter-out bench/tests/% bench/tlsfloor.c,$(wildcard bench/*.c))
BENCH_UNIT_SRC := $(wildcard bench/tests/*.c)
FUZZERS   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

OPT_DIR   := $(BUILD)/opt
SAN_DIR   := $(BUILD)/asan

obj = $(patsubst %.c,$(1)/%.o,$(2))

.PHONY: all deps test test-opt test-asan unit fuzz-replay fuzz integration run certs clean distclean bench
.DEFAULT_GOAL := all

PROGRAMS  := $(BUILD)/nhgw $(BUILD)/unit $(BUILD)/nhbench $(BUILD)/tlsfloor \
             $(if $(PLATFORM_SRC),$(BUILD)/nhplatform) $(if $(NHCTL_SRC),$(BUILD)/nhctl)

all: $(PROGRAMS)

# First use on a fresh machine: Debian packages, then the pinned sources (verified, cached).
$(DEPS)/deps.mk:
	ops/install-packages.sh
	ops/deps.sh $(DEPS)

deps: $(DEPS)/deps.mk

$(OPT_DIR)/%.o: %.c $(DEPS)/deps.mk
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT_FLAGS) $(WARN) $(INCLUDES) -c $< -o $@

$(SAN_DIR)/%.o: %.c $(DEPS)/deps.mk
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(SAN_FLAGS) $(WARN) $(INCLUDES) -c $< -o $@

# nhgw_build_info names the commit: stats.o is rebuilt every time (it is small) so it never
# carries a stale one. The Dockerfile passes NHGW_COMMIT (its context has no .git).
$(OPT_DIR)/gateway/stats.o $(SAN_DIR)/gateway/stats.o: CSTD += -DNHGW_COMMIT='"$(NHGW_COMMIT)"'
$(OPT_DIR)/gateway/stats.o $(SAN_DIR)/gateway/stats.o: FORCE
FORCE:
.PHONY: FORCE

$(BUILD)/nhgw: $(call obj,$(OPT_DIR),$(CODEC_SRC) $(PROTO_SRC) $(CORE_SRC) $(MAIN_SRC))
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/nhgw-asan: $(call obj,$(SAN_DIR),$(CODEC_SRC) $(PROTO_SRC) $(CORE_SRC) $(MAIN_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

UNIT_ALL := $(CODEC_SRC) $(PROTO_SRC) $(UNIT_SRC) gateway/config.c gateway/log.c gateway/sesscache.c gateway/sessseal.c $(BENCH_UNIT_SRC) \
            bench/hist.c bench/wsc.c gateway/rmap.c gateway/scrollback.c $(PLATFORM_PURE_SRC)

$(BUILD)/unit: $(call obj,$(OPT_DIR),$(UNIT_ALL))
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/unit-asan: $(call obj,$(SAN_DIR),$(UNIT_ALL))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/nhbench: $(call obj,$(OPT_DIR),$(BENCH_SRC) $(PROTO_SRC) gateway/phx.c gateway/ws.c gateway/buf.c gateway/xalloc.c)
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

# bench/peers.sh's reference peer: BoringSSL's own mTLS handshake with nothing around it.
$(BUILD)/tlsfloor: $(call obj,$(OPT_DIR),bench/tlsfloor.c)
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/nhplatform: $(call obj,$(OPT_DIR),$(PLATFORM_SRC) $(PROTO_SRC) gateway/phx.c gateway/buf.c gateway/xalloc.c)
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/nhctl: $(call obj,$(OPT_DIR),$(NHCTL_SRC) $(PROTO_SRC) ops/platform/pure_nh1.c gateway/phx.c gateway/buf.c gateway/xalloc.c)
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

# libFuzzer targets: each links the codecs, built with clang.
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(CODEC_SRC) $(PROTO_SRC) $(DEPS)/deps.mk
	@mkdir -p $(dir $@)
	$(CLANG) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined $(INCLUDES) \
		-o $@ $< $(CODEC_SRC) $(PROTO_SRC) $(DEPS_LIBS) -ljansson -lz -lm -lpthread

FUZZ_BINS := $(addprefix $(BUILD)/fuzz/fuzz_,$(FUZZERS))

# Component tests against real servers (tests/natsc: nats-server, tests/registry: redis-server).
include tests/natsc/natsc.mk tests/registry/registry.mk
COMPONENT_TESTS := $(BUILD)/natsc-test $(BUILD)/natsc-test-asan $(BUILD)/registry-test $(BUILD)/registry-test-asan

# ---- tests ----

test:
	ops/install-packages.sh
	$(MAKE) --no-print-directory all $(BUILD)/nhgw-asan $(BUILD)/unit-asan $(FUZZ_BINS) $(COMPONENT_TESTS)
	tests/run-all.sh

unit: $(BUILD)/unit
	$(BUILD)/unit

fuzz-replay: $(FUZZ_BINS)
	@for f in $(FUZZERS); do \
		echo "fuzz replay: $$f"; \
		$(BUILD)/fuzz/fuzz_$$f -runs=0 tests/fuzz/corpus/$$f >/dev/null 2>$(BUILD)/fuzz/$$f.log \
			|| { cat $(BUILD)/fuzz/$$f.log; exit 1; }; \
	done

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZERS); do \
		mkdir -p $(BUILD)/fuzz/corpus-$$f; \
		dict=; [ -f tests/fuzz/$$f.dict ] && dict=-dict=tests/fuzz/$$f.dict; \
		$(BUILD)/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) $$dict \
			$(BUILD)/fuzz/corpus-$$f tests/fuzz/corpus/$$f || exit 1; \
	done

integration: all
	tests/integration/run.sh

# ---- running ----

certs: $(BUILD)/dev-certs/.complete
$(BUILD)/dev-certs/.complete: ops/devcerts.sh
	ops/devcerts.sh $(abspath $(BUILD)/dev-certs)

run: all certs
	ops/run-dev.sh

bench: all
	bench/run.sh hold --sessions 10000 --hold 35s

clean:
	rm -rf $(OPT_DIR) $(SAN_DIR) $(BUILD)/fuzz $(BUILD)/nhgw $(BUILD)/nhgw-asan $(BUILD)/unit $(BUILD)/unit-asan

distclean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/opt $(BUILD)/asan -name '*.d' 2>/dev/null)
