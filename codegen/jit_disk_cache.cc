#include "codegen/jit_disk_cache.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "codegen/convgen_source_hash.h"  // generated: CONVGEN_SOURCE_HASH
#include "runtime/kernel_allocator.h"

extern char **environ;

#ifndef CONVGEN_VERSION
#define CONVGEN_VERSION "unknown"
#endif
#ifndef CONVGEN_HALIDE_VERSION
#define CONVGEN_HALIDE_VERSION "unknown"
#endif

namespace convgen {
namespace disk_cache {

namespace {

constexpr const char *kKernelSymbol = "convgen_kernel_argv";
constexpr size_t kMaxMetaBytes = 64 * 1024;
constexpr uint64_t kMaxSoBytes = uint64_t(1) << 30;

std::string env(const char *name) {
    const char *v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

bool verbose() {
    const std::string v = env("CONVGEN_VERBOSE");
    return !v.empty() && v != "0";
}

void log_verbose(const std::string &line) {
    if (verbose()) std::fprintf(stderr, "convgen: disk cache: %s\n", line.c_str());
}

std::string errno_text(int err) { return std::strerror(err); }

// ---- Process-wide state.

std::mutex g_state_mutex;
bool g_warned = false;
std::map<std::string, std::string> g_bad_dirs;  // dir -> why the cache is off for it

// One warning line per process, however many directories or kernels fail.
void disable_dir(const std::string &dir, const std::string &why) {
    std::lock_guard<std::mutex> lock(g_state_mutex);
    g_bad_dirs.emplace(dir, why);
    if (!g_warned) {
        g_warned = true;
        std::fprintf(stderr, "convgen: warning: JIT disk cache disabled: %s\n", why.c_str());
    }
}

bool dir_is_bad(const std::string &dir, std::string *why) {
    std::lock_guard<std::mutex> lock(g_state_mutex);
    auto it = g_bad_dirs.find(dir);
    if (it == g_bad_dirs.end()) return false;
    *why = it->second;
    return true;
}

// Thrown inside this file for problems of the directory or toolchain (not of one entry).
struct EnvironmentError {
    std::string why;
};

// ---- Files.

bool mkdir_p(const std::string &dir, std::string *why) {
    if (dir.empty()) {
        *why = "empty cache directory name";
        return false;
    }
    std::string path;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        path = dir.substr(0, pos);
        if (path.empty()) continue;
        if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
            *why = "cannot create '" + path + "': " + errno_text(errno);
            return false;
        }
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        *why = "'" + dir + "' is not a directory";
        return false;
    }
    return true;
}

bool exists(const std::string &path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

// Removes a file or, for hostile entries, an empty directory; errors are ignored (the next
// write reports them).
void remove_path(const std::string &path) {
    if (::unlink(path.c_str()) != 0 && (errno == EISDIR || errno == EPERM)) ::rmdir(path.c_str());
}

// Reads a regular file of at most `max_bytes`; false (with why) otherwise.
bool read_small_file(const std::string &path, size_t max_bytes, std::string *out, std::string *why) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *why = errno == ENOENT ? "missing" : "unreadable (" + errno_text(errno) + ")";
        return false;
    }
    struct stat st;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= max_bytes;
    if (!ok) *why = "not a small regular file";
    out->clear();
    char buf[4096];
    while (ok) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *why = "read error (" + errno_text(errno) + ")";
            ok = false;
        } else if (n == 0) {
            break;
        } else {
            out->append(buf, static_cast<size_t>(n));
            if (out->size() > max_bytes) {
                *why = "too large";
                ok = false;
            }
        }
    }
    ::close(fd);
    return ok;
}

bool write_file(const std::string &path, const std::string &data, std::string *why) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *why = "cannot create '" + path + "': " + errno_text(errno);
        return false;
    }
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *why = "cannot write '" + path + "': " + errno_text(errno);
            ::close(fd);
            return false;
        }
        done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) {
        *why = "cannot write '" + path + "': " + errno_text(errno);
        return false;
    }
    return true;
}

// Size and xxhash64 of a regular file; false when it is not one or cannot be read.
bool hash_file(const std::string &path, uint64_t *size, std::string *hex, std::string *why) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *why = errno == ENOENT ? "missing" : "unreadable (" + errno_text(errno) + ")";
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        *why = "not a regular file";
        return false;
    }
    *size = static_cast<uint64_t>(st.st_size);
    if (*size == 0 || *size > kMaxSoBytes) {
        ::close(fd);
        *why = "size " + std::to_string(*size);
        return false;
    }
    void *p = ::mmap(nullptr, static_cast<size_t>(*size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) {
        *why = "cannot map (" + errno_text(errno) + ")";
        return false;
    }
    *hex = xxh64_hex(p, static_cast<size_t>(*size));
    ::munmap(p, static_cast<size_t>(*size));
    return true;
}

// ---- Meta files.

struct Meta {
    std::string key;
    uint64_t so_size = 0;
    std::string so_xxh64;
};

const char *kMetaHeader = "convgen-jit-disk-cache";

bool parse_meta(const std::string &text, Meta *meta, std::string *why) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        const size_t nl = text.find('\n', start);
        if (nl == std::string::npos) {
            *why = "garbage meta (no final newline)";
            return false;
        }
        lines.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    const std::string header = std::string(kMetaHeader) + " " + std::to_string(kFormatVersion);
    if (lines.size() != 4 || lines[0] != header) {
        *why = lines.empty() || lines[0].rfind(kMetaHeader, 0) != 0 ? "garbage meta" : "meta of another format version";
        return false;
    }
    auto field = [&](const std::string &line, const char *name, std::string *value) {
        const std::string prefix = std::string(name) + "=";
        if (line.compare(0, prefix.size(), prefix) != 0) return false;
        *value = line.substr(prefix.size());
        return true;
    };
    std::string size_text;
    if (!field(lines[1], "key", &meta->key) || !field(lines[2], "so_size", &size_text) ||
        !field(lines[3], "so_xxh64", &meta->so_xxh64)) {
        *why = "garbage meta (fields)";
        return false;
    }
    if (size_text.empty() || size_text.size() > 19 || size_text.find_first_not_of("0123456789") != std::string::npos) {
        *why = "garbage meta (size)";
        return false;
    }
    meta->so_size = std::stoull(size_text);
    if (meta->so_xxh64.size() != 16 || meta->so_xxh64.find_first_not_of("0123456789abcdef") != std::string::npos) {
        *why = "garbage meta (hash)";
        return false;
    }
    return true;
}

// ---- Entries.

enum class Check { Valid, Missing, Invalid };

// Whether <dir>/<name>.{so,meta} is a complete entry for `key`; `why` says what is wrong.
Check check_entry(const std::string &dir, const std::string &name, const std::string &key, std::string *why) {
    const std::string meta_path = dir + "/" + name + ".meta";
    const std::string so_path = dir + "/" + name + ".so";
    std::string text, err;
    if (!read_small_file(meta_path, kMaxMetaBytes, &text, &err)) {
        if (err == "missing") {
            if (!exists(so_path)) return Check::Missing;
            *why = ".so without meta";
            return Check::Invalid;
        }
        *why = "meta " + err;
        return Check::Invalid;
    }
    Meta meta;
    if (!parse_meta(text, &meta, why)) return Check::Invalid;
    if (meta.key != key) {
        *why = "foreign entry (its key is '" + meta.key.substr(0, 200) + "')";
        return Check::Invalid;
    }
    uint64_t size = 0;
    std::string hex;
    if (!hash_file(so_path, &size, &hex, &err)) {
        *why = ".so " + err;
        return Check::Invalid;
    }
    if (size != meta.so_size) {
        *why = ".so has " + std::to_string(size) + " bytes, meta says " + std::to_string(meta.so_size) + " (truncated or replaced)";
        return Check::Invalid;
    }
    if (hex != meta.so_xxh64) {
        *why = ".so content hash " + hex + " differs from meta's " + meta.so_xxh64 + " (corrupt)";
        return Check::Invalid;
    }
    return Check::Valid;
}

// An exclusive flock() on <dir>/<name>.lock for as long as it lives. Filesystems without flock
// give no lock (the build still works: writes are atomic renames), but then stale temporary
// files are left alone since another process might be writing them.
class EntryLock {
public:
    EntryLock(const std::string &dir, const std::string &name) {
        const std::string path = dir + "/" + name + ".lock";
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd_ < 0) throw EnvironmentError{"cannot create '" + path + "': " + errno_text(errno)};
        int rc;
        do rc = ::flock(fd_, LOCK_EX);
        while (rc != 0 && errno == EINTR);
        locked_ = rc == 0;
    }
    ~EntryLock() {
        if (fd_ >= 0) ::close(fd_);  // releases the lock
    }
    EntryLock(const EntryLock &) = delete;
    EntryLock &operator=(const EntryLock &) = delete;
    bool locked() const { return locked_; }

private:
    int fd_ = -1;
    bool locked_ = false;
};

std::string temp_prefix(const std::string &name) { return ".tmp-" + name + "-"; }

// Deletes temporary files a crashed or killed writer of this entry left behind (only called with
// the entry's lock held, so no live writer owns them), and those of other entries once they are a
// day old.
void remove_stale_temps(const std::string &dir, const std::string &name) {
    const std::string own = temp_prefix(name);
    const time_t now = ::time(nullptr);
    std::vector<std::string> stale;
    if (DIR *d = ::opendir(dir.c_str())) {
        while (struct dirent *e = ::readdir(d)) {
            const std::string file = e->d_name;
            struct stat st;
            if (file.compare(0, own.size(), own) == 0) {
                stale.push_back(file);
            } else if (file.compare(0, 5, ".tmp-") == 0 && ::lstat((dir + "/" + file).c_str(), &st) == 0 &&
                       now - st.st_mtime > 24 * 3600) {
                stale.push_back(file);
            }
        }
        ::closedir(d);
    }
    for (const auto &file : stale) {
        log_verbose("removing stale temporary file " + dir + "/" + file);
        remove_path(dir + "/" + file);
    }
}

// Temporary files of one build; deleted unless renamed into place.
class TempFiles {
public:
    TempFiles(const std::string &dir, const std::string &name) {
        static std::atomic<unsigned> counter{0};
        base_ = dir + "/" + temp_prefix(name) + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    }
    ~TempFiles() {
        for (const auto &ext : {".o", ".so", ".meta"}) ::unlink((base_ + ext).c_str());
    }
    TempFiles(const TempFiles &) = delete;
    TempFiles &operator=(const TempFiles &) = delete;
    std::string path(const char *ext) const { return base_ + ext; }

private:
    std::string base_;
};

// ---- The linker.

std::vector<std::string> split_words(const std::string &s) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
        if (j > i) words.push_back(s.substr(i, j - i));
        i = j;
    }
    return words;
}

std::string one_line(std::string s, size_t max = 600) {
    for (char &c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    while (!s.empty() && s.back() == ' ') s.pop_back();
    if (s.size() > max) s = s.substr(0, max) + "...";
    return s;
}

// Runs the C++ compiler driver as the linker: `$CONVGEN_CXX` (words split at spaces) or `c++`,
// with stdout+stderr captured into the error. Throws EnvironmentError when it cannot run or fails.
void link_shared(const std::string &object, const std::string &output, const std::vector<std::string> &libs) {
    std::vector<std::string> args = split_words(env("CONVGEN_CXX"));
    if (args.empty()) args.push_back("c++");
    const std::string cxx = args[0];
    for (const char *a : {"-shared", "-Wl,--as-needed", "-Wl,-z,noexecstack", "-Wl,-Bsymbolic", "-o"}) args.push_back(a);
    args.push_back(output);
    args.push_back(object);
    args.insert(args.end(), libs.begin(), libs.end());
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw EnvironmentError{"cannot create a pipe: " + errno_text(errno)};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    pid_t pid = 0;
    const int spawn_rc = ::posix_spawnp(&pid, cxx.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (spawn_rc != 0) {
        ::close(fds[0]);
        throw EnvironmentError{"cannot run the linker '" + cxx + "' (" + errno_text(spawn_rc) + "; set CONVGEN_CXX)"};
    }
    std::string output_text;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (output_text.size() < 64 * 1024) output_text.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                  : "signal " + std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        throw EnvironmentError{"linking with '" + cxx + "' failed (" + how + "): " + one_line(output_text)};
    }
    if (!output_text.empty()) log_verbose("linker said: " + one_line(output_text));
}

// Compiles (callback), links and stores one entry; the entry's lock must be held. Throws
// EnvironmentError for directory/toolchain problems; callback exceptions propagate.
void build_entry(const std::string &dir, const std::string &name, const std::string &key,
                 const std::function<void(const std::string &)> &write_object, const std::vector<std::string> &libs) {
    TempFiles temp(dir, name);
    std::string why;
    // Probe writability before spending a compile on it.
    if (!write_file(temp.path(".meta"), "", &why)) throw EnvironmentError{why};
    ::unlink(temp.path(".meta").c_str());
    write_object(temp.path(".o"));
    link_shared(temp.path(".o"), temp.path(".so"), libs);
    uint64_t size = 0;
    std::string hex;
    if (!hash_file(temp.path(".so"), &size, &hex, &why)) throw EnvironmentError{"linker output " + why};
    if (!write_file(temp.path(".meta"), meta_text(key, size, hex), &why)) throw EnvironmentError{why};
    // Readers never see a new .so with the old meta as valid: the old meta goes first, then the
    // .so and the meta are renamed into place (each rename is atomic).
    const std::string so_path = dir + "/" + name + ".so", meta_path = dir + "/" + name + ".meta";
    remove_path(meta_path);
    if (exists(so_path)) {
        struct stat st;
        if (::lstat(so_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_path(so_path);
    }
    if (::rename(temp.path(".so").c_str(), so_path.c_str()) != 0)
        throw EnvironmentError{"cannot rename into '" + so_path + "': " + errno_text(errno)};
    if (::rename(temp.path(".meta").c_str(), meta_path.c_str()) != 0)
        throw EnvironmentError{"cannot rename into '" + meta_path + "': " + errno_text(errno)};
}

// Makes <dir>/<name> a valid entry for `key`: checks it, and if it is missing or invalid takes
// the entry's lock, checks again (another process may just have built it), removes stale
// temporary files and the invalid entry, and builds it. Returns "" when the entry was valid,
// else what was wrong ("missing" or the reason it was rebuilt).
std::string ensure_entry(const std::string &dir, const std::string &name, const std::string &key,
                         const std::function<void(const std::string &)> &write_object, const std::vector<std::string> &libs) {
    std::string why;
    Check c = check_entry(dir, name, key, &why);
    if (c == Check::Valid) return "";
    EntryLock lock(dir, name);
    std::string why_locked;
    c = check_entry(dir, name, key, &why_locked);
    if (c == Check::Valid) return "";  // built by another process meanwhile
    if (c == Check::Invalid) {
        log_verbose(name + ": " + why_locked + "; rebuilding");
        why = why_locked;
    } else {
        why = "missing";
    }
    if (lock.locked()) remove_stale_temps(dir, name);
    build_entry(dir, name, key, write_object, libs);
    return why;
}

// ---- The one disk Halide runtime of this process.

struct LoadedRuntime {
    std::string key;
    void *handle = nullptr;
};

using SetNumThreads = int (*)(int);

std::mutex g_runtime_mutex;
LoadedRuntime g_runtime;               // guarded by g_runtime_mutex
std::set<std::string> g_runtime_dirs;  // dirs known to hold a valid runtime entry (same key)
// Lock-free, so that set_num_threads never waits for a runtime being built: each side stores its
// value before reading the other's, so at least one of them applies the count.
std::atomic<SetNumThreads> g_runtime_set_num_threads{nullptr};
std::atomic<int> g_requested_threads{-1};  // -1: never set
using SetCustomDoParFor = DoParFor (*)(DoParFor);
std::atomic<SetCustomDoParFor> g_runtime_set_custom_do_par_for{nullptr};  // set once the runtime is loaded

// Ensures the runtime for `runtime_key` is loaded (RTLD_GLOBAL) and, when `store` is set, that
// `dir` holds a valid copy of it. Returns "" or why the cache cannot be used for this kernel.
std::string ensure_runtime(const Request &r, bool store) {
    std::lock_guard<std::mutex> lock(g_runtime_mutex);
    if (g_runtime.handle && g_runtime.key != r.runtime_key) {
        return "this process already loaded a disk-cached Halide runtime for another target";
    }
    if (g_runtime.handle && (!store || g_runtime_dirs.count(r.dir))) return "";
    const std::string name = runtime_entry_name(r.runtime_key);
    const std::string built = ensure_entry(r.dir, name, r.runtime_key, r.write_runtime_object, {"-lpthread", "-ldl", "-lm"});
    if (!built.empty()) log_verbose(name + ".so built (" + built + ")");
    g_runtime_dirs.insert(r.dir);
    if (g_runtime.handle) return "";

    const std::string path = r.dir + "/" + name + ".so";
    void *handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        const char *e = ::dlerror();
        // A valid-looking but unloadable runtime: delete it so the next process rebuilds it.
        remove_path(r.dir + "/" + name + ".meta");
        throw EnvironmentError{"cannot load the Halide runtime " + path + ": " + one_line(e ? e : "dlopen failed")};
    }
    // Kernels resolve halide_* symbols in the global scope; if another Halide runtime is already
    // there (an app exporting one), they would bind to it instead of this one.
    void *own = ::dlsym(handle, "halide_do_par_for");
    void *global = ::dlsym(RTLD_DEFAULT, "halide_do_par_for");
    if (!own || own != global) {
        throw EnvironmentError{"another Halide runtime is already visible to dynamically loaded code in this process"};
    }
    g_runtime.key = r.runtime_key;
    g_runtime.handle = handle;
    auto set_threads = reinterpret_cast<SetNumThreads>(::dlsym(handle, "halide_set_num_threads"));
    g_runtime_set_num_threads = set_threads;
    g_runtime_set_custom_do_par_for = reinterpret_cast<SetCustomDoParFor>(::dlsym(handle, "halide_set_custom_do_par_for"));
    // The kernels' scratch buffers come from convgen's allocator (runtime/kernel_allocator.h).
    using Malloc = void *(*)(void *, size_t);
    using Free = void (*)(void *, void *);
    auto set_malloc = reinterpret_cast<Malloc (*)(Malloc)>(::dlsym(handle, "halide_set_custom_malloc"));
    auto set_free = reinterpret_cast<Free (*)(Free)>(::dlsym(handle, "halide_set_custom_free"));
    if (!set_malloc || !set_free) throw EnvironmentError{"the Halide runtime " + path + " has no halide_set_custom_malloc/free"};
    set_malloc(kernel_malloc);
    set_free(kernel_free);
    const int threads = g_requested_threads.load();
    if (threads >= 0 && set_threads) set_threads(threads);
    return "";
}

Result unavailable(const std::string &why) {
    Result r;
    r.status = Result::Status::Unavailable;
    r.note = why;
    return r;
}

// dlopen + dlsym of a checked kernel entry; "" or why it failed.
std::string load_kernel(const std::string &path, Result *out) {
    void *handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = ::dlerror();
        return "dlopen failed: " + one_line(e ? e : "unknown error");
    }
    void *fn = ::dlsym(handle, kKernelSymbol);
    if (!fn) {
        // No live kernel can share this handle (it would have the symbol). Close it, or a later
        // dlopen of the rebuilt file at the same path would get this library back.
        ::dlclose(handle);
        return std::string("no symbol ") + kKernelSymbol;
    }
    out->entry = reinterpret_cast<KernelEntry>(fn);
    // The handle is deliberately never closed (kernels may be referenced by raw entry pointers
    // copied out of Kernel); keep_alive only documents the ownership.
    out->keep_alive = std::shared_ptr<void>(handle, [](void *) {});
    return "";
}

}  // namespace

std::string xxh64_hex(const void *data, size_t size) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH64(data, size, 0)));
    return buf;
}

std::string kernel_entry_name(const std::string &key) { return xxh64_hex(key); }
std::string runtime_entry_name(const std::string &runtime_key) { return "halide_runtime-" + xxh64_hex(runtime_key); }

std::string meta_text(const std::string &key, uint64_t so_size, const std::string &so_xxh64) {
    return std::string(kMetaHeader) + " " + std::to_string(kFormatVersion) + "\nkey=" + key +
           "\nso_size=" + std::to_string(so_size) + "\nso_xxh64=" + so_xxh64 + "\n";
}

std::string halide_version_text() {
    return std::string("Halide ") + CONVGEN_HALIDE_VERSION + " cache format " + std::to_string(kFormatVersion);
}

std::string versions_text() { return std::string("convgen ") + CONVGEN_VERSION + " src " + CONVGEN_SOURCE_HASH + " " + halide_version_text(); }

Location configured_location() {
    Location loc;
    const std::string off = env("CONVGEN_DISK_CACHE");
    if (off == "0" || off == "off" || off == "false" || off == "no") {
        loc.reason = "CONVGEN_DISK_CACHE=" + off;
        return loc;
    }
    std::string dir = env("CONVGEN_CACHE_DIR");
    if (dir.empty()) {
        // XDG: a relative XDG_CACHE_HOME is invalid and must be ignored.
        const std::string xdg = env("XDG_CACHE_HOME");
        if (!xdg.empty() && xdg[0] == '/') {
            dir = xdg + "/convgen";
        } else {
            const std::string home = env("HOME");
            if (!home.empty()) dir = home + "/.cache/convgen";
        }
    }
    if (dir.empty()) {
        loc.reason = "no cache directory (CONVGEN_CACHE_DIR, XDG_CACHE_HOME and HOME are all unset)";
        return loc;
    }
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    loc.enabled = true;
    loc.dir = dir;
    return loc;
}

Result load_or_build(const Request &request) {
    if (request.key.find('\n') != std::string::npos || request.runtime_key.find('\n') != std::string::npos) {
        return unavailable("key contains a newline");
    }
    // A directory that failed before (unwritable, no linker) is still read: its valid entries load.
    std::string bad_why;
    const bool bad = dir_is_bad(request.dir, &bad_why);
    Request r = request;
    const std::string name = kernel_entry_name(r.key);
    try {
        std::string dir_why;
        if (!bad && !mkdir_p(r.dir, &dir_why)) throw EnvironmentError{dir_why};
        char real[PATH_MAX];
        if (::realpath(r.dir.c_str(), real)) r.dir = real;

        // The fast path: a valid entry is loaded without taking any lock or writing anything.
        std::string reason;  // why the entry found was not usable; empty when there was none
        const Check first = check_entry(r.dir, name, r.key, &reason);
        if (first == Check::Valid) {
            const std::string rt = ensure_runtime(r, false);
            if (!rt.empty()) return unavailable(rt);
            Result out;
            reason = load_kernel(r.dir + "/" + name + ".so", &out);
            if (reason.empty()) {
                out.status = Result::Status::Hit;
                out.note = "hit";
                return out;
            }
            if (bad) return unavailable(bad_why);
            // Consistent files that do not load: drop the meta so that the build below replaces them.
            log_verbose(name + ".so: " + reason + "; rebuilding");
            EntryLock lock(r.dir, name);
            remove_path(r.dir + "/" + name + ".meta");
        }
        if (bad) return unavailable(bad_why);

        // A miss or an invalid entry: the runtime must be in this directory too.
        const std::string rt = ensure_runtime(r, true);
        if (!rt.empty()) return unavailable(rt);
        const std::string built = ensure_entry(r.dir, name, r.key, r.write_kernel_object, {});
        Result out;
        const std::string load_why = load_kernel(r.dir + "/" + name + ".so", &out);
        if (!load_why.empty()) {
            remove_path(r.dir + "/" + name + ".meta");
            throw EnvironmentError{"a freshly built kernel does not load: " + load_why};
        }
        if (built.empty()) {
            out.status = Result::Status::Hit;
            out.note = "hit (built by another process)";
        } else {
            out.status = Result::Status::Built;
            if (!reason.empty()) {
                out.note = "rebuilt: " + reason;
            } else {
                out.note = built == "missing" ? "built" : "rebuilt: " + built;
            }
        }
        return out;
    } catch (const EnvironmentError &e) {
        disable_dir(request.dir, e.why);
        return unavailable(e.why);
    }
}

void set_num_threads(int threads) {
    g_requested_threads = threads;
    if (SetNumThreads fn = g_runtime_set_num_threads.load()) fn(threads);
}

void set_custom_do_par_for(DoParFor fn) {
    if (SetCustomDoParFor set = g_runtime_set_custom_do_par_for.load()) set(fn);
}

}  // namespace disk_cache
}  // namespace convgen
