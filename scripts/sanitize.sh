#!/usr/bin/env bash
# Build a copy of the working tree with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# kernel and engine-file tests under it; exit non-zero on any failing test or sanitizer report.
#
#   scripts/sanitize.sh                      # the default test selection (every compiled kernel)
#   scripts/sanitize.sh tests/test_gemm.py   # other pytest arguments instead
#   KEEP=1 scripts/sanitize.sh               # keep the temp dir (build, logs) for inspection
#   FUZZ_N=10000 scripts/sanitize.sh         # then also fuzz engine files (scripts/fuzz_engine.py)
#   FUZZ_N=10000 SKIP_TESTS=1 scripts/sanitize.sh   # the fuzzer alone
#
# The copy (tracked and untracked-but-not-ignored files, so uncommitted edits are included) is
# built in a temp dir: the developer's in-place build is never touched. It runs with the current
# Python (numpy, pytest, onnx... must be installed). Why each setting: docs/sanitizers.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
sanitizers=${QENGINE_SANITIZE:-address,undefined}
start=$(date +%s)

# Clang by default: its ASan also checks the AVX-512 masked loads and stores (the tails of the
# vector loops). GCC's does not instrument them: with GCC, an overrun by a masked store goes
# unseen on an AVX-512 machine (the scalar and AVX2 kernels are still checked).
if [ -z "${CC:-}" ]; then
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        command -v "$c" >/dev/null || continue
        # only with OpenMP (libomp-dev): a serial build fails test_gemm's build check
        if echo 'int main(void){return 0;}' | "$c" -x c -fopenmp - -o /dev/null 2>/dev/null; then
            CC=$c
        else
            echo "sanitize: $c cannot link OpenMP (install libomp-dev); not using it"
        fi
        break
    done
fi
cc=${CC:-$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("CC").split()[0])')}
case $("$cc" --version 2>/dev/null | head -1) in
    *clang*) clang=1 ;;
    *) clang=""; echo "sanitize: $cc is not Clang: masked SIMD loads/stores go unchecked" \
                      "(install clang, libclang-rt-dev and libomp-dev)" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/qengine-sanitize.XXXXXX")
cleanup() { if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi; }
trap cleanup EXIT

echo "== copying $repo to $work/src"
mkdir -p "$work/src" "$work/logs"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"

echo "== building with QENGINE_SANITIZE=$sanitizers ($cc)"
(cd "$work/src" && QENGINE_SANITIZE=$sanitizers CC=$cc \
    "$python" setup.py -q build_ext --inplace -j "${JOBS:-2}" >"$work/logs/build.log" 2>&1) || {
    tail -30 "$work/logs/build.log"; echo "sanitize: BUILD FAILED"; exit 1; }
built=$(date +%s)
echo "   built in $((built - start)) s"

# An ASan-instrumented extension inside a non-ASan CPython: the ASan runtime must be loaded
# first, before libc's malloc is bound, hence LD_PRELOAD (of the runtime of the compiler used).
# libstdc++ is preloaded with it so that ASan's __cxa_throw interceptor finds the real one:
# without it the first C++ exception in a non-instrumented library (torch, onnxruntime, used as
# test oracles) stops the process with "CHECK failed: real___cxa_throw != 0".
runtime() {  # the shared sanitizer runtime of $cc: runtime asan|ubsan
    if [ -n "$clang" ]; then
        [ "$1" = ubsan ] && set -- ubsan_standalone
        "$cc" -print-file-name="libclang_rt.$1-$(uname -m).so"
    else
        "$cc" -print-file-name="lib$1.so"
    fi
}
case $sanitizers in *address*) preload=$(runtime asan) ;; *) preload=$(runtime ubsan) ;; esac
[ -e "$preload" ] || { echo "sanitize: no sanitizer runtime for $cc at $preload (install" \
                            "libasan8/libubsan1 for GCC, libclang-rt-dev for Clang)"; exit 1; }
[[ $sanitizers == *address* ]] && preload="$preload libstdc++.so.6"   # found by soname

# Reports are symbolized by llvm-symbolizer (Clang's runtime, or GCC's when one is on PATH),
# which the runtime starts as a child process. It would inherit LD_PRELOAD, load the sanitizer
# runtime into itself and deadlock at exit, orphaned, holding our output pipe open: a wrapper
# starts it without the preload (and without its "error reading file" chatter about [stack]).
symbolizer=""
if [ -n "$clang" ]; then
    symbolizer="$(dirname "$(readlink -f "$(command -v "$cc")")")/llvm-symbolizer"
fi
[ -x "$symbolizer" ] || symbolizer=$(command -v llvm-symbolizer || true)
symbolizer_opt=""
if [ -n "$symbolizer" ]; then
    mkdir -p "$work/bin"
    printf '#!/bin/sh\nunset LD_PRELOAD\nexec "%s" "$@" 2>/dev/null\n' "$symbolizer" \
        >"$work/bin/llvm-symbolizer"
    chmod +x "$work/bin/llvm-symbolizer"
    symbolizer_opt=":external_symbolizer_path=$work/bin/llvm-symbolizer"
fi

# Leaks: CPython and NumPy leave objects alive at exit by design, so LeakSanitizer's at-exit
# check would fail every process. It is off (leak_check_at_exit=0); instead scripts/pytest_lsan.py
# runs one leak check when the pytest session ends and scripts/sanitizer_logs.py fails only on
# leaks allocated by qengine's compiled code (the kernels' scratch buffers), not CPython's.
# PYTHONMALLOC=malloc puts Python objects on the checked heap: overruns into them are caught,
# and LeakSanitizer sees the pointers they hold (in pymalloc's arenas it does not, and reported
# every live NumPy buffer as a leak: thousands of records and minutes of leak processing).
# allocator_may_return_null + max_allocation_size_mb: a huge size read from a (fuzzed) file
# makes malloc return NULL -> MemoryError -> a qengine error, as without ASan, instead of ASan
# aborting or reserving terabytes. intercept_tls_get_addr=0: Clang 14's LeakSanitizer crashes
# ("Tracer caught signal 11") scanning the dynamic TLS of OpenMP threads under glibc 2.36.
export ASAN_OPTIONS="detect_leaks=1:leak_check_at_exit=0:halt_on_error=1:exitcode=86:\
log_path=$work/logs/asan:strict_string_checks=1:detect_stack_use_after_return=1:\
check_initialization_order=1:allocator_may_return_null=1:max_allocation_size_mb=8192:\
intercept_tls_get_addr=0$symbolizer_opt"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87:\
log_path=$work/logs/ubsan$symbolizer_opt"
export LSAN_OPTIONS="max_leaks=200"
export PYTHONMALLOC=malloc

cd "$work/src"   # the copy's conftest.py puts the copy first on sys.path; PYTHONPATH does it
                 # for the subprocesses that tests start (CLI, forced-ISA runs, fuzz workers)
if [ "$#" -eq 0 ]; then
    # Together these call every entry point of every compiled module (_cpu, _gemm, _quant,
    # _conv, _rnn, _calib: test_calib_observers for the KL and MSE kernels) on every ISA the
    # CPU runs, plus the engine-file loader and fuzzer.
    set -- tests/test_gemm.py tests/test_quant*.py tests/test_qconv*.py tests/test_cnn_ops.py \
        tests/test_dynamic_rnn.py tests/test_dynamic_conv.py tests/test_gates.py \
        tests/test_calib_histogram.py tests/test_calib_observers.py tests/test_memory_plan.py \
        tests/test_kernel_tails.py tests/test_engine_file.py tests/test_engine_fuzz.py \
        tests/test_fused_residual.py
fi

export PYTHONPATH="$work/src:$work/src/scripts"
tests_rc=0
summary="not run"
if [ -z "${SKIP_TESTS:-}" ]; then
    echo "== pytest $* ($sanitizers)"
    set +e
    LD_PRELOAD="$preload" "$python" -m pytest -q -p no:cacheprovider -p pytest_lsan "$@" \
        2>&1 | tee "$work/logs/pytest.log"
    tests_rc=${PIPESTATUS[0]}
    set -e
    summary=$(tail -1 "$work/logs/pytest.log")
fi

fuzz_rc=0
if [ -n "${FUZZ_N:-}" ]; then
    echo "== scripts/fuzz_engine.py --n $FUZZ_N --seed ${FUZZ_SEED:-1} ($sanitizers)"
    set +e   # a case may take ~10x longer under ASan: a generous time bound
    LD_PRELOAD="$preload" "$python" scripts/fuzz_engine.py --n "$FUZZ_N" \
        --seed "${FUZZ_SEED:-1}" --timeout 200 --save-failures "$work/logs/fuzz-failures" \
        2>&1 | tee "$work/logs/fuzz.log"
    fuzz_rc=${PIPESTATUS[0]}
    set -e
    summary="$summary; fuzz: $(grep -m1 " cases in " "$work/logs/fuzz.log" || echo none)"
fi

echo "== sanitizer reports"
logs_rc=0
"$python" "$repo/scripts/sanitizer_logs.py" "$work/logs" || logs_rc=$?

elapsed=$(( $(date +%s) - start ))
if [ "$tests_rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ] || [ "$logs_rc" -ne 0 ]; then
    echo "sanitize: FAILED after ${elapsed} s (build $((built - start)) s; pytest: $summary)"
    KEEP=1
    exit 1
fi
echo "sanitize: OK after ${elapsed} s (build $((built - start)) s; $sanitizers; pytest: $summary)"
