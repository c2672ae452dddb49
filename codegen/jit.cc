#include "codegen/jit.h"

#include <Halide.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include "dsl/algorithms.h"
#include "runtime/errors.h"
#include "schedules/default_schedules.h"

namespace convgen {

namespace {

// Halide's compiler keeps process-wide state (LLVM initialisation, the shared JIT runtime);
// compiling one pipeline at a time is the documented safe use. Running compiled code needs no lock.
std::mutex &compile_mutex() {
    static std::mutex m;
    return m;
}

// -1: never set (Halide's default pool size); 0 asks Halide for its default again.
std::atomic<int> g_requested_threads{-1};

// CPU features that make code unrunnable on a host that lacks them.
const Halide::Target::Feature kCpuFeatures[] = {
    Halide::Target::SSE41,          Halide::Target::AVX,           Halide::Target::AVX2,
    Halide::Target::FMA,            Halide::Target::FMA4,          Halide::Target::F16C,
    Halide::Target::AVX512,         Halide::Target::AVX512_KNL,    Halide::Target::AVX512_Skylake,
    Halide::Target::AVX512_Cannonlake, Halide::Target::AVX512_SapphireRapids, Halide::Target::ARMDotProd,
    Halide::Target::ARMFp16,        Halide::Target::SVE,           Halide::Target::SVE2,
};

Halide::Target parse_target(const std::string &text) {
    if (text.empty() || text == "host") return Halide::get_host_target();
    if (!Halide::Target::validate_target_string(text)) {
        throw Error("target '" + text + "' is not a valid Halide target (e.g. x86-64-linux-avx-avx2-f16c-fma-sse41, arm-64-linux)");
    }
    return Halide::Target(text);
}

// The JIT runs code in this process, so its target must be one the host CPU can execute.
void check_runnable_on_host(const Halide::Target &t) {
    const Halide::Target host = Halide::get_host_target();
    if (t.arch != host.arch || t.bits != host.bits || t.os != host.os) {
        throw Error("target '" + t.to_string() + "' cannot run on this host (" + host.to_string() +
                    "); the JIT only runs host code (use the AOT generators to cross-compile)");
    }
    for (auto f : kCpuFeatures) {
        if (t.has_feature(f) && !host.has_feature(f)) {
            throw Error("target '" + t.to_string() + "' needs CPU features this host lacks (host: " + host.to_string() + ")");
        }
    }
}

ScheduleParams schedule_for(const LayerSpec &spec, const CompileOptions &options, const Halide::Target &target) {
    return options.has_schedule ? options.schedule : heuristic_schedule(spec, isa_family_of(target));
}

void apply_thread_count_locked() {
    const int threads = g_requested_threads.load();
    if (threads < 0) return;
    auto runtime = Halide::Internal::JITSharedRuntime::get(nullptr, Halide::get_host_target(), false);
    for (auto &module : runtime) {
        void *fn = module.find_symbol_by_name("halide_set_num_threads").address;
        if (fn) {
            reinterpret_cast<int (*)(int)>(fn)(threads);
            return;
        }
    }
}

struct CacheEntry {
    std::mutex mutex;
    std::shared_ptr<const Kernel> kernel;
};

std::mutex g_cache_mutex;
std::map<std::string, std::shared_ptr<CacheEntry>> g_cache;

std::shared_ptr<const Kernel> compile_uncached(const LayerSpec &spec, const Halide::Target &target,
                                               const ScheduleParams &params) {
    std::lock_guard<std::mutex> lock(compile_mutex());
    try {
        const WeightLayout layout = weight_layout_for(spec, params);
        LayerAlgorithm alg = define_algorithm(spec, layout);
        apply_schedule(alg, params, target);
        // The `jit` feature links the kernel against the process-wide shared JIT runtime (one
        // thread pool, sized by set_num_threads) instead of a private runtime copy per kernel.
        const Halide::Target jit_target = target.with_feature(Halide::Target::JIT);
        Halide::Module module = alg.pipeline().compile_to_module(alg.arguments(), "convgen_kernel", jit_target);
        auto jit = std::make_shared<Halide::Internal::JITModule>(module, module.get_function_by_name("convgen_kernel"));
        auto entry = reinterpret_cast<KernelEntry>(jit->argv_function());
        apply_thread_count_locked();
        KernelInfo info{spec, target.to_string(), params.to_string(), "jit", layout};
        return std::make_shared<const Kernel>(entry, std::move(info), std::static_pointer_cast<void>(jit));
    } catch (const Halide::Error &e) {
        throw Error("Halide failed to compile '" + spec.to_string() + "' for " + target.to_string() + ": " + e.what());
    }
}

}  // namespace

std::string host_target_string() { return Halide::get_host_target().to_string(); }

std::string canonical_target(const std::string &target) { return parse_target(target).to_string(); }

CompiledKernel jit_compile(const LayerSpec &spec, const CompileOptions &options) {
    validate(spec);
    const Halide::Target target = parse_target(options.target);
    check_runnable_on_host(target);
    const ScheduleParams params = schedule_for(spec, options, target);
    const std::string key = spec.to_string() + "|" + target.to_string() + "|" + params.to_string();

    std::shared_ptr<CacheEntry> entry;
    {
        std::lock_guard<std::mutex> lock(g_cache_mutex);
        auto &slot = g_cache[key];
        if (!slot) slot = std::make_shared<CacheEntry>();
        entry = slot;
    }
    std::lock_guard<std::mutex> lock(entry->mutex);
    CompiledKernel result;
    if (entry->kernel) {
        result.kernel = entry->kernel;
        result.from_cache = true;
        return result;
    }
    const auto t0 = std::chrono::steady_clock::now();
    entry->kernel = compile_uncached(spec, target, params);
    result.kernel = entry->kernel;
    result.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

std::string explain(const LayerSpec &spec, const CompileOptions &options) {
    validate(spec);
    const Halide::Target target = parse_target(options.target);
    const ScheduleParams params = schedule_for(spec, options, target);
    std::ostringstream os;
    os << "spec:     " << spec.to_string() << "\n";
    os << "target:   " << target.to_string() << " (ISA family " << isa_family_name(isa_family_of(target)) << ")\n";
    os << "schedule: " << params.to_string() << (options.has_schedule ? " (given)" : " (heuristic)") << "\n";
    os << "weights:  " << weight_layout_name(weight_layout_for(spec, params)) << " layout\n";
    os << "macs:     " << spec.macs() << "\n";
    os << "loop nest:\n";
    std::lock_guard<std::mutex> lock(compile_mutex());
    try {
        LayerAlgorithm alg = define_algorithm(spec, weight_layout_for(spec, params));
        apply_schedule(alg, params, target);
        // Halide 14 prints the loop nest through its debug stream (std::cerr); capture it.
        std::ostringstream nest;
        std::streambuf *old = std::cerr.rdbuf(nest.rdbuf());
        try {
            alg.output.print_loop_nest();
        } catch (...) {
            std::cerr.rdbuf(old);
            throw;
        }
        std::cerr.rdbuf(old);
        os << nest.str();
    } catch (const Halide::Error &e) {
        throw Error("Halide failed to schedule '" + spec.to_string() + "': " + e.what());
    }
    return os.str();
}

void write_assembly(const LayerSpec &spec, const CompileOptions &options, const std::string &path) {
    validate(spec);
    const Halide::Target target = parse_target(options.target);
    const ScheduleParams params = schedule_for(spec, options, target);
    std::lock_guard<std::mutex> lock(compile_mutex());
    try {
        LayerAlgorithm alg = define_algorithm(spec, weight_layout_for(spec, params));
        apply_schedule(alg, params, target);
        alg.pipeline().compile_to_assembly(path, alg.arguments(), "convgen_kernel", target);
    } catch (const Halide::Error &e) {
        throw Error("Halide failed to compile '" + spec.to_string() + "' for " + target.to_string() + ": " + e.what());
    }
}

void set_num_threads(int threads) {
    if (threads < 0) throw Error("thread count must be >= 0 (got " + std::to_string(threads) + ")");
    std::lock_guard<std::mutex> lock(compile_mutex());
    g_requested_threads = threads;
    apply_thread_count_locked();
}

}  // namespace convgen
