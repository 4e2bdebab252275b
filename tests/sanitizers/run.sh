#!/usr/bin/env bash
# Sanitizer stage of scripts/test.sh:
#  1. the whole CTest suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#     (LeakSanitizer on; any report aborts the test that made it), in ./build-asan;
#  2. the threading tests (Catch tag [threads]) built with ThreadSanitizer, in ./build-tsan.
# Suppressions (third-party code only) are in this folder, each with the reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/sanitizers
jobs=$(nproc 2>/dev/null || echo 2)
t0=$(date +%s)

# ---- ASan + UBSan + LSan: every test ----
# Note [Fake stack alignment]: with detect_stack_use_after_return on, ASan moves each frame's
# locals to a "fake stack" whose slots g++ 12 aligns to 32 bytes only, while -march=native
# code on an AVX-512 machine assumes 64-byte aligned stack slots: test_optim's XOR case
# faulted on a vmovdqa64 from a local array at an address 32 mod 64 (the fault address ASan
# printed was meaningless: a #GP carries none). So this stage compiles for x86-64-v3
# (AVX2 + FMA, 32-byte vectors) where the CPU has it, and catches use after return; the
# AVX-512 kernels are run under ASan by the fuzz stage (clang, -march=native).
arch=()
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then
  arch=(-DCMAKE_CXX_FLAGS=-march=x86-64-v3)
fi
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_NATIVE=OFF \
  "${arch[@]}" -DTAPEGRAD_SANITIZE=address,undefined -DTAPEGRAD_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
t1=$(date +%s)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1
export LSAN_OPTIONS=suppressions=$PWD/$here/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# install_consumer is excluded here only: it builds an outside, uninstrumented project
# against the installed library, which cannot link an ASan-instrumented libtapegrad.a. The
# Release stage runs it.
echo "sanitizers: ASan+UBSan+LSan ctest (all tests but install_consumer)"
ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 3000 -E '^install_consumer$'
t2=$(date +%s)
unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

# ---- TSan: the threading tests ----
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTAPEGRAD_SANITIZE=thread -DTAPEGRAD_BUILD_BENCH=OFF -DTAPEGRAD_BUILD_APPS=OFF >/dev/null
thread_tests=(test_engine test_reliability test_parallel test_tensor test_conv)
cmake --build build-tsan -j "$jobs" --target "${thread_tests[@]}"
t3=$(date +%s)
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/$here/tsan.supp"
for t in "${thread_tests[@]}"; do
  echo "sanitizers: TSan $t [threads]"
  "build-tsan/tests/$t" "[threads]" --order decl
done
t4=$(date +%s)
unset TSAN_OPTIONS
echo "sanitizers: asan build $((t1 - t0)) s, asan tests $((t2 - t1)) s," \
  "tsan build $((t3 - t2)) s, tsan tests $((t4 - t3)) s"
