// aot_check: runs every layer of a suite through the AOT kernels linked into this executable (no
// JIT, no libHalide) and compares each output with the double-precision reference. It is the AOT
// correctness test on x86 (once per CONVGEN_MAX_ISA level) and on ARM64 under qemu.
//
//   aot_check --suite FILE [--expect-isa LEVEL] [--all-variants] [--threads N] [--explain]
//
// --expect-isa: fail unless load_kernel() chose a variant of exactly that ISA level for every layer.
// --all-variants: also run every registered variant the host can run, not only the chosen one.
// --explain: print explain_kernel_choice() (variants, their schedules and where those came from).
// Exit status: 0 all match; 1 a mismatch, a wrong variant or kernels not using convgen's allocator; 2 bad usage or input; 77 skipped
// because the host cannot run the --expect-isa level (e.g. no AVX-512).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <HalideRuntime.h>

#include "runtime/errors.h"
#include "runtime/kernel_allocator.h"
#include "runtime/reference.h"
#include "runtime/registry.h"

namespace {

using namespace convgen;

constexpr int kSkipped = 77;  // CTest's SKIP_RETURN_CODE for the aot.* tests

int usage() {
    std::cerr << "usage: aot_check --suite FILE [--expect-isa avx512|avx2|sse41|baseline|neon] [--all-variants] [--threads N] [--explain]\n";
    return 2;
}

// Returns true when the kernel's output matches the reference.
bool check_kernel(const LayerSpec &spec, const Kernel &kernel, unsigned seed) {
    const RawWeights raw = random_raw_weights(spec, seed);
    const Tensor input = random_input(spec, seed + 1000);
    const Tensor expected = reference_forward(spec, raw, input);
    const Tensor actual = kernel.run(input, kernel.pack(fold_batchnorm(spec, raw)));
    double err = 0, limit = 0;
    const bool ok = within_tolerance(expected, actual, &err, &limit);
    std::printf("  %-4s %-48s max|err| %.3g (limit %.3g)  %s\n", ok ? "ok" : "FAIL", kernel.info().target.c_str(), err, limit,
                spec.to_string_with_name().c_str());
    return ok;
}

int run(int argc, char **argv) {
    std::string suite, expect_isa;
    bool all_variants = false, explain = false;
    int threads = -1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--suite" && i + 1 < argc) {
            suite = argv[++i];
        } else if (a == "--expect-isa" && i + 1 < argc) {
            expect_isa = argv[++i];
        } else if (a == "--all-variants") {
            all_variants = true;
        } else if (a == "--explain") {
            explain = true;
        } else if (a == "--threads" && i + 1 < argc) {
            threads = std::atoi(argv[++i]);
        } else {
            return usage();
        }
    }
    if (suite.empty()) return usage();
    std::optional<IsaLevel> expected_level;
    if (!expect_isa.empty()) expected_level = parse_isa_level(expect_isa);
    if (threads >= 0) set_aot_num_threads(threads);

    const std::vector<LayerSpec> specs = parse_suite_file(suite);
    int failures = 0, runs = 0;
    unsigned seed = 1;
    for (const LayerSpec &spec : specs) {
        if (explain) std::printf("%s", explain_kernel_choice(spec).c_str());
        const auto kernel = load_kernel(spec);
        const IsaLevel level = target_requirements(kernel->info().target).level;
        std::printf("%s: %s variant %s\n", spec.name.c_str(), isa_level_name(level), kernel->info().target.c_str());
        if (expected_level && level < *expected_level) {
            // Not a failure when this host cannot run the expected level at all: say so and skip.
            for (const AotVariant &v : aot_variants(spec)) {
                if (v.level == *expected_level && !v.not_runnable.empty()) {
                    std::printf("SKIP: the %s variant cannot run on this host: %s\n", isa_level_name(v.level), v.not_runnable.c_str());
                    return kSkipped;
                }
            }
        }
        if (expected_level && level != *expected_level) {
            std::printf("  FAIL expected an %s variant\n", isa_level_name(*expected_level));
            ++failures;
        }
        failures += check_kernel(spec, *kernel, seed) ? 0 : 1;
        ++runs;
        if (all_variants) {
            for (const AotVariant &v : aot_variants(spec)) {
                if (v.target == kernel->info().target) continue;
                if (!v.not_runnable.empty()) {
                    std::printf("  skip %-48s %s\n", v.target.c_str(), v.not_runnable.c_str());
                    continue;
                }
                failures += check_kernel(spec, *load_aot_variant(spec, v.target), seed) ? 0 : 1;
                ++runs;
            }
        }
        ++seed;
    }
    // The registration source gives the kernels' Halide runtime convgen's allocator (setting the
    // hook returns the one it replaces).
    if (halide_set_custom_malloc(&kernel_malloc) != &kernel_malloc || halide_set_custom_free(&kernel_free) != &kernel_free) {
        std::printf("FAIL: the kernels' Halide runtime does not allocate through convgen's allocator\n");
        ++failures;
    }
    std::printf("%d kernel runs, %d failures (%zu layers, %zu AOT specs registered)\n", runs, failures, specs.size(),
                aot_specs().size());
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception &e) {
        std::cerr << "aot_check: error: " << e.what() << "\n";
        return 2;
    }
}
