// The JIT's persistent disk cache (codegen/jit_disk_cache.h): entries are written on a miss,
// loaded by later processes, and every kind of damaged or foreign entry is detected and rebuilt.
// Each test uses its own temporary cache directory (CONVGEN_CACHE_DIR), never the user's cache.
// "Another process" is tests/jit_cache_probe.cc, spawned with a chosen environment.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "codegen/jit.h"
#include "codegen/jit_disk_cache.h"
#include "runtime/kernel_allocator.h"
#include "runtime/reference.h"

extern char **environ;

namespace convgen {
namespace {

namespace fs = std::filesystem;

// ---- Helpers.

class TempDir {
public:
    TempDir() {
        std::string pattern = ::testing::TempDir() + "convgen_disk_cache_XXXXXX";
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

// Sets an environment variable for the lifetime of the object (this process only).
class ScopedEnv {
public:
    ScopedEnv(const char *name, const char *value) : name_(name) {
        const char *old = std::getenv(name);
        had_ = old != nullptr;
        if (had_) old_ = old;
        if (value) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv() {
        if (had_) {
            ::setenv(name_.c_str(), old_.c_str(), 1);
        } else {
            ::unsetenv(name_.c_str());
        }
    }

private:
    std::string name_, old_;
    bool had_ = false;
};

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

void write_file(const std::string &path, const std::string &data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
}

std::vector<std::string> list_dir(const std::string &dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// Entry names (without extension) of kernels (not the runtime) in `dir`.
std::vector<std::string> kernel_entries(const std::string &dir) {
    std::vector<std::string> names;
    for (const auto &f : list_dir(dir)) {
        if (f.size() == 16 + 3 && f.compare(16, 3, ".so") == 0) names.push_back(f.substr(0, 16));
    }
    return names;
}

std::string runtime_entry(const std::string &dir) {
    for (const auto &f : list_dir(dir)) {
        if (f.rfind("halide_runtime-", 0) == 0 && f.size() > 3 && f.compare(f.size() - 3, 3, ".so") == 0) {
            return f.substr(0, f.size() - 3);
        }
    }
    return "";
}

// Whether <dir>/<name>.meta describes the .so next to it, with `key` when given.
::testing::AssertionResult entry_is_valid(const std::string &dir, const std::string &name, const std::string &key = "") {
    const std::string so = read_file(dir + "/" + name + ".so");
    const std::string meta = read_file(dir + "/" + name + ".meta");
    if (so.empty()) return ::testing::AssertionFailure() << name << ".so is missing or empty";
    const std::string prefix = "convgen-jit-disk-cache 1\nkey=";
    if (meta.rfind(prefix, 0) != 0) return ::testing::AssertionFailure() << name << ".meta is not a meta file: " << meta;
    const std::string meta_key = meta.substr(prefix.size(), meta.find('\n', prefix.size()) - prefix.size());
    if (!key.empty() && meta_key != key) return ::testing::AssertionFailure() << "key '" << meta_key << "' != '" << key << "'";
    if (meta != disk_cache::meta_text(meta_key, so.size(), disk_cache::xxh64_hex(so))) {
        return ::testing::AssertionFailure() << name << ".meta does not describe its .so: " << meta;
    }
    if (disk_cache::xxh64_hex(meta_key) != name && "halide_runtime-" + disk_cache::xxh64_hex(meta_key) != name) {
        return ::testing::AssertionFailure() << name << " is not the hash of its key";
    }
    return ::testing::AssertionSuccess();
}

size_t count(const std::string &text, const std::string &what) {
    size_t n = 0;
    for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
}

struct ProbeLine {
    std::map<std::string, std::string> fields;  // note= holds the rest of the line
    bool from_disk() const { return fields.at("from_disk_cache") == "1"; }
    bool ok() const { return fields.at("ok") == "1"; }
    const std::string &note() const { return fields.at("note"); }
    const std::string &out_hash() const { return fields.at("out_xxh64"); }
};

// ASan prints a one-line note when the process uses swapcontext (Halide's JIT runtime and LLVM
// do); it is not a finding (findings abort the probe) and not convgen's output.
std::string without_sanitizer_notes(const std::string &err) {
    std::istringstream in(err);
    std::string line, kept;
    while (std::getline(in, line)) {
        if (line.rfind("==", 0) == 0 && line.find("WARNING: ASan doesn't fully support makecontext/swapcontext") != std::string::npos) continue;
        kept += line + "\n";
    }
    return kept;
}

struct Probe {
    int status = -1;  // exit status
    std::vector<ProbeLine> lines;
    std::string out, err;
};

// Starts the probe; finish() waits for it. Environment: this process's, minus the cache
// variables, plus `env`.
class ProbeProcess {
public:
    ProbeProcess(const std::vector<std::string> &specs, const std::map<std::string, std::string> &env) {
        static int counter = 0;
        out_path_ = ::testing::TempDir() + "convgen_probe_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
        std::vector<std::string> envs;
        for (char **e = environ; *e; ++e) {
            const std::string kv = *e;
            const std::string name = kv.substr(0, kv.find('='));
            if (name.rfind("CONVGEN_", 0) == 0 || name == "XDG_CACHE_HOME") continue;
            envs.push_back(kv);
        }
        for (const auto &kv : env) envs.push_back(kv.first + "=" + kv.second);
        std::vector<std::string> args = {CONVGEN_PROBE_PATH};
        args.insert(args.end(), specs.begin(), specs.end());
        std::vector<char *> argv, envp;
        for (auto &a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        for (auto &e : envs) envp.push_back(e.data());
        envp.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, (out_path_ + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&actions, 2, (out_path_ + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        spawn_rc_ = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
    }

    Probe finish() {
        Probe p;
        if (spawn_rc_ != 0) {
            p.err = "posix_spawn failed: " + std::string(std::strerror(spawn_rc_));
            return p;
        }
        int status = 0;
        ::waitpid(pid_, &status, 0);
        p.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        p.out = read_file(out_path_ + ".out");
        p.err = without_sanitizer_notes(read_file(out_path_ + ".err"));
        std::remove((out_path_ + ".out").c_str());
        std::remove((out_path_ + ".err").c_str());
        std::istringstream lines(p.out);
        for (std::string line; std::getline(lines, line);) {
            ProbeLine l;
            const size_t note = line.find(" note=");
            std::istringstream words(line.substr(0, note));
            for (std::string w; words >> w;) {
                const size_t eq = w.find('=');
                if (eq != std::string::npos) l.fields[w.substr(0, eq)] = w.substr(eq + 1);
            }
            l.fields["note"] = note == std::string::npos ? "" : line.substr(note + 6);
            p.lines.push_back(l);
        }
        return p;
    }

private:
    pid_t pid_ = 0;
    int spawn_rc_ = -1;
    std::string out_path_;
};

Probe run_probe(const std::vector<std::string> &specs, const std::map<std::string, std::string> &env) {
    return ProbeProcess(specs, env).finish();
}

std::string describe(const Probe &p) { return "exit " + std::to_string(p.status) + "\nstdout:\n" + p.out + "stderr:\n" + p.err; }

// Runs `spec` with the disk cache of `env` and checks it against the reference.
CompiledKernel compile_and_check(const LayerSpec &spec, const CompileOptions &options, Tensor *out = nullptr) {
    const RawWeights raw = random_raw_weights(spec, 11);
    const Tensor input = random_input(spec, 12);
    CompiledKernel k = jit_compile(spec, options);
    Tensor y = k.kernel->run(input, fold_batchnorm(spec, raw));
    double err = 0, limit = 0;
    EXPECT_TRUE(within_tolerance(reference_forward(spec, raw, input), y, &err, &limit))
        << spec.to_string() << ": max_abs_err " << err << " > " << limit << " (" << k.disk_cache_note << ")";
    if (out) *out = std::move(y);
    return k;
}

std::string key_of(const CompiledKernel &k) {
    const KernelInfo &i = k.kernel->info();
    return i.spec.to_string() + "|" + i.target + "|" + i.schedule + "|" + disk_cache::versions_text();
}

// ---- Where the cache is.

TEST(DiskCacheLocation, FollowsTheEnvironment) {
    ScopedEnv off("CONVGEN_DISK_CACHE", nullptr);
    ScopedEnv dir("CONVGEN_CACHE_DIR", nullptr);
    ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(disk_cache::configured_location().dir, "/home/someone/.cache/convgen");
    {
        ScopedEnv x("XDG_CACHE_HOME", "/xdg/cache");
        EXPECT_EQ(disk_cache::configured_location().dir, "/xdg/cache/convgen");
        ScopedEnv rel("XDG_CACHE_HOME", "relative/cache");  // invalid per the XDG spec: ignored
        EXPECT_EQ(disk_cache::configured_location().dir, "/home/someone/.cache/convgen");
        ScopedEnv c("CONVGEN_CACHE_DIR", "/explicit/dir/");
        EXPECT_EQ(disk_cache::configured_location().dir, "/explicit/dir");
        EXPECT_TRUE(disk_cache::configured_location().enabled);
        ScopedEnv o("CONVGEN_DISK_CACHE", "0");
        EXPECT_FALSE(disk_cache::configured_location().enabled);
        EXPECT_NE(disk_cache::configured_location().reason.find("CONVGEN_DISK_CACHE=0"), std::string::npos);
        EXPECT_FALSE(jit_disk_cache_info().enabled);
    }
    ScopedEnv nohome("HOME", nullptr);
    EXPECT_FALSE(disk_cache::configured_location().enabled);
    EXPECT_NE(disk_cache::configured_location().reason.find("unset"), std::string::npos);
}

TEST(DiskCacheLocation, KeysCarryConvgenAndHalideVersions) {
    const std::string v = disk_cache::versions_text();
    EXPECT_NE(v.find("convgen 0."), std::string::npos) << v;
    EXPECT_NE(v.find(" src "), std::string::npos) << v;
    EXPECT_NE(v.find("Halide 14."), std::string::npos) << v;
    EXPECT_NE(v.find(disk_cache::halide_version_text()), std::string::npos) << v;
    EXPECT_EQ(disk_cache::kernel_entry_name("abc").size(), 16u);
    EXPECT_NE(disk_cache::kernel_entry_name("abc"), disk_cache::kernel_entry_name("abd"));
}

// ---- In this process.

TEST(DiskCache, ColdCompileWritesAnEntryThatMatchesTheReference) {
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    const LayerSpec spec = parse_layer_spec("conv c1=5 c2=7 h=9 w=11 k=3 act=silu");
    const CompiledKernel k = compile_and_check(spec, {});
    EXPECT_FALSE(k.from_cache);
    EXPECT_FALSE(k.from_disk_cache);
    EXPECT_EQ(k.disk_cache_note, "built");
    EXPECT_GT(k.compile_seconds, 0.0);
    EXPECT_EQ(k.kernel->info().origin, "jit");

    const std::string name = disk_cache::kernel_entry_name(key_of(k));
    EXPECT_EQ(kernel_entries(dir.path()), std::vector<std::string>{name});
    EXPECT_TRUE(entry_is_valid(dir.path(), name, key_of(k)));
    const std::string runtime = runtime_entry(dir.path());
    ASSERT_FALSE(runtime.empty());
    EXPECT_TRUE(entry_is_valid(dir.path(), runtime));
    for (const auto &f : list_dir(dir.path())) EXPECT_NE(f.rfind(".tmp-", 0), 0u) << "temporary file left: " << f;

    // The in-memory cache stays in front of the disk cache.
    const CompiledKernel again = jit_compile(spec);
    EXPECT_TRUE(again.from_cache);
    EXPECT_EQ(again.kernel.get(), k.kernel.get());

    // Another schedule is another entry.
    CompileOptions o;
    o.has_schedule = true;
    o.schedule.vector_width = 4;
    const CompiledKernel other = compile_and_check(spec, o);
    EXPECT_EQ(other.disk_cache_note, "built");
    EXPECT_EQ(kernel_entries(dir.path()).size(), 2u);
}

// Disk kernels are AOT objects of the same pipeline as the in-memory JIT's: the results must be
// bit-identical, not only within the reference tolerance.
TEST(DiskCache, DiskKernelsAreBitIdenticalToInMemoryJit) {
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    for (const char *text : {"conv c1=6 c2=9 h=11 w=13 k=3 g=3 act=gelu", "conv c1=8 c2=16 h=10 w=12 k=3 s=2 layout=nhwc act=hardswish",
                             "conv c1=5 c2=6 h=7 w=9 k=3 act=sigmoid layout=nhwc", "dwconv c1=12 c2=20 h=11 w=9 k=3 act=relu dw_act=relu6",
                             "dwconv c1=6 c2=10 h=8 w=7 k=5 s=2 act=tanh dw_act=silu"}) {
        const LayerSpec spec = parse_layer_spec(text);
        Tensor from_disk, in_memory;
        CompileOptions memory;
        memory.disk_cache = false;
        const CompiledKernel d = compile_and_check(spec, {}, &from_disk);
        const CompiledKernel m = compile_and_check(spec, memory, &in_memory);
        EXPECT_EQ(d.disk_cache_note, "built") << text;
        EXPECT_NE(m.disk_cache_note.find("off"), std::string::npos) << text;
        EXPECT_NE(d.kernel.get(), m.kernel.get()) << text;
        EXPECT_EQ(from_disk.data, in_memory.data) << text;
    }
}

TEST(DiskCache, ThreadCountReachesTheDiskRuntime) {
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    const CompiledKernel k = compile_and_check(parse_layer_spec("conv c1=4 c2=4 h=8 w=8 k=3 act=tanh"), {});
    ASSERT_EQ(k.disk_cache_note, "built");
    // The kernels' halide_* symbols resolve globally to the one disk runtime.
    auto fn = reinterpret_cast<int (*)(int)>(::dlsym(RTLD_DEFAULT, "halide_set_num_threads"));
    ASSERT_NE(fn, nullptr);
    Dl_info info{};
    ASSERT_NE(::dladdr(reinterpret_cast<void *>(fn), &info), 0);
    EXPECT_NE(std::string(info.dli_fname).find("halide_runtime-"), std::string::npos) << info.dli_fname;
    set_num_threads(3);
    EXPECT_EQ(fn(3), 3);  // returns the previous count: what convgen::set_num_threads set
    set_num_threads(1);
    EXPECT_EQ(fn(1), 1);
    set_num_threads(0);
}

// What the tuner's forked child calls: the disk runtime's parallel loops then run task after task on
// the calling thread. Checked in this process by taking the hook back (halide_set_custom_do_par_for
// returns the one it replaces) and running a loop through it, then restoring Halide's default.
TEST(DiskCache, ParallelLoopsRunSeriallyForAForkedChild) {
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    const CompiledKernel k = compile_and_check(parse_layer_spec("conv c1=4 c2=4 h=8 w=8 k=3"), {});
    ASSERT_EQ(k.disk_cache_note, "built");
    using Task = int (*)(void *, int, uint8_t *);
    using DoParFor = int (*)(void *, Task, int, int, uint8_t *);
    auto set_hook = reinterpret_cast<DoParFor (*)(DoParFor)>(::dlsym(RTLD_DEFAULT, "halide_set_custom_do_par_for"));
    auto halide_default = reinterpret_cast<DoParFor>(::dlsym(RTLD_DEFAULT, "halide_default_do_par_for"));
    ASSERT_NE(set_hook, nullptr);
    ASSERT_NE(halide_default, nullptr);
    set_num_threads(4);
    run_parallel_loops_serially();
    const DoParFor installed = set_hook(halide_default);
    set_num_threads(0);
    ASSERT_NE(installed, halide_default) << "run_parallel_loops_serially left Halide's thread pool in place";
    struct Seen {
        std::vector<int> order;
        std::vector<std::thread::id> threads;
    } seen;
    Task record = [](void *, int i, uint8_t *closure) {
        auto *s = reinterpret_cast<Seen *>(closure);
        s->order.push_back(i);
        s->threads.push_back(std::this_thread::get_id());
        return 0;
    };
    ASSERT_EQ(installed(nullptr, record, 5, 40, reinterpret_cast<uint8_t *>(&seen)), 0);
    ASSERT_EQ(seen.order.size(), 40u);
    for (int i = 0; i < 40; ++i) {
        EXPECT_EQ(seen.order[i], 5 + i);
        EXPECT_EQ(seen.threads[i], std::this_thread::get_id());
    }
}

// Disk kernels' scratch buffers come from convgen's allocator too: the disk runtime's hook holds
// kernel_malloc, and a kernel with a heap accumulator leaves its block in the allocator's cache.
TEST(DiskCache, KernelsAllocateThroughConvgensAllocator) {
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    const LayerSpec spec = parse_layer_spec("dwconv c1=256 c2=256 h=16 w=28 k=3");
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=8 parallel_rows=8 channels=0 channel_tasks=0 dw_per_task=0 tile_y=8 flat=1");
    const size_t before = kernel_allocator_cached_bytes();
    const CompiledKernel k = compile_and_check(spec, o);
    ASSERT_EQ(k.disk_cache_note, "built");
    EXPECT_GE(kernel_allocator_cached_bytes(), before + 256 * 28 * 8 * sizeof(float));
    using Malloc = void *(*)(void *, size_t);
    auto set_malloc = reinterpret_cast<Malloc (*)(Malloc)>(::dlsym(RTLD_DEFAULT, "halide_set_custom_malloc"));
    ASSERT_NE(set_malloc, nullptr);
    EXPECT_EQ(set_malloc(&kernel_malloc), &kernel_malloc);
}

TEST(DiskCache, OptionOffWritesNothing) {
    TempDir dir;
    const std::string cache = dir.path() + "/cache";
    ScopedEnv env("CONVGEN_CACHE_DIR", cache.c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    CompileOptions o;
    o.disk_cache = false;
    const CompiledKernel k = compile_and_check(parse_layer_spec("conv c1=3 c2=5 h=7 w=6 k=3 act=sigmoid"), o);
    EXPECT_FALSE(k.from_disk_cache);
    EXPECT_EQ(k.disk_cache_note, "off: CompileOptions::disk_cache is false");
    EXPECT_FALSE(fs::exists(cache));
}

// One Halide runtime per process: a kernel for a target whose runtime differs from the loaded
// one is compiled in memory, and is still correct.
TEST(DiskCache, SecondTargetInOneProcessFallsBackToMemory) {
    if (host_target_string().find("sse41") == std::string::npos || host_target_string().find("avx") == std::string::npos) {
        GTEST_SKIP() << "needs an x86 host with AVX";
    }
    TempDir dir;
    ScopedEnv env("CONVGEN_CACHE_DIR", dir.path().c_str());
    ScopedEnv on("CONVGEN_DISK_CACHE", nullptr);
    const CompiledKernel host = compile_and_check(parse_layer_spec("conv c1=4 c2=6 h=5 w=7 k=3 act=leaky"), {});
    ASSERT_EQ(host.disk_cache_note, "built");
    CompileOptions sse;
    sse.target = "x86-64-linux-sse41";
    const CompiledKernel k = compile_and_check(parse_layer_spec("conv c1=4 c2=6 h=5 w=7 k=3 act=leaky"), sse);
    EXPECT_FALSE(k.from_disk_cache);
    EXPECT_NE(k.disk_cache_note.find("unavailable: "), std::string::npos) << k.disk_cache_note;
    EXPECT_NE(k.disk_cache_note.find("another target"), std::string::npos) << k.disk_cache_note;
}

// ---- Across processes.

const char *kSpecA = "conv c1=6 c2=10 h=9 w=12 k=3 act=relu";
const char *kSpecB = "dwconv c1=8 c2=12 h=10 w=9 k=3 act=relu dw_act=relu6 dw_bn=1";

TEST(DiskCache, SecondProcessLoadsFromDisk) {
    TempDir dir;
    const std::map<std::string, std::string> env = {{"CONVGEN_CACHE_DIR", dir.path()}};
    const Probe cold = run_probe({kSpecA, kSpecB}, env);
    ASSERT_EQ(cold.status, 0) << describe(cold);
    ASSERT_EQ(cold.lines.size(), 2u) << describe(cold);
    const Probe warm = run_probe({kSpecA, kSpecB}, env);
    ASSERT_EQ(warm.status, 0) << describe(warm);
    ASSERT_EQ(warm.lines.size(), 2u) << describe(warm);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_FALSE(cold.lines[i].from_disk()) << describe(cold);
        EXPECT_EQ(cold.lines[i].note(), "built");
        EXPECT_TRUE(cold.lines[i].ok());
        EXPECT_TRUE(warm.lines[i].from_disk()) << describe(warm);
        EXPECT_EQ(warm.lines[i].note(), "hit");
        EXPECT_TRUE(warm.lines[i].ok());
        // Both processes ran the same stored code.
        EXPECT_EQ(cold.lines[i].out_hash(), warm.lines[i].out_hash());
    }
    EXPECT_TRUE(cold.err.empty()) << cold.err;
    EXPECT_TRUE(warm.err.empty()) << warm.err;
    EXPECT_EQ(kernel_entries(dir.path()).size(), 2u);
}

TEST(DiskCache, RacingProcessesAllGetValidKernels) {
    TempDir dir;
    const std::map<std::string, std::string> env = {{"CONVGEN_CACHE_DIR", dir.path()}};
    std::vector<std::unique_ptr<ProbeProcess>> racers;
    for (int i = 0; i < 3; ++i) racers.push_back(std::make_unique<ProbeProcess>(std::vector<std::string>{kSpecA}, env));
    int built = 0;
    for (auto &r : racers) {
        const Probe p = r->finish();
        ASSERT_EQ(p.status, 0) << describe(p);
        ASSERT_EQ(p.lines.size(), 1u) << describe(p);
        EXPECT_TRUE(p.lines[0].ok());
        built += p.lines[0].note() == "built" ? 1 : 0;
    }
    EXPECT_EQ(built, 1) << "the entry lock lets one process build, the others load its result";
    const auto names = kernel_entries(dir.path());
    ASSERT_EQ(names.size(), 1u);
    EXPECT_TRUE(entry_is_valid(dir.path(), names[0]));
    for (const auto &f : list_dir(dir.path())) EXPECT_NE(f.rfind(".tmp-", 0), 0u) << "temporary file left: " << f;
    const Probe after = run_probe({kSpecA}, env);
    ASSERT_EQ(after.lines.size(), 1u) << describe(after);
    EXPECT_TRUE(after.lines[0].from_disk());
}

TEST(DiskCache, DisabledByEnvironmentWritesNothing) {
    TempDir dir;
    const std::string cache = dir.path() + "/cache";
    const Probe p = run_probe({kSpecA}, {{"CONVGEN_CACHE_DIR", cache}, {"CONVGEN_DISK_CACHE", "0"}});
    ASSERT_EQ(p.status, 0) << describe(p);
    ASSERT_EQ(p.lines.size(), 1u) << describe(p);
    EXPECT_TRUE(p.lines[0].ok());
    EXPECT_FALSE(p.lines[0].from_disk());
    EXPECT_EQ(p.lines[0].note(), "off: CONVGEN_DISK_CACHE=0");
    EXPECT_FALSE(fs::exists(cache));
    EXPECT_TRUE(p.err.empty()) << p.err;
}

TEST(DiskCache, UnwritableDirectoryWarnsOnceAndCompilesInMemory) {
    TempDir dir;
    // Below a regular file: no one (not even root) can create it.
    write_file(dir.path() + "/file", "x");
    const Probe p = run_probe({kSpecA, kSpecB}, {{"CONVGEN_CACHE_DIR", dir.path() + "/file/cache"}});
    ASSERT_EQ(p.status, 0) << describe(p);
    ASSERT_EQ(p.lines.size(), 2u) << describe(p);
    for (const auto &l : p.lines) {
        EXPECT_TRUE(l.ok());
        EXPECT_FALSE(l.from_disk());
        EXPECT_EQ(l.note().rfind("unavailable: ", 0), 0u) << l.note();
    }
    EXPECT_EQ(count(p.err, "convgen: warning: JIT disk cache disabled: "), 1u) << p.err;
    EXPECT_EQ(count(p.err, "\n"), 1u) << "one warning line per process:\n" << p.err;
    EXPECT_NE(p.err.find("/file/cache"), std::string::npos) << p.err;
}

TEST(DiskCache, MissingLinkerWarnsAndCompilesInMemory) {
    TempDir dir;
    const Probe p = run_probe({kSpecA}, {{"CONVGEN_CACHE_DIR", dir.path()}, {"CONVGEN_CXX", "/nonexistent/c++"}});
    ASSERT_EQ(p.status, 0) << describe(p);
    ASSERT_EQ(p.lines.size(), 1u) << describe(p);
    EXPECT_TRUE(p.lines[0].ok());
    EXPECT_EQ(p.lines[0].note().rfind("unavailable: ", 0), 0u) << p.lines[0].note();
    EXPECT_EQ(count(p.err, "convgen: warning: JIT disk cache disabled: cannot run the linker '/nonexistent/c++'"), 1u) << p.err;
    EXPECT_TRUE(kernel_entries(dir.path()).empty());
    for (const auto &f : list_dir(dir.path())) EXPECT_NE(f.rfind(".tmp-", 0), 0u) << "temporary file left: " << f;
}

// After the cache failed for a directory (here: no linker), its valid entries still load.
TEST(DiskCache, ValidEntriesStillLoadWhenTheDirectoryCannotBeWritten) {
    TempDir dir;
    const Probe first = run_probe({kSpecA}, {{"CONVGEN_CACHE_DIR", dir.path()}});
    ASSERT_EQ(first.status, 0) << describe(first);
    const Probe p = run_probe({kSpecB, kSpecA}, {{"CONVGEN_CACHE_DIR", dir.path()}, {"CONVGEN_CXX", "/nonexistent/c++"}});
    ASSERT_EQ(p.status, 0) << describe(p);
    ASSERT_EQ(p.lines.size(), 2u) << describe(p);
    EXPECT_EQ(p.lines[0].note().rfind("unavailable: cannot run the linker", 0), 0u) << describe(p);
    EXPECT_FALSE(p.lines[0].from_disk());
    EXPECT_TRUE(p.lines[0].ok());
    EXPECT_TRUE(p.lines[1].from_disk()) << describe(p);
    EXPECT_EQ(p.lines[1].note(), "hit");
    EXPECT_TRUE(p.lines[1].ok());
    EXPECT_EQ(count(p.err, "warning"), 1u) << p.err;
}

// ---- Damaged entries: built by one process, damaged, detected and rebuilt by the next, loaded by a third.

struct Damage {
    const char *name;
    const char *expected_note;  // a substring of the second process's note (or of its stderr)
    void (*apply)(const std::string &dir, const std::string &entry);
};

std::string so(const std::string &dir, const std::string &e) { return dir + "/" + e + ".so"; }
std::string meta(const std::string &dir, const std::string &e) { return dir + "/" + e + ".meta"; }

const Damage kDamages[] = {
    {"FlippedByteInSo", "corrupt",
     [](const std::string &d, const std::string &e) {
         std::string bytes = read_file(so(d, e));
         bytes[bytes.size() / 2] ^= 0x40;
         write_file(so(d, e), bytes);
     }},
    {"TruncatedSo", "truncated",
     [](const std::string &d, const std::string &e) { fs::resize_file(so(d, e), fs::file_size(so(d, e)) / 3); }},
    {"EmptySo", ".so size 0", [](const std::string &d, const std::string &e) { write_file(so(d, e), ""); }},
    {"MissingSo", ".so missing", [](const std::string &d, const std::string &e) { fs::remove(so(d, e)); }},
    {"SoIsADirectory", "not a regular file",
     [](const std::string &d, const std::string &e) {
         fs::remove(so(d, e));
         fs::create_directory(so(d, e));
     }},
    {"ForeignMeta", "foreign entry",
     [](const std::string &d, const std::string &e) {
         // Another spec's key with this .so's true size and hash: only the key gives it away.
         const std::string bytes = read_file(so(d, e));
         write_file(meta(d, e), disk_cache::meta_text("conv n=1 c1=1 c2=1 h=1 w=1 k=1|other|key", bytes.size(),
                                                       disk_cache::xxh64_hex(bytes)));
     }},
    {"GarbageMeta", "garbage meta",
     [](const std::string &d, const std::string &e) { write_file(meta(d, e), "this is not a meta file\n\x01\x02\xff\n"); }},
    {"BinaryMetaWithoutNewline", "garbage meta",
     [](const std::string &d, const std::string &e) { write_file(meta(d, e), std::string("\0\x7f" "ELF\xff\xfe", 7)); }},
    {"HugeMeta", "not a small regular file",
     [](const std::string &d, const std::string &e) { write_file(meta(d, e), std::string(1 << 20, 'k')); }},
    {"OtherFormatVersion", "another format version",
     [](const std::string &d, const std::string &e) {
         std::string m = read_file(meta(d, e));
         m.replace(m.find(" 1\n"), 3, " 999\n");
         write_file(meta(d, e), m);
     }},
    {"MetaIsADirectory", "meta",
     [](const std::string &d, const std::string &e) {
         fs::remove(meta(d, e));
         fs::create_directory(meta(d, e));
     }},
    {"SoWithoutMeta", ".so without meta", [](const std::string &d, const std::string &e) { fs::remove(meta(d, e)); }},
    // Size and hash agree with the meta, but the file is no shared library: dlopen must fail cleanly.
    {"ConsistentButNotALibrary", "dlopen failed",
     [](const std::string &d, const std::string &e) {
         const std::string junk(4096, 'j');
         const std::string m = read_file(meta(d, e));
         const std::string key = m.substr(m.find("key=") + 4, m.find('\n', m.find("key=")) - m.find("key=") - 4);
         write_file(so(d, e), junk);
         write_file(meta(d, e), disk_cache::meta_text(key, junk.size(), disk_cache::xxh64_hex(junk)));
     }},
    // A library that loads but lacks the kernel's entry point (e.g. the runtime copied over it).
    {"LibraryWithoutTheKernel", "no symbol convgen_kernel_argv",
     [](const std::string &d, const std::string &e) {
         const std::string rt = read_file(so(d, runtime_entry(d)));
         const std::string m = read_file(meta(d, e));
         const std::string key = m.substr(m.find("key=") + 4, m.find('\n', m.find("key=")) - m.find("key=") - 4);
         write_file(so(d, e), rt);
         write_file(meta(d, e), disk_cache::meta_text(key, rt.size(), disk_cache::xxh64_hex(rt)));
     }},
    // A writer killed before renaming: its temporary files and no entry.
    {"StaleTemporaryFiles", "",
     [](const std::string &d, const std::string &e) {
         fs::remove(so(d, e));
         fs::remove(meta(d, e));
         write_file(d + "/.tmp-" + e + "-999999-0.so", "half a library");
         write_file(d + "/.tmp-" + e + "-999999-0.o", "half an object");
     }},
    // The runtime damaged: rebuilt before any kernel loads (the kernel itself is a hit).
    {"CorruptRuntime", "halide_runtime-",
     [](const std::string &d, const std::string &) {
         const std::string rt = runtime_entry(d);
         std::string bytes = read_file(so(d, rt));
         bytes[bytes.size() / 3] ^= 0x01;
         write_file(so(d, rt), bytes);
     }},
    {"MissingRuntime", "halide_runtime-", [](const std::string &d, const std::string &) {
         const std::string rt = runtime_entry(d);
         fs::remove(so(d, rt));
         fs::remove(meta(d, rt));
     }},
};

void PrintTo(const Damage &d, std::ostream *os) { *os << d.name; }

class DamagedEntry : public ::testing::TestWithParam<Damage> {};

TEST_P(DamagedEntry, IsDetectedAndRebuilt) {
    const Damage &damage = GetParam();
    TempDir dir;
    const std::map<std::string, std::string> env = {{"CONVGEN_CACHE_DIR", dir.path()}, {"CONVGEN_VERBOSE", "1"}};
    const Probe cold = run_probe({kSpecA}, env);
    ASSERT_EQ(cold.status, 0) << describe(cold);
    const auto names = kernel_entries(dir.path());
    ASSERT_EQ(names.size(), 1u) << describe(cold);
    const std::string entry = names[0];
    const std::string runtime = runtime_entry(dir.path());
    ASSERT_FALSE(runtime.empty());
    ASSERT_TRUE(entry_is_valid(dir.path(), entry));

    damage.apply(dir.path(), entry);

    const Probe repair = run_probe({kSpecA}, env);
    ASSERT_EQ(repair.status, 0) << describe(repair);
    ASSERT_EQ(repair.lines.size(), 1u) << describe(repair);
    EXPECT_TRUE(repair.lines[0].ok()) << describe(repair);
    EXPECT_EQ(repair.lines[0].out_hash(), cold.lines.at(0).out_hash());
    const bool runtime_damage = std::string(damage.name).find("Runtime") != std::string::npos;
    if (runtime_damage) {
        EXPECT_TRUE(repair.lines[0].from_disk()) << describe(repair);
        EXPECT_NE(repair.err.find(runtime + ".so built ("), std::string::npos) << describe(repair);
    } else {
        EXPECT_FALSE(repair.lines[0].from_disk()) << describe(repair);
        if (std::string(damage.name) == "StaleTemporaryFiles") {
            EXPECT_EQ(repair.lines[0].note(), "built") << describe(repair);
            EXPECT_NE(repair.err.find("removing stale temporary file"), std::string::npos) << describe(repair);
        } else {
            EXPECT_EQ(repair.lines[0].note().rfind("rebuilt: ", 0), 0u) << describe(repair);
            EXPECT_NE(repair.lines[0].note().find(damage.expected_note), std::string::npos) << describe(repair);
        }
    }
    EXPECT_EQ(repair.err.find("warning"), std::string::npos) << "a damaged entry is no reason to disable the cache\n"
                                                            << describe(repair);
    EXPECT_TRUE(entry_is_valid(dir.path(), entry));
    EXPECT_TRUE(entry_is_valid(dir.path(), runtime));
    for (const auto &f : list_dir(dir.path())) EXPECT_NE(f.rfind(".tmp-", 0), 0u) << "temporary file left: " << f;

    const Probe warm = run_probe({kSpecA}, env);
    ASSERT_EQ(warm.lines.size(), 1u) << describe(warm);
    EXPECT_TRUE(warm.lines[0].from_disk()) << describe(warm);
    EXPECT_EQ(warm.lines[0].note(), "hit");
    EXPECT_TRUE(warm.lines[0].ok());
}

INSTANTIATE_TEST_SUITE_P(All, DamagedEntry, ::testing::ValuesIn(kDamages),
                         [](const ::testing::TestParamInfo<Damage> &info) { return std::string(info.param.name); });

}  // namespace
}  // namespace convgen
