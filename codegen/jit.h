// The JIT: compiles a LayerSpec for a Halide target with a schedule, in memory, and caches the
// result by (normalised spec, target, schedule). Safe to use from several threads: compilation
// of one key happens once; running needs no lock.
#pragma once

#include <memory>
#include <string>

#include "dsl/layer_spec.h"
#include "runtime/kernel.h"
#include "schedules/schedule_params.h"

namespace convgen {

struct CompileOptions {
    std::string target;  // Halide target string; empty = the host (Halide::get_host_target())
    // Schedule parameters; when absent the heuristic for the target's ISA family is used.
    bool has_schedule = false;
    ScheduleParams schedule;
};

struct CompiledKernel {
    std::shared_ptr<const Kernel> kernel;
    double compile_seconds = 0;  // 0 when served from the cache
    bool from_cache = false;
};

// The host target as convgen uses it (features spelled out).
std::string host_target_string();

// Resolves target text (or "host"/empty) to a canonical Halide target string; throws convgen::Error.
std::string canonical_target(const std::string &target);

CompiledKernel jit_compile(const LayerSpec &spec, const CompileOptions &options = {});

// What `convgen explain` prints: normalised spec, target, schedule, Halide's loop nest.
std::string explain(const LayerSpec &spec, const CompileOptions &options = {});

// Writes the kernel's assembly for the options' target (any target, not only the host) to `path`.
void write_assembly(const LayerSpec &spec, const CompileOptions &options, const std::string &path);

// Sizes the Halide thread pool of JIT-compiled kernels (0 = Halide's default: one per core).
void set_num_threads(int threads);

}  // namespace convgen
