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
#
#   make test SANITIZE=1   everything built with ASan + UBSan (-O1 -g) in build-san/, suite run clean
#   make fuzz              libFuzzer targets (clang) in build-fuzz/, each run FUZZ_SECONDS (default 60)
SHELL := /bin/bash
.DEFAULT_GOAL := all

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD   ?= build-san
endif
BUILD   ?= build
BIN     := $(BUILD)/bin
CXX     ?= g++
THREADS ?= 2
DEBUG   ?= 0

# ---------------------------------------------------------------- feature detection
APT_PACKAGES := g++ make libopenblas-openmp-dev libdnnl-dev libgtest-dev libbenchmark-dev \
                nlohmann-json3-dev libstb-dev libcli11-dev libopenmpi-dev openmpi-bin curl
have_header = $(shell echo '\#include <$(1)>' | $(CXX) -x c++ -E - >/dev/null 2>&1 && echo 1)
HAVE_OPENBLAS := $(call have_header,cblas.h)
HAVE_ONEDNN   := $(call have_header,oneapi/dnnl/dnnl.h)
HAVE_GTEST    := $(call have_header,gtest/gtest.h)
HAVE_JSON     := $(call have_header,nlohmann/json.hpp)
HAVE_STB      := $(call have_header,stb/stb_image.h)
HAVE_MPI      := $(shell command -v mpicxx >/dev/null 2>&1 && echo 1)
CUDA_HOME     ?= $(firstword $(wildcard /usr/local/cuda))
NVCC          := $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
# An nvcc found only on PATH names the toolkit: its headers and libraries are beside it.
CUDA_HOME     := $(or $(CUDA_HOME),$(patsubst %/bin/nvcc,%,$(filter %/bin/nvcc,$(realpath $(NVCC)))))
HAVE_CUDNN    := $(if $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/*/cudnn.h),1)
HAVE_NCCL     := $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1)
yesno = $(if $(1),found,not found)
# OpenMPI's compile and link flags (dist/ is the only code that includes <mpi.h>).
MPI_CFLAGS    := $(if $(HAVE_MPI),$(shell mpicxx --showme:compile) -DOMPI_SKIP_MPICXX=1)
MPI_LIBS      := $(if $(HAVE_MPI),$(filter-out -lmpi_cxx,$(shell mpicxx --showme:link)))

# CUDA backend (tensor/cuda/*.cu): on by default where nvcc was found; `make CUDA=0` forces a
# CPU-only build. Sanitizer and fuzz builds are always CPU-only (nvcc objects carry no ASan).
# CUDA_ARCH: Hopper by default, with PTX so newer chips JIT-compile it.
CUDA      ?= $(if $(NVCC),1,0)
ifeq ($(SANITIZE),1)
CUDA      := 0
endif
CUDA_ARCH ?= 90
# `make CUDA=0` on a machine with nvcc links its CPU-only programs into $(BUILD)/bin-cpu/ (the
# objects are shared: only the links differ), so both builds coexist.
ifeq ($(and $(NVCC),$(filter 0,$(CUDA)),$(filter 0,$(SANITIZE))),0)
BIN     := $(BUILD)/bin-cpu
endif
NVCCFLAGS := -std=c++17 -O3 -g -lineinfo -I. -MMD -MP --expt-relaxed-constexpr \
             -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)] \
             -Xcompiler -Wall,-Wno-unused-parameter,-fPIC
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lcudnn $(if $(HAVE_NCCL),-lnccl)

# ---------------------------------------------------------------- flags
ARCH    ?= native
OPT      := $(if $(filter 1,$(DEBUG)),-O0 -g,-O3 -march=$(ARCH) -g1)
# SANITIZE=1: AddressSanitizer (with LeakSanitizer) + UndefinedBehaviorSanitizer, the first
# report fatal, plus libstdc++'s bounds assertions (ASan misses an index past size() but
# within capacity()). The flags are in OPT, so the link lines (which pass CXXFLAGS) get them
# too. No leak suppressions are needed (OpenMP's and OpenBLAS's pools report nothing).
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS
SAN_ENV   := $(if $(filter 1,$(SANITIZE)),ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
ifeq ($(SANITIZE),1)
OPT      := -O1 -g $(SAN_FLAGS)
endif
# stb_image (third party, compiled in datasets/stb_image_impl.cpp) has undefined behaviour
# that is harmless in practice and that we cannot patch (Debian's header): memcpy(NULL, p, 0)
# on an empty PNG IDAT chunk, 32-bit shifts by 32 in the JPEG bit reader and a signed int
# overflow of the JPEG DC prediction, both on corrupt data (garbage pixels; stb 2.28 refuses
# such files). Those UBSan checks are off for that one file; ASan and the bounds checks stay
# on, and the real memory bugs are guarded in datasets/image_guard.cpp. See fuzz/README.md.
STB_UBSAN_EXCEPTIONS := -fno-sanitize=nonnull-attribute,shift,signed-integer-overflow
ifeq ($(SANITIZE),1)
$(BUILD)/obj/datasets/stb_image_impl.o: CXXFLAGS += $(STB_UBSAN_EXCEPTIONS)
# tests/test_datasets.cpp compiles stb_image_write (to make JPEG/PNG test files), whose JPEG
# encoder left-shifts negative ints (as fuzz/make_seeds.cpp notes); not mox code.
$(BUILD)/obj/tests/test_datasets.o: CXXFLAGS += -fno-sanitize=shift-base
endif
CXXFLAGS += -std=c++17 $(OPT) -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -MMD -MP
LDLIBS   += -fopenmp -ldnnl -lopenblas -lpthread $(MPI_LIBS)
$(BUILD)/obj/dist/%.o: CXXFLAGS += $(MPI_CFLAGS)
# The CPU kernels never read errno after a math call; without this flag GCC keeps sqrt's
# errno branch in every loop that takes a square root (Adam's update, norms), which stops it
# from vectorising them. Results are unchanged (sqrt is correctly rounded either way).
$(BUILD)/obj/tensor/cpu/%.o: CXXFLAGS += -fno-math-errno

# ---------------------------------------------------------------- sources
LIB_DIRS := tensor tensor/cpu autograd nn nn/optim datasets moe dist
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cpp))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libmox.a
# The CUDA backend (tensor/cuda/*.cu, plus the NCCL transport dist/*.cu when nccl.h was found)
# is one shared library beside the programs, $(BIN)/libmox_cuda.so, the only thing linked with
# the CUDA libraries. The CPU code dlopens it on first use when the driver reports a GPU
# (tensor/cuda_library.h), so a CPU-only run never maps cuBLAS/cuDNN/NCCL. The library calls
# back into mox's CPU code, which the programs export: linked with -rdynamic and the whole of
# libmox.a (an archive member the program itself does not use must still be there for it).
CUDA_SRC := $(if $(filter 1,$(CUDA)),$(wildcard tensor/cuda/*.cu) $(if $(HAVE_NCCL),$(wildcard dist/*.cu)))
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
CUDA_LIB := $(if $(filter 1,$(CUDA)),$(BIN)/libmox_cuda.so)
# Prerequisites of every program, and what its link line names for them.
LINK_LIB  := $(LIB) $(CUDA_LIB)
ifeq ($(CUDA),1)
LINK_ARGS := -rdynamic -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive
else
LINK_ARGS := $(LIB)
endif
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
TEST_BIN := $(BIN)/mox-tests
# Multi-process tests (tests/dist/), run under mpirun with 2 and 4 ranks by `make test`.
DIST_TEST_SRC := $(wildcard tests/dist/*.cpp)
DIST_TEST_OBJ := $(DIST_TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
DIST_TEST_BIN := $(BIN)/mox-dist-tests
CIFAR_SRC := $(wildcard examples/cifar10/*.cpp)
CIFAR_OBJ := $(CIFAR_SRC:%.cpp=$(BUILD)/obj/%.o)
CIFAR_BIN := $(BIN)/mox-cifar10
LLM_SRC := $(wildcard examples/llm/*.cpp)
LLM_OBJ := $(LLM_SRC:%.cpp=$(BUILD)/obj/%.o)
LLM_BIN := $(BIN)/mox-llm
# The LLM example's model and checkpoint code, also linked into mox-tests (tests/test_llm.cpp).
LLM_LIB_OBJ := $(addprefix $(BUILD)/obj/examples/llm/,config.o model.o checkpoint.o)
BENCH_SRC := $(wildcard bench/*.cpp)
BENCH_BIN := $(BENCH_SRC:bench/%.cpp=$(BIN)/mox-%)

.PHONY: all lib test cifar10 bench bench-compare deps data clean banner check-deps
all: banner $(LIB) $(CIFAR_BIN) $(LLM_BIN) $(TEST_BIN) $(DIST_TEST_BIN) $(BENCH_BIN)
lib: $(LIB)

banner:
	@echo "mox build — features:"
	@echo "  OpenBLAS  $(call yesno,$(HAVE_OPENBLAS))"
	@echo "  oneDNN    $(call yesno,$(HAVE_ONEDNN)) (f32 GEMMs ≥ 2M multiply-adds, tensor/cpu/blas.h)"
	@echo "  MPI       $(call yesno,$(HAVE_MPI))"
	@echo "  CUDA      $(if $(NVCC),found ($(NVCC)),not found) — backend $(if $(filter 1,$(CUDA)),built for sm_$(CUDA_ARCH) + PTX into $(BIN)/libmox_cuda.so (loaded on first CUDA use),not built (CPU only$(if $(NVCC),; CUDA=0)))"
	@echo "  cuDNN     $(call yesno,$(HAVE_CUDNN))"
	@echo "  NCCL      $(call yesno,$(HAVE_NCCL))"
	@echo "  GoogleTest $(call yesno,$(HAVE_GTEST)), nlohmann-json $(call yesno,$(HAVE_JSON)), stb_image $(call yesno,$(HAVE_STB))"

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@$(if $(HAVE_CUDNN),,echo "CUDA backend: nvcc ($(NVCC)) was found but not cuDNN 9 (no cudnn.h in $(CUDA_HOME)/include or /usr/include); install cuDNN or build CPU-only with 'make CUDA=0'" >&2; exit 1)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CUDA_LIB): $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) -shared $^ -o $@ $(CUDA_LIBS)

$(TEST_BIN): $(TEST_OBJ) $(LLM_LIB_OBJ) $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(TEST_OBJ) $(LLM_LIB_OBJ) $(LINK_ARGS) -o $@ -lgtest $(LDLIBS)

$(DIST_TEST_BIN): $(DIST_TEST_OBJ) $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(DIST_TEST_OBJ) $(LINK_ARGS) -o $@ -lgtest $(LDLIBS)

$(CIFAR_BIN): $(CIFAR_OBJ) $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(CIFAR_OBJ) $(LINK_ARGS) -o $@ $(LDLIBS)

$(LLM_BIN): $(LLM_OBJ) $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $(LLM_OBJ) $(LINK_ARGS) -o $@ $(LDLIBS)

# bench-compare's mox side runs the LLM example's model too.
$(BIN)/mox-workloads: $(BUILD)/obj/bench/workloads.o $(LLM_LIB_OBJ) $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $< $(LLM_LIB_OBJ) $(LINK_ARGS) -o $@ $(LDLIBS)

$(BIN)/mox-%: $(BUILD)/obj/bench/%.o $(LINK_LIB)
	@mkdir -p $(BIN)
	$(CXX) $(CXXFLAGS) $< $(LINK_ARGS) -o $@ -lbenchmark $(LDLIBS)

# ---------------------------------------------------------------- run targets
MOX_DATA ?= $(if $(wildcard ../shared/data/cifar10),$(abspath ../shared/data),$(abspath data))
export MOX_DATA

# mpirun for the multi-process tests: as root it needs --allow-run-as-root; 4 ranks on a
# 2-core machine need --oversubscribe; one OpenMP thread per rank; 120 s collective timeout.
# Under SANITIZE=1 they run with ASan and UBSan but without LeakSanitizer: OpenMPI leaks by
# design at MPI_Finalize (hwloc topology, dlopen'ed components whose frames LSan cannot even
# name, so no suppression file can match them). The library code they run is leak-checked by
# mox-tests.
MPIRUN := mpirun $(if $(filter 0,$(shell id -u)),--allow-run-as-root) --oversubscribe --bind-to none \
          -x OMP_NUM_THREADS=1 -x MOX_DIST_TIMEOUT=120 $(if $(filter 1,$(SANITIZE)),-x ASAN_OPTIONS -x UBSAN_OPTIONS)
DIST_SAN_ENV := $(subst detect_leaks=1,detect_leaks=0,$(SAN_ENV))
test: deps all
	$(SAN_ENV) OMP_NUM_THREADS=$(THREADS) $(TEST_BIN)
	$(DIST_SAN_ENV) $(MPIRUN) -np 2 $(DIST_TEST_BIN)
	$(DIST_SAN_ENV) $(MPIRUN) -np 4 $(DIST_TEST_BIN)

cifar10: deps $(CIFAR_BIN)
	$(CIFAR_BIN) --data $(MOX_DATA)/cifar10 --threads $(THREADS)

bench: deps $(BENCH_BIN)
	@for b in $(filter-out $(BIN)/mox-workloads,$(BENCH_BIN)); do echo "== $$b"; OMP_NUM_THREADS=$(THREADS) $$b || exit 1; done

# make bench-compare [TORCH_PYTHON=/path/to/python] [COMPARE_ARGS="--reps 5 --only gpt_dense"]:
# mox against PyTorch on this CPU (bench/compare.py), table into bench/RESULTS.md. Without
# TORCH_PYTHON, PyTorch comes from PyPI into .venv-bench/ the first time (several GB: PyPI's
# Linux wheel brings CUDA libraries it does not use here). Never needed by `make test`.
TORCH_PYTHON ?= .venv-bench/bin/python
bench-compare: deps $(BIN)/mox-workloads
	@if [ ! -x "$(TORCH_PYTHON)" ]; then \
	  if [ "$(TORCH_PYTHON)" != .venv-bench/bin/python ]; then echo "bench-compare: TORCH_PYTHON=$(TORCH_PYTHON) is not an executable"; exit 2; fi; \
	  echo "bench-compare: installing PyTorch from PyPI into .venv-bench/"; \
	  python3 -m venv .venv-bench && .venv-bench/bin/pip install --quiet torch numpy || exit 1; \
	fi
	python3 bench/compare.py --python $(TORCH_PYTHON) --threads $(THREADS) --results bench/RESULTS.md $(COMPARE_ARGS)

# ---------------------------------------------------------------- fuzzing (clang libFuzzer)
# make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="safetensors image"]: build the targets of fuzz/
# with clang (-fsanitize=fuzzer,address,undefined) into build-fuzz/, then run each for
# FUZZ_SECONDS on the seeds of fuzz/corpus/<target>/ (new inputs go to
# build-fuzz/corpus/<target>/, crashes to build-fuzz/findings/<target>/). See fuzz/README.md.
# An input counts as a hang after 600 s: the slowest legal one, a 4-component JPEG at the
# pixel cap that spends the whole scan budget (kMaxJpegScanPasses, datasets/image_folder.h),
# takes 13 s in the release build and 3 minutes under ASan + UBSan.
FUZZ_BUILD    := build-fuzz
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  ?= safetensors cifar10 image checkpoint tokenizer text llm_config ds_config
# Without -fopenmp: the targets run one thread, and clang 14 rejects some of our
# lambdas inside OpenMP regions; omp_* calls resolve to GCC's libgomp (OpenBLAS's own).
# -Wno-unused-function: helpers called only from `#pragma omp … if (…)` clauses (ignored
# without -fopenmp) would warn.
FUZZ_CXXFLAGS := -std=c++17 -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
                 -Wno-unknown-pragmas -Wno-source-uses-openmp -Wno-unused-function -Wno-unused-variable -Wno-unused-const-variable -I. -MMD -MP \
                 -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LDLIBS   := -ldnnl -lopenblas -lgomp -lpthread $(MPI_LIBS)
FUZZ_LIB      := $(FUZZ_BUILD)/libmox.a
FUZZ_LIB_OBJ  := $(LIB_SRC:%.cpp=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/bin/fuzz_%)
# Every malloc'd byte starts as 0xFF (ASan fills only the first 4 KiB, with 0xBE, by default):
# a read of uninitialised memory then sees the same extreme value on every run, so a finding
# replays (stb's unset JPEG Huffman tables read out of bounds under 0xFF, silently under the
# default fill).
FUZZ_ENV      := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:malloc_fill_byte=255:max_malloc_fill_size=16777216 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 OMP_NUM_THREADS=1

.PHONY: fuzz fuzz-build fuzz-seeds check-fuzz-deps
FUZZ_PACKAGES := clang libclang-rt-dev
check-fuzz-deps:
	@missing=""; for p in $(FUZZ_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ] || ! command -v dpkg-query >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then echo "fuzz: installing$$missing"; \
	  (apt-get install -y --no-install-recommends $$missing || (apt-get update && apt-get install -y --no-install-recommends $$missing)) >/dev/null || { echo "fuzz: apt-get failed for$$missing"; exit 1; }; \
	else echo "fuzz: missing$$missing — run: sudo apt-get install -y$$missing"; exit 1; fi; \
	command -v $(FUZZ_CXX) >/dev/null || { echo "fuzz: $(FUZZ_CXX) not found (FUZZ_CXX=clang++-14?)"; exit 1; }

$(FUZZ_BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/bin/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $(filter %.o,$^) $(FUZZ_LIB) -o $@ $(FUZZ_LDLIBS)

# A target whose parser lives in an example links that example's object too (built by the
# same %.o rule above, with the fuzz flags): mox-llm's ModelConfig reader, mox-cifar10's
# DeepSpeed config reader.
$(FUZZ_BUILD)/bin/fuzz_llm_config: $(FUZZ_BUILD)/obj/examples/llm/config.o
$(FUZZ_BUILD)/bin/fuzz_ds_config: $(FUZZ_BUILD)/obj/examples/cifar10/ds_config.o

$(FUZZ_BUILD)/bin/make_seeds: $(FUZZ_BUILD)/obj/fuzz/make_seeds.o $(FUZZ_BUILD)/obj/examples/llm/config.o $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) $(filter %.o,$^) $(FUZZ_LIB) -o $@ $(FUZZ_LDLIBS)

$(FUZZ_BUILD)/obj/datasets/stb_image_impl.o: FUZZ_CXXFLAGS += $(STB_UBSAN_EXCEPTIONS)
$(FUZZ_BUILD)/obj/dist/%.o: FUZZ_CXXFLAGS += $(MPI_CFLAGS)
# stb_image_write (the seed writer's PNG/BMP/JPEG encoder, not part of mox) shifts negative ints.
$(FUZZ_BUILD)/obj/fuzz/make_seeds.o: FUZZ_CXXFLAGS += -fno-sanitize=shift-base

fuzz-build: check-fuzz-deps $(FUZZ_BINS)

# Regenerate the committed seed corpora (only needed when a format changes).
fuzz-seeds: check-fuzz-deps $(FUZZ_BUILD)/bin/make_seeds
	$(FUZZ_ENV) $(FUZZ_BUILD)/bin/make_seeds fuzz/corpus

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/findings/$$t $(FUZZ_BUILD)/logs; \
	  dict=$$([ -f fuzz/$$t.dict ] && echo -dict=fuzz/$$t.dict); \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log $(FUZZ_BUILD)/logs/$$t.log)"; \
	  if $(FUZZ_ENV) $(FUZZ_BUILD)/bin/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=600 -max_len=8192 \
	       -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/findings/$$t/ $$dict \
	       $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t >$(FUZZ_BUILD)/logs/$$t.log 2>&1; then \
	    grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" $(FUZZ_BUILD)/logs/$$t.log | tr '\n' ' '; echo; \
	  else \
	    tail -60 $(FUZZ_BUILD)/logs/$$t.log; \
	    echo "fuzz: $$t FOUND A CRASH — input saved in $(FUZZ_BUILD)/findings/$$t/; add it as a regression test in tests/"; \
	    exit 1; \
	  fi; \
	done

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

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(DIST_TEST_OBJ:.o=.d) $(CUDA_OBJ:.o=.d) $(CIFAR_OBJ:.o=.d) $(LLM_OBJ:.o=.d)
-include $(wildcard $(FUZZ_BUILD)/obj/*/*.d $(FUZZ_BUILD)/obj/*/*/*.d)
