#!/usr/bin/env bash
# Run qengine's kernels on CPUs this machine is not, under qemu-user (docs/other_cpus.md):
#   1. tests/c/test_isa_kernels.c, every kernel bit-exact vs scalar and int64 references:
#        x86-64   native, qemu -cpu Haswell (AVX2, no AVX-512), qemu -cpu Nehalem (no AVX)
#        aarch64  qemu -cpu cortex-a76 and max (dotprod: the NEON kernel runs),
#                 qemu -cpu cortex-a72 (no dotprod: the scalar fallback runs, sdot must SIGILL)
#      and the digests of the scalar outputs must be identical on every CPU;
#   2. CPython under qemu-x86_64 -cpu Haswell: `qengine info` and QENGINE_ISA on a CPU that truly
#      lacks AVX-512, then the ISA-dependent pytest subset and two small end-to-end models.
# Installs nothing; says what is missing. Needs the in-place build for part 2
# (python setup.py build_ext --inplace). Usage: scripts/test_other_cpus.sh [--c-only]
# Environment: PYTHON (default: python, else python3) is the interpreter whose packages the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
C_ONLY=0
[[ "${1:-}" == "--c-only" ]] && C_ONLY=1
PYTHON=${PYTHON:-$(command -v python || command -v python3 || echo python3)}
AARCH64_SYSROOT=/usr/aarch64-linux-gnu
APT="gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"

# ---------------------------------------------------------------- what is there
[[ $(uname -m) == x86_64 ]] || { echo "test_other_cpus.sh: runs on an x86-64 host (this is $(uname -m))" >&2; exit 2; }
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc || missing+=("gcc (package gcc)")
have aarch64-linux-gnu-gcc || missing+=("aarch64-linux-gnu-gcc (package gcc-aarch64-linux-gnu)")
[[ -e $AARCH64_SYSROOT/lib/ld-linux-aarch64.so.1 ]] ||
    missing+=("the arm64 C library in $AARCH64_SYSROOT (package libc6-dev-arm64-cross)")
have qemu-aarch64 || missing+=("qemu-aarch64 (package qemu-user)")
have qemu-x86_64 || missing+=("qemu-x86_64 (package qemu-user)")
n_debian=${#missing[@]}
if ((!C_ONLY)); then
    if ! PYEXE=$("$PYTHON" -c 'import sys; print(sys.executable)' 2>/dev/null); then
        missing+=("a Python interpreter: $PYTHON (set PYTHON=...)")
    elif ! "$PYTHON" -c 'import numpy, pytest, hypothesis' 2>/dev/null; then
        missing+=("numpy, pytest and hypothesis for $PYEXE (pip install -e \".[test]\")")
    elif ! "$PYTHON" -c 'import qengine._ext._cpu' 2>/dev/null; then
        missing+=("the in-place build (python setup.py build_ext --inplace)")
    fi
fi
if ((${#missing[@]})); then
    echo "test_other_cpus.sh: missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    ((n_debian == 0)) || echo "Debian: apt-get install -y --no-install-recommends $APT" >&2
    exit 2
fi
qemu-x86_64 -version | sed -n 1p

ulimit -c 0   # a crash under qemu-user would otherwise leave qemu_*.core files behind
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qengine-other-cpus.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAIL=0
fail() { echo "FAILED: $*" >&2; FAIL=1; }

# ---------------------------------------------------------------- 1. C harness
# The flags of setup.py (baseline ISA, SIMD per function via target attributes), warnings fatal:
# the aarch64 build must compile clean although no one builds it day to day.
CFLAGS="-O3 -std=c11 -ffp-contract=off -fno-strict-aliasing -fopenmp -Wall -Wextra -Werror -Wno-unused-function -Iinclude"
gcc $CFLAGS tests/c/test_isa_kernels.c -o "$WORK/kernels.x86_64" -lm
aarch64-linux-gnu-gcc $CFLAGS tests/c/test_isa_kernels.c -o "$WORK/kernels.aarch64" -lm

# name | command | runnable ISAs the dispatch must report ("" = whatever the host has)
RUNS=(
    "x86_64 native|$WORK/kernels.x86_64|"
    "x86_64 qemu Haswell|qemu-x86_64 -cpu Haswell $WORK/kernels.x86_64|scalar,avx2"
    "x86_64 qemu Nehalem|qemu-x86_64 -cpu Nehalem $WORK/kernels.x86_64|scalar"
    "aarch64 qemu cortex-a76|qemu-aarch64 -L $AARCH64_SYSROOT -cpu cortex-a76 $WORK/kernels.aarch64|scalar,neondot"
    "aarch64 qemu max|qemu-aarch64 -L $AARCH64_SYSROOT -cpu max $WORK/kernels.aarch64|scalar,neondot"
    "aarch64 qemu cortex-a72|qemu-aarch64 -L $AARCH64_SYSROOT -cpu cortex-a72 $WORK/kernels.aarch64|scalar"
)
i=0
for run in "${RUNS[@]}"; do
    IFS='|' read -r name cmd expect <<<"$run"
    echo
    echo "=== C kernels: $name"
    t0=$SECONDS
    rc=0
    $cmd ${expect:+--expect-runnable=$expect} 2>"$WORK/err.$i" >"$WORK/out.$i" || rc=$?
    ((rc == 0)) || fail "C kernels on $name (exit status $rc)"
    # not results: qemu's warnings about host features TCG lacks (rtm, pcid, ...), and its report
    # of the SIGILL the harness provokes on purpose in a child (an ISA the CPU must not run)
    grep -v -e "TCG doesn't support requested feature" -e "uncaught target signal 4 (Illegal instruction)" \
        "$WORK/err.$i" >&2 || true
    cat "$WORK/out.$i"
    echo "($((SECONDS - t0)) s)"
    grep '^digest ' "$WORK/out.$i" >"$WORK/digest.$i"
    cmp -s "$WORK/digest.0" "$WORK/digest.$i" ||
        fail "digests of $name differ from ${RUNS[0]%%|*}: results depend on the CPU"
    i=$((i + 1))
done

# ---------------------------------------------------------------- 2. Python on a CPU without AVX-512
if ((!C_ONLY)); then
    # QEMU 7.2 TCG raises SIGSEGV for vmaskmovps/vpmaskmovd when a masked-off lane crosses into an
    # unmapped page (hardware suppresses that fault). NumPy's AVX2 loops use masked tail loads,
    # so NumPy's own dispatch is held at its X86_V2 baseline (OpenBLAS likewise); qengine's
    # kernels use no masked AVX2 loads and its detection (CPUID + XGETBV) is unaffected.
    export NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR" OPENBLAS_CORETYPE=Nehalem
    hpy() { qemu-x86_64 -cpu Haswell "$PYEXE" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }

    echo
    echo "=== qengine info under qemu-x86_64 -cpu Haswell"
    t0=$SECONDS
    info=$(hpy -m qengine info) || fail "qengine info under Haswell"
    echo "$info"
    grep -Eq '^active ISA +avx2$' <<<"$info" || fail "qengine info: active ISA is not avx2"
    grep -Eq '^runnable ISAs +scalar avx2$' <<<"$info" || fail "qengine info: runnable ISAs are not 'scalar avx2'"
    grep -Eq '^compiled ISAs +scalar avx2 avx512vnni$' <<<"$info" || fail "qengine info: compiled ISAs"
    grep -Eq '^CPU features .*\bavx2 fma\b' <<<"$info" || fail "qengine info: avx2/fma not detected"
    grep -Eq '^CPU features .*avx512' <<<"$info" && fail "qengine info: AVX-512 reported on Haswell"
    grep -Eq '^kernel\[gemm_u8s8\] +qe_u8_s8_gemm_ukernel_4x16c2__avx2$' <<<"$info" ||
        fail "qengine info: GEMM kernel is not the AVX2 one"
    # forcing an ISA the CPU lacks is a clear error at first use (import still works, so the
    # CLI can say it in one line, rc 2); forcing scalar works
    if err=$(QENGINE_ISA=avx512vnni hpy -m qengine info 2>&1); then
        fail "QENGINE_ISA=avx512vnni was accepted on Haswell"
    else
        grep -q "^qengine: error: .*this CPU/OS cannot run avx512vnni" <<<"$err" || fail "QENGINE_ISA=avx512vnni: unexpected error: $err"
    fi
    [[ $(QENGINE_ISA=scalar hpy -c 'import qengine; print(qengine.active_isa())') == scalar ]] ||
        fail "QENGINE_ISA=scalar under Haswell"
    echo "($((SECONDS - t0)) s)"

    echo
    echo "=== qengine info under qemu-x86_64 -cpu Nehalem (no AVX: scalar)"
    info=$(qemu-x86_64 -cpu Nehalem "$PYEXE" -m qengine info 2>/dev/null) || fail "qengine info under Nehalem"
    grep -E '^(CPU features|runnable ISAs|active ISA)' <<<"$info"
    grep -Eq '^active ISA +scalar$' <<<"$info" || fail "Nehalem: active ISA is not scalar"

    echo
    echo "=== pytest, ISA-dependent subset, under qemu-x86_64 -cpu Haswell"
    t0=$SECONDS
    # test_env_* start child Pythons, which qemu-user does not follow (they would run natively);
    # the QENGINE_ISA checks above cover them
    hpy -m pytest -q -p no:cacheprovider -rs \
        tests/test_gemm.py tests/test_quant.py tests/test_qconv.py tests/test_qconv_ops.py \
        tests/test_gates.py tests/test_dynamic_rnn.py tests/test_calib_histogram.py \
        tests/test_dynamic_conv.py tests/test_dynamic_int4.py tests/test_static_w4.py \
        tests/test_fused_residual.py::test_fused_layer_is_bit_exact_with_the_unfused_pair_and_the_reference \
        tests/test_fused_residual.py::test_every_isa_gives_the_same_fused_bytes \
        tests/test_cli.py::test_demo_numbers \
        tests/test_static.py::test_digits_cnn_is_integer_only_and_keeps_accuracy \
        --deselect tests/test_gemm.py::test_env_forces_isa \
        --deselect tests/test_gemm.py::test_env_unknown_isa_errors ||
        fail "pytest under Haswell"
    echo "($((SECONDS - t0)) s)"
fi

echo
if ((FAIL)); then echo "test_other_cpus.sh: FAILED (${SECONDS} s)"; exit 1; fi
echo "test_other_cpus.sh: OK (${SECONDS} s)"
