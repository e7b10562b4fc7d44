# moekit build. `make` builds build/moekit and build/libmoekit.a; `make test` builds and runs the
# test suite; `make SAN=1 test` does the same with ASan+UBSan into build-san/.
CC      ?= cc
SAN     ?= 0
WERROR  ?= $(if $(CI),1,0)
NATIVE  ?= 1

ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O2 -g
LDSAN   :=
endif

PKGS    := jansson libpcre2-8 libutf8proc lapacke
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lpcre2-8 -lutf8proc -llapacke)

WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wvla
ifeq ($(WERROR),1)
WARN    += -Werror
endif
ARCH    := $(if $(filter 1,$(NATIVE)),-march=native,)
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -fopenmp $(WARN) -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(LDSAN) -fopenmp $(PKG_LIBS) -lm -lpthread

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test clean tools
all: $(BUILD)/moekit $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmoekit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/moekit: $(CLI_OBJ) $(BUILD)/libmoekit.a
	$(CC) $(CFLAGS) $(CLI_OBJ) $(BUILD)/libmoekit.a -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libmoekit.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libmoekit.a -o $@ $(LDLIBS)

test: all
	BUILD=$(BUILD) bash tests/run_tests.sh

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# libFuzzer targets (clang): build-fuzz/fuzz_<name>. `make fuzz-run FUZZ_SECONDS=60` runs each.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_SECONDS ?= 30
# FUZZ_RUNS=N: a fixed number of runs from seed 1 and a fresh corpus each time, so the run is
# reproducible (CI uses this); otherwise FUZZ_SECONDS of open-ended fuzzing.
FUZZ_RUNS ?=
FUZZ_LIMIT = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS) -seed=1,-max_total_time=$(FUZZ_SECONDS))
# -Wno-pass-failed: at -O1 clang neither unrolls nor vectorizes, and says so for every pragma that asks
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(ARCH) -fsanitize=fuzzer,address,undefined -Wno-pass-failed -fopenmp -Iinclude -Isrc $(PKG_CFLAGS)
.PHONY: fuzz fuzz-run
fuzz: $(FUZZ_BIN)
build-fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) $< $(LIB_SRC) -o $@ $(PKG_LIBS) -lm -lpthread
fuzz-run: fuzz
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); c=tests/fuzz/corpus_$${n#fuzz_}; \
	  echo "== $$n ($(FUZZ_LIMIT))"; $(if $(FUZZ_RUNS),rm -rf build-fuzz/corpus_$$n;) mkdir -p build-fuzz/corpus_$$n; \
	  [ -d $$c ] || c=; \
	  if ! $$f $(FUZZ_LIMIT) -max_len=65536 build-fuzz/corpus_$$n $$c > build-fuzz/$$n.log 2>&1; then \
	    tail -n 40 build-fuzz/$$n.log; echo "$$n: FAILED (crash input saved in the working directory)"; exit 1; fi; \
	  tail -n 1 build-fuzz/$$n.log; done
