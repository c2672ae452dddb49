// The kernel registry: AOT kernels register themselves here at start-up (the registration source
// convgen_add_kernels generates), and load_kernel() picks, for a spec, the best variant the host
// CPU can run -- or JIT-compiles the spec when the app links convgen's JIT (convgen_jit) and no
// AOT kernel exists. The same API serves AOT-only apps and JIT apps.
//
// Environment:
//   CONVGEN_MAX_ISA=avx512|avx2|sse41|baseline|neon  caps the variant chosen (like ONEDNN_MAX_CPU_ISA)
//   CONVGEN_VERBOSE=1                                  prints which variant ran and why, to stderr
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "dsl/weight_layout.h"
#include "runtime/cpu.h"
#include "runtime/kernel.h"

namespace convgen {

// One AOT kernel as the generated registration source describes it.
struct AotKernelRecord {
    const char *name;      // the layer's name= label in the suite file ("" when it had none)
    const char *spec;      // normalised spec text
    const char *target;    // Halide target string the kernel was generated for
    const char *schedule;  // ScheduleParams text
    const char *schedule_source;  // where it came from: "heuristic", "tuned: db ...", ...
    WeightLayout weight_layout;
    KernelEntry entry;  // the Halide argv entry point
};

// Called by generated registration code; `set_num_threads` is the library's Halide runtime's
// halide_set_num_threads. Returns true (for use in a static initialiser).
bool register_aot_kernels(const char *library, const AotKernelRecord *records, size_t count, int (*set_num_threads)(int));

struct AotVariant {
    std::string library;
    std::string name;
    std::string spec;
    std::string target;
    std::string schedule;
    std::string schedule_source;
    WeightLayout weight_layout = WeightLayout::PyTorch;
    KernelEntry entry = nullptr;
    IsaLevel level = IsaLevel::Baseline;
    std::string not_runnable;  // empty when the host can run it; else why not
};

// Every registered variant of a spec (by normalised form), in registration order.
std::vector<AotVariant> aot_variants(const LayerSpec &spec);
// Every registered layer (each normalised spec once, in registration order, with its name).
std::vector<LayerSpec> aot_specs();

struct VariantChoice {
    int index = -1;           // into the variants given; -1 when none is usable
    std::string explanation;  // one line: what was chosen and why (or why nothing was)
};
// Picks the highest ISA level that the host runs and that is <= `cap` (when given). Pure, for tests.
VariantChoice choose_variant(const std::vector<AotVariant> &variants, std::optional<IsaLevel> cap);

// CONVGEN_MAX_ISA, parsed; nullopt when unset or empty. Throws convgen::Error on a bad value.
std::optional<IsaLevel> max_isa_from_env();

// The JIT registers itself here when the app links convgen_jit.
using JitProvider = std::shared_ptr<const Kernel> (*)(const LayerSpec &spec);
void set_jit_provider(JitProvider provider);
bool jit_available();

// The best kernel for `spec` on this host: an AOT variant, else the JIT (when linked), else a
// convgen::Error that says what is registered and how to add the spec. Thread-safe.
std::shared_ptr<const Kernel> load_kernel(const LayerSpec &spec);
// One specific AOT variant by its target string; throws if absent or not runnable here.
std::shared_ptr<const Kernel> load_aot_variant(const LayerSpec &spec, const std::string &target);
// What load_kernel would do for `spec`, and why: host CPU, cap, every variant and its status.
std::string explain_kernel_choice(const LayerSpec &spec);

// Sizes the thread pool of every registered AOT library's Halide runtime (0 = one per core).
void set_aot_num_threads(int threads);

}  // namespace convgen
