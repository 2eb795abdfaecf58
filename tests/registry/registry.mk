# Registry tests: proto/lp_registry's scripts and gateway/registry.c against a real redis-server
# (on PATH) that the test program starts on free loopback ports. Included by the top-level
# Makefile after OPT_DIR/SAN_DIR/obj are defined.
REGISTRY_TEST_SRC := $(wildcard tests/registry/*.c) tests/lib/runner.c gateway/registry.c proto/lp_registry.c \
                     gateway/log.c gateway/xalloc.c

$(BUILD)/registry-test: $(call obj,$(OPT_DIR),$(REGISTRY_TEST_SRC))
	$(CC) $(OPT_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

$(BUILD)/registry-test-asan: $(call obj,$(SAN_DIR),$(REGISTRY_TEST_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(DEPS_LIBS) $(SYSLIBS)

.PHONY: registry-test registry-test-asan
registry-test: $(BUILD)/registry-test
	$(BUILD)/registry-test

registry-test-asan: $(BUILD)/registry-test-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(BUILD)/registry-test-asan
