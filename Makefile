# mox — build, test, run, deps, data.
#
#   make            library, examples, tests, benchmarks (build/, binaries in build/bin/)
#   make test       build and run every test (GoogleTest)
#   make cifar10    build and run the CIFAR-10 example with its default recipe
#   make deps       install missing Debian packages (as root; otherwise print the apt line)
#   make data       download CIFAR-10 (binary) and tiny-Shakespeare into data/
#   make bench      build and run the benchmarks
#   make clean
#
# Options: THREADS=N for run targets, DEBUG=1 (no optimisation), ARCH=x86-64-v3 (default native).
SHELL := /bin/bash
.DEFAULT_GOAL := all

BUILD   ?= build
BIN     := $(BUILD)/bin
CXX     ?= g++
THREADS ?= 2
DEBUG   ?= 0

# ---------------------------------------------------------------- feature detection
APT_PACKAGES := g++ make libopenblas-openmp-dev libgtest-dev libbenchmark-dev \
                nlohmann-json3-dev libstb-dev libcli11-dev libopenmpi-dev openmpi-bin curl
have_header = $(shell echo '\#include <$(1)>' | $(CXX) -x c++ -E - >/dev/null 2>&1 && echo 1)
HAVE_OPENBLAS := $(call have_header,cblas.h)
HAVE_GTEST    := $(call have_header,gtest/gtest.h)
HAVE_JSON     := $(call have_header,nlohmann/json.hpp)
HAVE_STB      := $(call have_header,stb/stb_image.h)
HAVE_MPI      := $(shell command -v mpicxx >/dev/null 2>&1 && echo 1)
CUDA_HOME     ?= $(firstword $(wildcard /usr/local/cuda))
NVCC          := $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
HAVE_CUDNN    := $(if $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/*/cudnn.h),1)
HAVE_NCCL     := $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1)
yesno = $(if $(1),found,not found)

# ---------------------------------------------------------------- flags
ARCH    ?= native
OPT      := $(if $(filter 1,$(DEBUG)),-O0 -g,-O3 -march=$(ARCH) -g1)
CXXFLAGS += -std=c++17 $(OPT) -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -MMD -MP
LDLIBS   += -fopenmp -lopenblas -lpthread

# ---------------------------------------------------------------- sources
LIB_DIRS := tensor tensor/cpu autograd nn nn/optim datasets moe
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cpp))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libmox.a
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
TEST_BIN := $(BIN)/mox-tests
CIFAR_SRC := $(wildcard examples/cifar10/*.cpp)
CIFAR_OBJ := $(CIFAR_SRC:%.cpp=$(BUILD)/obj/%.o)
CIFAR_BIN := $(BIN)/mox-cifar10
BENCH_SRC := $(wildcard bench/*.cpp)
BENCH_BIN := $(BENCH_SRC:bench/%.cpp=$(BIN)/mox-%)

.PHONY: all lib test cifar10 bench deps data clean banner check-deps
all: banner $(LIB) $(CIFAR_BIN) $(TEST_BIN) $(BENCH_BIN)
lib: $(LIB)

banner:
	@echo "mox build — features:"
	@echo "  OpenBLAS  $(call yesno,$(HAVE_OPENBLAS))"
	@echo "  MPI       $(call yesno,$(HAVE_MPI))"
	@echo "  CUDA      $(if $(NVCC),found ($(NVCC)) — backend not built yet (CPU only),not found)"
	@echo "  cuDNN     $(call yesno,$(HAVE_CUDNN))"
	@echo "  NCCL      $(call yesno,$(HAVE_NCCL))"
	@echo "  GoogleTest $(call yesno,$(HAVE_GTEST)), nlohmann-json $(call yesno,$(HAVE_JSON)), stb_image $(call yesno,$(HAVE_STB))"

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(TEST_BIN): $(TEST_OBJ) $(LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(TEST_OBJ) $(LIB) -o $@ -lgtest $(LDLIBS)

$(CIFAR_BIN): $(CIFAR_OBJ) $(LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(CIFAR_OBJ) $(LIB) -o $@ $(LDLIBS)

$(BIN)/mox-%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $< $(LIB) -o $@ -lbenchmark $(LDLIBS)

# ---------------------------------------------------------------- run targets
MOX_DATA ?= $(if $(wildcard ../shared/data/cifar10),$(abspath ../shared/data),$(abspath data))
export MOX_DATA

test: deps all
	OMP_NUM_THREADS=$(THREADS) $(TEST_BIN)

cifar10: deps $(CIFAR_BIN)
	$(CIFAR_BIN) --data $(MOX_DATA)/cifar10 --threads $(THREADS)

bench: deps $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; OMP_NUM_THREADS=$(THREADS) $$b || exit 1; done

# ---------------------------------------------------------------- dependencies and data
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  (apt-get install -y --no-install-recommends $$missing || (apt-get update && apt-get install -y --no-install-recommends $$missing)) >/dev/null || { echo "deps: apt-get failed for$$missing"; exit 1; }; \
	else echo "deps: missing$$missing — run: sudo apt-get install -y$$missing"; exit 1; fi

CIFAR_URL := https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
SHAKESPEARE_URL := https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
data:
	@mkdir -p data/cifar10 data/tinyshakespeare
	@if [ -f data/cifar10/test_batch.bin ]; then echo "data: CIFAR-10 already in data/cifar10"; else \
	  if [ ! -f data/cifar-10-binary.tar.gz ]; then echo "data: downloading CIFAR-10 (binary version, 162 MB)"; \
	  curl -fL --retry 2 -o data/cifar-10-binary.tar.gz.part $(CIFAR_URL) && mv data/cifar-10-binary.tar.gz.part data/cifar-10-binary.tar.gz \
	    || { rm -f data/cifar-10-binary.tar.gz.part; echo "data: cannot download $(CIFAR_URL) — no network? Copy the official cifar-10-binary.tar.gz into data/ and re-run, or point MOX_DATA at a folder that has cifar10/."; exit 1; }; fi; \
	  tar -xzf data/cifar-10-binary.tar.gz -C data && mv data/cifar-10-batches-bin/* data/cifar10/ && rmdir data/cifar-10-batches-bin && rm data/cifar-10-binary.tar.gz; fi
	@if [ -f data/tinyshakespeare/input.txt ]; then echo "data: tiny-Shakespeare already in data/tinyshakespeare"; else \
	  curl -fL --retry 2 -o data/tinyshakespeare/input.txt.part $(SHAKESPEARE_URL) && mv data/tinyshakespeare/input.txt.part data/tinyshakespeare/input.txt \
	    || { rm -f data/tinyshakespeare/input.txt.part; echo "data: cannot download $(SHAKESPEARE_URL) — no network? Copy input.txt into data/tinyshakespeare/."; exit 1; }; fi

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CIFAR_OBJ:.o=.d)
