// The JIT's persistent disk cache: each JIT-compiled kernel is kept as a shared library, so that a
// later process loads it (dlopen) instead of compiling it again. No Halide here: jit.cc supplies
// callbacks that write the object files; this file stores, verifies, links and loads them.
//
// Layout of the cache directory (see configured_location() for where it is):
//   <h>.so, <h>.meta        one kernel; h = xxhash64 of the entry's key (spec|target|schedule|versions)
//   halide_runtime-<h>.so/.meta   the Halide runtime the kernels link against (one per target+versions);
//                           loaded RTLD_GLOBAL before any kernel, so all disk kernels share one thread pool
//   <name>.lock             flock()ed while an entry is (re)built, so racing processes build it once
//   .tmp-<name>-<pid>-<n>.* files being written; renamed into place when complete
// A .meta file holds the format version, the full key, and the size and xxhash64 of the .so; an
// entry whose meta is unreadable, whose key differs (a foreign entry or hash collision), whose .so
// has another size or hash, or that fails to load is deleted and rebuilt.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/kernel.h"

namespace convgen {
namespace disk_cache {

// Bumped whenever the files' format or meaning changes; part of every key.
constexpr int kFormatVersion = 1;

// Where the cache is for the current environment, or why there is none:
//   CONVGEN_DISK_CACHE=0           off
//   CONVGEN_CACHE_DIR=<dir>        that directory
//   XDG_CACHE_HOME=<abs dir>       <dir>/convgen
//   HOME=<dir>                     <dir>/.cache/convgen
struct Location {
    bool enabled = false;
    std::string dir;     // as configured; created on first use
    std::string reason;  // why not, when !enabled
};
Location configured_location();

// The version text that is part of every key: convgen's version and a hash of the sources that
// define the generated code (so an edited algorithm or schedule never loads a stale kernel), and
// Halide's version.
std::string versions_text();
// Halide's version and the cache format only: the part of versions_text() a Halide runtime
// depends on (it does not change with convgen's sources).
std::string halide_version_text();

struct Request {
    std::string dir;          // from configured_location()
    std::string key;          // the kernel's full identity (one line)
    std::string runtime_key;  // the identity of the Halide runtime it needs (one line)
    // Write an object file of the kernel (Halide `no_runtime`, exporting convgen_kernel_argv) or of
    // the standalone Halide runtime to the given path. Exceptions propagate to the caller.
    std::function<void(const std::string &path)> write_kernel_object;
    std::function<void(const std::string &path)> write_runtime_object;
};

struct Result {
    enum class Status {
        Hit,          // loaded an existing valid entry
        Built,        // compiled, stored and loaded (`note` says why an old entry was replaced)
        Unavailable,  // the cache cannot be used for this kernel: compile in memory (`note` says why)
    };
    Status status = Status::Unavailable;
    KernelEntry entry = nullptr;
    std::shared_ptr<void> keep_alive;  // the dlopen handle (never closed)
    std::string note;                  // one line for CONVGEN_VERBOSE and tests
};

// Returns the kernel of `request.key` from the cache, building and storing it on a miss or when
// the entry is invalid. Never throws for cache problems (a bad directory, a missing linker, a
// corrupt file): those give Status::Unavailable, after printing one warning line to stderr per
// process for problems of the directory or toolchain. Exceptions from the write callbacks (a
// Halide compile error) propagate.
Result load_or_build(const Request &request);

// Remembers the Halide thread pool size and passes it to the disk runtime (now if loaded, else
// when it is loaded). 0 = Halide's default.
void set_num_threads(int threads);

// Halide's halide_do_par_for_t, spelled out (no Halide headers here).
using DoParFor = int (*)(void *user_context, int (*task)(void *, int, uint8_t *), int min, int size, uint8_t *closure);

// Makes the loaded disk runtime (if one is loaded) hand its parallel loops to `fn`. Takes no lock
// and allocates nothing, so a forked child of a multi-threaded process may call it.
void set_custom_do_par_for(DoParFor fn);

// xxhash64 of the bytes, as 16 lowercase hex digits.
std::string xxh64_hex(const void *data, size_t size);
inline std::string xxh64_hex(const std::string &s) { return xxh64_hex(s.data(), s.size()); }

// The file names of an entry (without directory): "<xxh64 of key>" for kernels and
// "halide_runtime-<xxh64 of key>" for runtimes; add ".so" / ".meta".
std::string kernel_entry_name(const std::string &key);
std::string runtime_entry_name(const std::string &runtime_key);

// The meta file text for a key and .so bytes (exposed so tests can write consistent entries).
std::string meta_text(const std::string &key, uint64_t so_size, const std::string &so_xxh64);

}  // namespace disk_cache
}  // namespace convgen
