#include "codegen/jit.h"

#include <Halide.h>
#include <sys/stat.h>

#include <thread>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include "codegen/jit_disk_cache.h"
#include "dsl/algorithms.h"
#include "runtime/cpu.h"
#include "runtime/errors.h"
#include "runtime/kernel_allocator.h"
#include "runtime/memory_budget.h"
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

// The shared JIT runtime's halide_set_custom_do_par_for, found when the first kernel is compiled
// (looking it up takes Halide's locks; run_parallel_loops_serially must not).
using SetCustomDoParFor = halide_do_par_for_t (*)(halide_do_par_for_t);
std::atomic<SetCustomDoParFor> g_jit_set_custom_do_par_for{nullptr};

// Every task of a parallel loop, in order, on the calling thread.
int do_par_for_serially(void *user_context, halide_task_t task, int min, int size, uint8_t *closure) {
    for (int i = min; i < min + size; ++i) {
        if (const int rc = task(user_context, i, closure)) return rc;
    }
    return 0;
}

// CPU features that make code unrunnable on a host that lacks them.
const Halide::Target::Feature kCpuFeatures[] = {
    Halide::Target::SSE41,          Halide::Target::AVX,           Halide::Target::AVX2,
    Halide::Target::FMA,            Halide::Target::FMA4,          Halide::Target::F16C,
    Halide::Target::AVX512,         Halide::Target::AVX512_KNL,    Halide::Target::AVX512_Skylake,
    Halide::Target::AVX512_Cannonlake, Halide::Target::AVX512_SapphireRapids, Halide::Target::ARMDotProd,
    Halide::Target::ARMFp16,        Halide::Target::SVE,           Halide::Target::SVE2,
};

// Halide's host target less the CPU features convgen's own cpuid check says this host cannot run.
// Halide 14 gives avx512_sapphirerapids to any CPU with AVX512-VNNI and AVX512-BF16, but its code
// for that target uses AVX-VNNI (VEX vpdpwssd in index arithmetic), which a Zen 4 lacks: JIT
// kernels died with SIGILL on an AMD EPYC family 25 model 17. Features convgen does not know
// are left as Halide detected them.
Halide::Target jit_host_target() {
    static const Halide::Target host = [] {
        Halide::Target t = Halide::get_host_target();
        const std::string base = Halide::Target(t.os, t.arch, t.bits).to_string();
        for (auto f : kCpuFeatures) {
            if (!t.has_feature(f)) continue;
            const TargetRequirements need = target_requirements(base + "-" + Halide::Target::feature_to_name(f));
            if (need.unknown.empty() && !why_not_runnable(need, host_cpu()).empty()) t = t.without_feature(f);
        }
        return t;
    }();
    return host;
}

Halide::Target parse_target(const std::string &text) {
    if (text.empty() || text == "host") return jit_host_target();
    if (!Halide::Target::validate_target_string(text)) {
        throw Error("target '" + text + "' is not a valid Halide target (e.g. x86-64-linux-avx-avx2-f16c-fma-sse41, arm-64-linux)");
    }
    return Halide::Target(text);
}

// The JIT runs code in this process, so its target must be one the host CPU can execute.
void check_runnable_on_host(const Halide::Target &t) {
    const Halide::Target host = jit_host_target();
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

// Databases are read once per (path, modification time) and shared by every compile.
std::shared_ptr<const ScheduleDb> load_schedule_db(const std::string &path) {
    static std::mutex mutex;
    static std::map<std::string, std::pair<int64_t, std::shared_ptr<const ScheduleDb>>> loaded;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw Error("schedule database '" + path + "' does not exist");
    const int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    std::lock_guard<std::mutex> lock(mutex);
    auto &slot = loaded[path];
    if (!slot.second || slot.first != mtime) slot = {mtime, std::make_shared<const ScheduleDb>(ScheduleDb::load(path))};
    return slot.second;
}

ScheduleLookup schedule_lookup(const LayerSpec &spec, const CompileOptions &options, const Halide::Target &target) {
    if (options.has_schedule) {
        ScheduleLookup given;
        given.params = options.schedule;
        given.source = ScheduleSource::Given;
        return given;
    }
    const std::string path = options.use_schedule_db ? (options.schedule_db.empty() ? default_schedule_db_path() : options.schedule_db) : "";
    std::shared_ptr<const ScheduleDb> db;
    if (!path.empty()) db = load_schedule_db(path);
    const int requested = options.threads > 0 ? options.threads : g_requested_threads.load();
    const int threads = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return lookup_schedule(db.get(), path, spec, target.to_string(), isa_family_of(target), threads, /*runs_on_this_host=*/true);
}

ScheduleParams schedule_for(const LayerSpec &spec, const CompileOptions &options, const Halide::Target &target) {
    return schedule_lookup(spec, options, target).params;
}

// Once per process, when the shared JIT runtime exists: remembers its halide_set_custom_do_par_for
// and gives its kernels convgen's allocator (runtime/kernel_allocator.h).
void remember_jit_runtime_hooks_locked() {
    if (g_jit_set_custom_do_par_for.load()) return;
    using SetCustomMalloc = halide_malloc_t (*)(halide_malloc_t);
    using SetCustomFree = halide_free_t (*)(halide_free_t);
    void *par_for = nullptr, *set_malloc = nullptr, *set_free = nullptr;
    for (auto &module : Halide::Internal::JITSharedRuntime::get(nullptr, jit_host_target(), false)) {
        if (!par_for) par_for = module.find_symbol_by_name("halide_set_custom_do_par_for").address;
        if (!set_malloc) set_malloc = module.find_symbol_by_name("halide_set_custom_malloc").address;
        if (!set_free) set_free = module.find_symbol_by_name("halide_set_custom_free").address;
    }
    if (!par_for || !set_malloc || !set_free) throw Error("Halide's JIT runtime lacks halide_set_custom_do_par_for, _malloc or _free");
    reinterpret_cast<SetCustomMalloc>(set_malloc)(kernel_malloc);
    reinterpret_cast<SetCustomFree>(set_free)(kernel_free);
    g_jit_set_custom_do_par_for = reinterpret_cast<SetCustomDoParFor>(par_for);
}

void apply_thread_count_locked() {
    const int threads = g_requested_threads.load();
    if (threads < 0) return;
    auto runtime = Halide::Internal::JITSharedRuntime::get(nullptr, jit_host_target(), false);
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
        LayerAlgorithm alg = define_algorithm(spec, layout, {}, output_transpose_for(spec, params));
        apply_schedule(alg, params, target);
        // The `jit` feature links the kernel against the process-wide shared JIT runtime (one
        // thread pool, sized by set_num_threads) instead of a private runtime copy per kernel.
        const Halide::Target jit_target = target.with_feature(Halide::Target::JIT);
        Halide::Module module = alg.pipeline().compile_to_module(alg.arguments(), "convgen_kernel", jit_target);
        auto jit = std::make_shared<Halide::Internal::JITModule>(module, module.get_function_by_name("convgen_kernel"));
        auto entry = reinterpret_cast<KernelEntry>(jit->argv_function());
        apply_thread_count_locked();
        remember_jit_runtime_hooks_locked();
        KernelInfo info{spec, target.to_string(), params.to_string(), "jit", layout};
        return std::make_shared<const Kernel>(entry, std::move(info), std::static_pointer_cast<void>(jit));
    } catch (const Halide::Error &e) {
        throw Error("Halide failed to compile '" + spec.to_string() + "' for " + target.to_string() + ": " + e.what());
    }
}

bool verbose() {
    const char *v = std::getenv("CONVGEN_VERBOSE");
    return v && std::string(v) != "0" && std::string(v) != "";
}

// The disk cache's stored kernels are AOT objects of the same pipeline (no `jit` feature, no
// runtime: the one disk Halide runtime of the process provides it), linked into shared libraries.
// Sets `note`; returns null when the disk cache is off or unusable (then compile in memory).
std::shared_ptr<const Kernel> load_or_build_on_disk(const LayerSpec &spec, const Halide::Target &target,
                                                    const ScheduleParams &params, bool *from_disk, std::string *note) {
    const disk_cache::Location loc = disk_cache::configured_location();
    if (!loc.enabled) {
        *note = "off: " + loc.reason;
        return nullptr;
    }
    const Halide::Target aot_target = target.without_feature(Halide::Target::JIT).without_feature(Halide::Target::NoRuntime);
    const std::string versions = disk_cache::versions_text();
    disk_cache::Request request;
    request.dir = loc.dir;
    request.key = spec.to_string() + "|" + target.to_string() + "|" + params.to_string() + "|" + versions;
    request.runtime_key = "halide_runtime|" + aot_target.to_string() + "|" + disk_cache::halide_version_text();
    request.write_kernel_object = [&](const std::string &path) {
        std::lock_guard<std::mutex> lock(compile_mutex());
        try {
            LayerAlgorithm alg = define_algorithm(spec, weight_layout_for(spec, params), {}, output_transpose_for(spec, params));
            apply_schedule(alg, params, target);
            alg.pipeline().compile_to_object(path, alg.arguments(), "convgen_kernel",
                                             aot_target.with_feature(Halide::Target::NoRuntime));
        } catch (const Halide::Error &e) {
            throw Error("Halide failed to compile '" + spec.to_string() + "' for " + target.to_string() + ": " + e.what());
        }
    };
    request.write_runtime_object = [&](const std::string &path) {
        std::lock_guard<std::mutex> lock(compile_mutex());
        try {
            Halide::compile_standalone_runtime(path, aot_target);
        } catch (const Halide::Error &e) {
            throw Error("Halide failed to compile its runtime for " + aot_target.to_string() + ": " + e.what());
        }
    };
    disk_cache::Result r;
    try {
        r = disk_cache::load_or_build(request);
    } catch (const Error &e) {
        // Halide could not write the object (e.g. a full disk). Try in memory: a genuine compile
        // error will be reported from there.
        r.status = disk_cache::Result::Status::Unavailable;
        r.note = e.what();
    }
    if (r.status == disk_cache::Result::Status::Unavailable) {
        *note = "unavailable: " + r.note;
        if (verbose()) std::fprintf(stderr, "convgen: disk cache: %s; compiling in memory\n", r.note.c_str());
        return nullptr;
    }
    *from_disk = r.status == disk_cache::Result::Status::Hit;
    *note = r.note;
    KernelInfo info{spec, target.to_string(), params.to_string(), "jit", weight_layout_for(spec, params)};
    return std::make_shared<const Kernel>(r.entry, std::move(info), r.keep_alive);
}

}  // namespace

std::string host_target_string() { return jit_host_target().to_string(); }

std::string canonical_target(const std::string &target) { return parse_target(target).to_string(); }

ScheduleLookup resolve_schedule(const LayerSpec &spec, const CompileOptions &options) {
    validate(spec);
    return schedule_lookup(spec, options, parse_target(options.target));
}

CompiledKernel jit_compile(const LayerSpec &spec, const CompileOptions &options) {
    validate(spec);
    check_memory_budget(spec);
    const Halide::Target target = parse_target(options.target);
    check_runnable_on_host(target);
    const ScheduleParams params = schedule_for(spec, options, target);
    // Kernels from disk and from memory run the same code, but a caller that turns the disk cache
    // off gets an in-memory compile even when this process loaded the kernel from disk before.
    const std::string key =
        spec.to_string() + "|" + target.to_string() + "|" + params.to_string() + (options.disk_cache ? "|disk" : "|memory");

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
    std::shared_ptr<const Kernel> kernel;
    if (options.disk_cache) {
        kernel = load_or_build_on_disk(spec, target, params, &result.from_disk_cache, &result.disk_cache_note);
    } else {
        result.disk_cache_note = "off: CompileOptions::disk_cache is false";
    }
    if (!kernel) kernel = compile_uncached(spec, target, params);
    entry->kernel = kernel;
    result.kernel = entry->kernel;
    result.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

std::string explain(const LayerSpec &spec, const CompileOptions &options) {
    validate(spec);
    const Halide::Target target = parse_target(options.target);
    const ScheduleLookup lookup = schedule_lookup(spec, options, target);
    const ScheduleParams &params = lookup.params;
    std::ostringstream os;
    os << "spec:     " << spec.to_string() << "\n";
    os << "target:   " << target.to_string() << " (ISA family " << isa_family_name(isa_family_of(target)) << ")\n";
    os << "schedule: " << params.to_string() << " (" << schedule_source_name(lookup.source)
       << (lookup.detail.empty() ? "" : ": " + lookup.detail) << ")\n";
    os << "weights:  " << weight_layout_name(weight_layout_for(spec, params)) << " layout\n";
    os << "macs:     " << spec.macs() << "\n";
    os << "loop nest:\n";
    std::lock_guard<std::mutex> lock(compile_mutex());
    try {
        LayerAlgorithm alg = define_algorithm(spec, weight_layout_for(spec, params), {}, output_transpose_for(spec, params));
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
        LayerAlgorithm alg = define_algorithm(spec, weight_layout_for(spec, params), {}, output_transpose_for(spec, params));
        apply_schedule(alg, params, target);
        alg.pipeline().compile_to_assembly(path, alg.arguments(), "convgen_kernel", target);
    } catch (const Halide::Error &e) {
        throw Error("Halide failed to compile '" + spec.to_string() + "' for " + target.to_string() + ": " + e.what());
    }
}

void set_num_threads(int threads) {
    if (threads < 0) throw Error("thread count must be >= 0 (got " + std::to_string(threads) + ")");
    {
        std::lock_guard<std::mutex> lock(compile_mutex());
        g_requested_threads = threads;
        apply_thread_count_locked();
    }
    // The disk kernels' runtime, now or once it is loaded (lock-free; outside compile_mutex, which
    // the disk cache takes while it holds its own runtime lock).
    disk_cache::set_num_threads(threads);
}

void run_parallel_loops_serially() {
    if (SetCustomDoParFor set = g_jit_set_custom_do_par_for.load()) set(do_par_for_serially);
    disk_cache::set_custom_do_par_for(do_par_for_serially);
}

DiskCacheInfo jit_disk_cache_info() {
    const disk_cache::Location loc = disk_cache::configured_location();
    DiskCacheInfo info;
    info.enabled = loc.enabled;
    info.dir = loc.dir;
    info.reason = loc.reason;
    return info;
}

}  // namespace convgen
