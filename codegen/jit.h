// The JIT: compiles a LayerSpec for a Halide target with a schedule and caches the result by
// (normalised spec, target, schedule), in memory and on disk (codegen/jit_disk_cache.h: a later
// process loads the stored shared library instead of compiling again). Safe to use from several
// threads: compilation of one key happens once; running needs no lock.
//
// Environment (read at every jit_compile):
//   CONVGEN_DISK_CACHE=0     no disk cache (as CompileOptions::disk_cache = false)
//   CONVGEN_CACHE_DIR=<dir>  the disk cache directory; default $XDG_CACHE_HOME/convgen, else
//                            $HOME/.cache/convgen
//   CONVGEN_CXX=<cmd>        the compiler driver that links cached kernels (default c++)
//   CONVGEN_VERBOSE=1        say on stderr why a disk entry was rejected or rebuilt
#pragma once

#include <memory>
#include <string>

#include "dsl/layer_spec.h"
#include "runtime/kernel.h"
#include "schedules/schedule_db.h"
#include "schedules/schedule_params.h"

namespace convgen {

struct CompileOptions {
    std::string target;  // Halide target string; empty = the host (host_target_string())
    // Schedule parameters; when absent the heuristic for the target's ISA family is used.
    bool has_schedule = false;
    ScheduleParams schedule;
    // Use the persistent disk cache (if the environment does not turn it off).
    bool disk_cache = true;
    // Without a given schedule, the schedule database is consulted (schedules/schedule_db.h):
    // this path, or when empty $CONVGEN_SCHEDULE_DB, else the checked-in schedules/db/default.json.
    std::string schedule_db;
    bool use_schedule_db = true;
    // The thread count the database schedule is chosen for (records are per thread count);
    // 0: the count given to set_num_threads, else one per core.
    int threads = 0;
};

struct CompiledKernel {
    std::shared_ptr<const Kernel> kernel;
    double compile_seconds = 0;  // time to get the kernel (compile, or load from disk); 0 from the in-memory cache
    bool from_cache = false;      // served from this process's in-memory cache
    bool from_disk_cache = false;  // loaded from the disk cache without compiling
    // How the disk cache took part, one line: "hit", "built", "rebuilt: <why the old entry was
    // rejected>", "off: <why>", "unavailable: <why>" (compiled in memory), or "" (in-memory hit).
    std::string disk_cache_note;
};

// The disk cache the current environment selects.
struct DiskCacheInfo {
    bool enabled = false;
    std::string dir;     // when enabled (created on first use)
    std::string reason;  // when not
};
DiskCacheInfo jit_disk_cache_info();

// The host target as convgen uses it (features spelled out).
std::string host_target_string();

// Resolves target text (or "host"/empty) to a canonical Halide target string; throws convgen::Error.
std::string canonical_target(const std::string &target);

CompiledKernel jit_compile(const LayerSpec &spec, const CompileOptions &options = {});

// The schedule jit_compile would use for `spec`, and where it comes from (given, tuned record,
// fallback record, adapted neighbour, heuristic). Throws convgen::Error on an unreadable database.
ScheduleLookup resolve_schedule(const LayerSpec &spec, const CompileOptions &options = {});

// What `convgen explain` prints: normalised spec, target, schedule, Halide's loop nest.
std::string explain(const LayerSpec &spec, const CompileOptions &options = {});

// Writes the kernel's assembly for the options' target (any target, not only the host) to `path`.
void write_assembly(const LayerSpec &spec, const CompileOptions &options, const std::string &path);

// Sizes the Halide thread pool of JIT-compiled kernels (0 = Halide's default: one per core).
void set_num_threads(int threads);

// For the forked child of a multi-threaded process (the tuner tries each new candidate in one):
// makes the Halide runtimes of the kernels compiled or loaded so far run parallel loops on the
// calling thread, task after task. The child has only the thread that forked; Halide's thread
// pool would hand tasks to workers that are not there, and wait on its lock if a worker held it
// at the fork. Takes no lock and allocates nothing, so it is safe to call there. Never call it in
// a process that goes on running kernels on several threads.
void run_parallel_loops_serially();

}  // namespace convgen
