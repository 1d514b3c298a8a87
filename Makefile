# Thin wrapper around CMake. `make test` and `make demo` work on a fresh
# Debian 12 machine: they install what is missing, configure, build and run.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench clean

all: build

deps:
	@./scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The demo: `cos sweep` runs the oscillator example over a grid of drive
# frequencies and damping, one worker process per core, and prints a row per
# point as it finishes (CSV on stdout) and the summary (on stderr). It builds
# only what it runs: the tool and the two examples.
demo: deps configure
	cmake --build $(BUILD) -j $(JOBS) --target cos_tool oscillator tree
	$(BUILD)/cos/cos sweep --param omega=0.5:1.5:0.25 --param c=0.1,0.3,1 -- \
	  $(BUILD)/examples/oscillator --omega {omega} --c {c}
	$(BUILD)/examples/tree

bench: build
	$(BUILD)/bench/run_all

clean:
	rm -rf $(BUILD)
