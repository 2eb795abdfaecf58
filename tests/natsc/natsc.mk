# natsc tests: a standalone program that runs gateway/natsc.c against real nats-servers.
# Included by the top-level Makefile after its `obj` helper
# (or: make -f Makefile -f tests/natsc/natsc.mk natsc-test).
# `make natsc-test` runs the optimised build, `make natsc-test-asan` the ASan+UBSan build
# (with leak checking: every test ends with nats_CloseAndWait).
NATSC_TEST_SRC := $(wildcard tests/natsc/*.c) tests/lib/runner.c gateway/natsc.c

$(BUILD)/natsc-test: $(call obj,$(OPT_DIR),$(NATSC_TEST_SRC))
	$(CC) $(OPT_FLAGS) -o $@ $^ $(SYSLIBS)

$(BUILD)/natsc-test-asan: $(call obj,$(SAN_DIR),$(NATSC_TEST_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(SYSLIBS)

.PHONY: natsc-test natsc-test-asan
natsc-test: $(BUILD)/natsc-test
	$(BUILD)/natsc-test

natsc-test-asan: $(BUILD)/natsc-test-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(BUILD)/natsc-test-asan
