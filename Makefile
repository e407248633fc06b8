# Sora-C build. GNU make + pkg-config.
#
# Sources are discovered, not listed: every .c under common/ goes into
# libsora-common.a, proxy/ (minus main.c) into libsora-proxy.a, backend/
# (minus main.c and admin/) into libsora-backend.a. Unit tests are
# tests/unit/**/test-*.c, one binary each; fuzz targets tests/fuzz/fuzz-*.c.
#
# BUILD and BIN may be overridden so several builds (asan, fuzz, a private
# tree per developer) never share object files.

CC      ?= cc
BUILD   ?= build
BIN     ?= bin
PKGS    := libuv openssl libpq libcjson inih libsodium libcurl libmicrohttpd
WERROR  ?= -Werror
OPT     ?= -O2
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_ALL := -std=gnu11 $(OPT) -g -Wall -Wextra $(WERROR) -Wformat=2 -Wshadow \
              -Wno-unused-parameter -Wno-missing-field-initializers \
              -fno-strict-aliasing -D_GNU_SOURCE -DSORA_VERSION='"$(VERSION)"' \
              -I. $(PKG_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lcrypt -lpthread -lm $(EXTRA_LDFLAGS) $(LDFLAGS)

COMMON_SRC  := $(shell find common -name '*.c' 2>/dev/null | sort)
PROXY_SRC   := $(filter-out proxy/main.c,$(shell find proxy -name '*.c' 2>/dev/null | sort))
BACKEND_SRC := $(filter-out backend/main.c backend/admin/%,$(shell find backend -name '*.c' 2>/dev/null | sort))
ADMIN_SRC   := $(shell find backend/admin -name '*.c' 2>/dev/null | sort)
UNIT_SRC    := $(shell find tests/unit -name 'test-*.c' 2>/dev/null | sort)
FUZZ_SRC    := $(shell find tests/fuzz -name 'fuzz-*.c' 2>/dev/null | sort)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_COMMON  := $(BUILD)/libsora-common.a
LIB_PROXY   := $(BUILD)/libsora-proxy.a
LIB_BACKEND := $(BUILD)/libsora-backend.a
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps unit check integration demo demo-stop asan fuzz fuzz-corpus bench clean distclean
# Object files of tests are not intermediates to delete.
.SECONDARY:
all: $(BIN)/sora-proxy $(BIN)/sora-backend $(BIN)/sora-admin

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# The migrations are embedded with .incbin, which the compiler's dependency
# files do not see.
$(BUILD)/obj/backend/store/migrations-embed.o: $(wildcard backend/store/migrations/*.sql)

$(LIB_COMMON): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	@rm -f $@; ar rcs $@ $^
$(LIB_PROXY): $(call obj,$(PROXY_SRC))
	@mkdir -p $(dir $@)
	@rm -f $@; ar rcs $@ $^
$(LIB_BACKEND): $(call obj,$(BACKEND_SRC))
	@mkdir -p $(dir $@)
	@rm -f $@; ar rcs $@ $^

$(BIN)/sora-proxy: $(call obj,proxy/main.c) $(LIB_PROXY) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)
$(BIN)/sora-backend: $(call obj,backend/main.c) $(LIB_BACKEND) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)
$(BIN)/sora-admin: $(call obj,$(ADMIN_SRC)) $(LIB_BACKEND) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# Unit tests link against all three libraries; the linker only pulls in the
# objects a test needs. cmocka's --wrap based mocks are declared per test with
# a "// LDFLAGS: ..." line in the test source.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB_BACKEND) $(LIB_PROXY) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(shell sed -n 's|^// LDFLAGS: ||p' tests/unit/$*.c) \
	    $(LIB_BACKEND) $(LIB_PROXY) $(LIB_COMMON) $(LDLIBS_ALL) $(shell pkg-config --libs cmocka)

deps:
	@deploy/install-deps.sh

unit: $(UNIT_BINS)
	@tests/unit/run.sh $(UNIT_BINS)

integration: all
	@tests/integration/run.sh

# The README's test command: install, build with warnings as errors, unit
# tests, integration tests. Ends with the runners' summaries.
check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@rc=0; tests/unit/run.sh $(UNIT_BINS) || rc=1; \
	  tests/integration/run.sh || rc=1; exit $$rc

demo: deps all
	@deploy/demo.sh start

demo-stop:
	@deploy/demo.sh stop

# Sanitizer builds prefer clang: GCC's -fsanitize=undefined does not report
# pointer arithmetic on NULL ("applying zero offset to null pointer"), which
# clang's does; msg-meta.c had such a bug that only the fuzzer saw. Every
# UBSan report aborts (-fno-sanitize-recover), so a finding fails the run
# instead of scrolling past in a log.
SAN_CC := $(shell command -v clang >/dev/null 2>&1 && echo clang || echo $(CC))
UBSAN_FLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined

asan:
	@$(MAKE) --no-print-directory CC=$(SAN_CC) BUILD=build/asan BIN=build/asan/bin OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=address $(UBSAN_FLAGS) -fno-omit-frame-pointer" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined" all unit

# libFuzzer targets, built with clang against the common sources.
FUZZ_BUILD := build/fuzz
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_SRC))
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) BIN=$(FUZZ_BUILD)/bin OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address $(UBSAN_FLAGS) -fno-omit-frame-pointer" \
	    $(FUZZ_BINS)
	@echo "fuzz targets in $(FUZZ_BUILD)/fuzz/ (run e.g. $(FUZZ_BUILD)/fuzz/fuzz-proxy tests/fuzz/corpus/proxy)"

# Runs every fuzz target once over its seed corpus: any crash, sanitizer or
# UBSan report fails it (the failing input is kept next to the binary).
fuzz-corpus: fuzz
	@rc=0; for t in $(FUZZ_BINS); do \
	    c=tests/fuzz/corpus/$$(basename $$t | sed 's/^fuzz-//'); \
	    [ -d "$$c" ] || continue; \
	    if $$t -runs=0 -artifact_prefix=$$t- "$$c" >$$t.log 2>&1; then \
	        echo "fuzz-corpus: $$t ok"; \
	    else echo "fuzz-corpus: $$t FAILED (see $$t.log)"; rc=1; fi; \
	done; exit $$rc

$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(LIB_BACKEND) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS_ALL)

BENCH_SRC  := $(shell find tests/bench -name 'bench-*.c' 2>/dev/null | sort)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB_BACKEND) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

bench: all $(BENCH_BINS)
	@BENCH_BIN=$(BUILD)/bench tests/bench/run.sh

clean:
	rm -rf build bin

distclean: clean
	rm -rf var tests/integration/s3/node_modules

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
