// convgen_bench: every layer of a suite file with convgen and, in the same process, with oneDNN
// and XNNPACK, at each requested thread count. See bench/README.md.
//
// Each (layer, implementation, threads) is one Google Benchmark entry with one iteration whose
// (manual) time is the median of N timed forward passes, N chosen so that the timed passes take
// at least --seconds and N >= 5. A layer's implementations at one thread count are timed
// together, taking turns in rounds (time_interleaved), so that the ratios between them do not
// depend on which of them a noisy stretch of the machine fell on. Everything that is not the
// forward pass (JIT compile, weight reorders, input layout conversion, output checks) happens
// before the timed passes. The per-layer numbers are counters, so they appear in
// --benchmark_format=json; a summary table is printed at the end (to stdout, or to stderr when
// stdout carries JSON/CSV).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/baseline.h"
#include "bench/baselines_onednn.h"
#include "bench/baselines_xnnpack.h"
#include "bench/machine.h"
#include "codegen/jit.h"
#include "dsl/layer_spec.h"
#include "runtime/errors.h"
#include "runtime/kernel.h"
#include "runtime/reference.h"
#include "runtime/weights.h"

namespace {

using convgen::LayerSpec;
using convgen::Tensor;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Options (parsed before benchmark::Initialize; everything else goes to Google Benchmark).

struct Options {
    std::string suite;
    std::vector<std::string> layers;  // --layer SPEC (replaces the suite)
    std::vector<int> threads{1, 2};
    double seconds = 0.5;  // timed seconds per (layer, implementation, threads)
    bool onednn = true, xnnpack = true;
    bool reference = true;  // check convgen against the double-precision reference once per layer
    std::string convgen_target;  // convgen's JIT target; empty = the host, as jit_compile defaults
};

const char *kUsage =
    "convgen_bench [options] [Google Benchmark flags]\n"
    "  --suite FILE        layer suite (default: ../shared/bench/layers.txt beside the source tree,\n"
    "                      else bench/layers.txt)\n"
    "  --layer SPEC        benchmark this layer instead of a suite (repeatable)\n"
    "  --threads LIST      comma-separated thread counts, run in ascending order (default 1,2)\n"
    "  --seconds S         timed seconds per layer, implementation and thread count, in 5\n"
    "                      interleaved slices (default 0.5)\n"
    "  --peers LIST        onednn,xnnpack (default both; 'none' for convgen alone)\n"
    "  --no_reference      skip checking convgen against the C++ reference (peers are still\n"
    "                      checked against convgen)\n"
    "  --convgen_target T  Halide target for convgen's JIT (default: the host)\n"
    "Google Benchmark flags work as usual, e.g. --benchmark_filter=resnext,\n"
    "--benchmark_format=json, --benchmark_out=FILE --benchmark_out_format=json.\n"
    "Exit status: 0, 1 if any output check failed, 2 on bad options or suite.\n";

[[noreturn]] void usage_error(const std::string &msg) {
    std::fprintf(stderr, "convgen_bench: error: %s\n%s", msg.c_str(), kUsage);
    std::exit(2);
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep)) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

bool file_exists(const std::string &path) { return std::ifstream(path).good(); }

// Removes our flags from argv; leaves the rest for Google Benchmark.
Options parse_options(int *argc, char **argv) {
    Options o;
    std::vector<char *> rest{argv[0]};
    for (int i = 1; i < *argc; ++i) {
        std::string a = argv[i];
        std::string value;
        auto take = [&](const char *flag) {
            const std::string f = flag;
            if (a == f) {
                if (i + 1 >= *argc) usage_error(f + " needs a value");
                value = argv[++i];
                return true;
            }
            if (a.rfind(f + "=", 0) == 0) {
                value = a.substr(f.size() + 1);
                return true;
            }
            return false;
        };
        if (take("--suite")) {
            o.suite = value;
        } else if (take("--layer")) {
            o.layers.push_back(value);
        } else if (take("--threads")) {
            o.threads.clear();
            for (const auto &t : split(value, ',')) {
                char *end = nullptr;
                long v = std::strtol(t.c_str(), &end, 10);
                if (*end || v < 1 || v > 1024) usage_error("--threads takes positive integers, got '" + value + "'");
                o.threads.push_back(int(v));
            }
            if (o.threads.empty()) usage_error("--threads is empty");
            // Ascending: Halide 14's pool, once started with N threads, keeps using them after
            // halide_set_num_threads(M < N) (measured here with cpu_cores), so grow it only.
            std::sort(o.threads.begin(), o.threads.end());
            o.threads.erase(std::unique(o.threads.begin(), o.threads.end()), o.threads.end());
        } else if (take("--seconds")) {
            char *end = nullptr;
            o.seconds = std::strtod(value.c_str(), &end);
            if (*end || !(o.seconds > 0) || o.seconds > 60) usage_error("--seconds takes a number in (0, 60]");
        } else if (take("--peers")) {
            o.onednn = o.xnnpack = false;
            for (const auto &p : split(value, ',')) {
                if (p == "onednn") o.onednn = true;
                else if (p == "xnnpack") o.xnnpack = true;
                else if (p != "none") usage_error("unknown peer '" + p + "' (onednn, xnnpack, none)");
            }
        } else if (take("--convgen_target")) {
            o.convgen_target = value;
        } else if (a == "--no_reference") {
            o.reference = false;
        } else {
            if (a == "--help" || a == "-h") std::fputs(kUsage, stdout);
            rest.push_back(argv[i]);
        }
    }
    for (size_t i = 0; i < rest.size(); ++i) argv[i] = rest[i];
    *argc = static_cast<int>(rest.size());
    argv[*argc] = nullptr;  // Google Benchmark, like GoogleTest, expects argv[argc] == nullptr
    if (o.suite.empty()) {
        o.suite = CONVGEN_SOURCE_DIR "/../shared/bench/layers.txt";
        if (!file_exists(o.suite)) o.suite = CONVGEN_SOURCE_DIR "/bench/layers.txt";
    }
    return o;
}

// ---------------------------------------------------------------------------------------------
// Layers and results.

Options g_opt;

struct LayerCase {
    LayerSpec spec;
    std::string name;
    convgen::RawWeights raw;
    convgen::FoldedWeights weights;
    Tensor input;
    // The kernel timed at each thread count: the schedule database is looked up for that count
    // (a 1-thread record's single task is split for more threads), as an app running that many
    // threads would get. A kernel other than the first thread count's is checked against its
    // output before timing.
    struct ThreadKernel {
        std::shared_ptr<const convgen::Kernel> kernel;
        convgen::PackedWeights packed;  // `weights` in the kernel's layout, packed once at load time
        double compile_s = 0;
    };
    std::map<int, ThreadKernel> by_threads;
    Tensor convgen_out;  // convgen's output on `input`: what the peers are checked against
    bool have_out = false;
    bool ref_checked = false, ref_ok = true;
    double ref_err = 0, ref_tol = 0;

    double bytes() const {  // minimal traffic: input + weights + output, float32
        double elems = double(spec.n) * spec.c1 * spec.h * spec.w + double(spec.n) * spec.c2 * spec.out_h() * spec.out_w();
        elems += weights.weight.size() + weights.bias.size() + weights.pw_weight.size() + weights.pw_bias.size();
        return 4.0 * elems;
    }

    const ThreadKernel &kernel_for(int threads) {
        auto it = by_threads.find(threads);
        if (it != by_threads.end()) return it->second;
        convgen::CompileOptions options;
        options.target = g_opt.convgen_target;
        options.threads = threads;
        auto compiled = convgen::jit_compile(spec, options);
        ThreadKernel k{compiled.kernel, compiled.kernel->pack(weights), compiled.compile_seconds};
        return by_threads.emplace(threads, std::move(k)).first->second;
    }

    const ThreadKernel &first_kernel() { return kernel_for(g_opt.threads.front()); }

    const Tensor &output() {
        if (!have_out) {
            const ThreadKernel &k = first_kernel();
            convgen_out = k.kernel->run(input, k.packed);
            have_out = true;
        }
        return convgen_out;
    }
};

struct Timing {
    double median = 0;
    int runs = 0;
    double cores = 0;   // process CPU time / wall time over this implementation's timed passes: the threads really used
    double others = 0;  // CPUs busy with other processes while the layer was timed (contention)
    double canary = 0;  // one-thread FMA probe before and after (the lower) / the per-thread peak
    int attempts = 1;   // how many times the entry's layer was timed (see time_group)

    bool disturbed() const { return others > 0.15 || canary < 0.9; }
};
struct Result {
    bool ran = false, na = false, error = false;
    std::string message;  // n/a reason or error
    Timing timing;        // set when ran
    bool check_ok = true;
    double max_err = 0, tol = 0;
    bool fused = true;
    std::string describe;
};

enum Impl { kConvgen = 0, kOneDnn = 1, kXnnpack = 2 };
const char *kImplName[] = {"convgen", "onednn", "xnnpack"};

struct Machine {
    convgen_bench::FmaPeak peak;
    double triad_gbs = 0;
    double peak_after = 0;  // re-measured after the layers, to detect contention
};

std::vector<LayerCase> g_layers;
std::map<int, Machine> g_machine;                          // by thread count
std::map<std::tuple<size_t, int, int>, Result> g_results;  // (layer, impl, threads)
bool g_check_failed = false;
int g_cpus = 1;
std::string g_target;  // convgen's target, canonical


// Busy CPU seconds of the whole machine (all processes), from /proc/stat; -1 if unreadable.
double system_busy_seconds() {
    std::ifstream f("/proc/stat");
    std::string cpu;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (!(f >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return -1;
    return double(user + nice + system + irq + softirq + steal) / double(sysconf(_SC_CLK_TCK));
}

double process_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// A short one-thread FMA probe, as a fraction of the per-thread peak measured at the start. It
// catches what /proc/stat cannot: a slower machine (a busy VM host, clock changes). One thread
// only: a probe on all the entry's threads would also compete with the pools the implementations
// just used, whose workers still spin (contention from other processes is measured by
// system_busy_seconds). Best of 3 x 4 ms.
double canary() {
    const auto &first = *g_machine.begin();
    const double peak = first.second.peak.gflops / first.first;
    return peak > 0 ? convgen_bench::measure_fma_peak(1, 0.004, 3).gflops / peak : 1.0;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Waits (at most 0.5 s) until no other thread of this process is running: the worker threads of
// the implementation timed before (OpenMP's for oneDNN, pthreadpool's for XNNPACK, convgen's pool)
// spin for a while after their last parallel loop, and on a 2-CPU machine a spinning worker of one
// pool takes a CPU from the next implementation's workers. Measured with the process's CPU time
// while this thread sleeps: oneDNN's default OpenMP workers left convgen's 2-thread depthwise layer
// at 0.12-0.15 ms in place of 0.07 when it ran right after oneDNN.
void wait_for_idle_workers() {
    const auto t0 = Clock::now();
    while (seconds_since(t0) < 0.5) {
        const double c0 = process_cpu_seconds();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (process_cpu_seconds() - c0 < 0.0002) return;
    }
}

// Rounds in which a layer's implementations take turns (see time_interleaved).
constexpr int kRounds = 5;

// The implementations of one layer at one thread count, timed in turn: kRounds rounds, each giving
// every implementation a warm-up (2 passes and 10% of its slice) and then `seconds` / kRounds of
// timed passes (at least one), the order rotated from round to round. A slow stretch of the shared
// machine then falls on all of them alike: timed one after the other for 0.5 s each, the same
// 2-thread convgen kernel read 0.066 ms in one run and 0.125 ms in the next while oneDNN's stayed
// at 0.065-0.077 ms, 0.55x-0.97x for the same code. Each Timing has the median of its passes and
// its own cores; `others` and `canary` are the group's (the machine around all of them).
std::vector<Timing> time_interleaved(const std::vector<std::function<void()>> &fns, double seconds) {
    const size_t n = fns.size();
    const double slice = seconds / kRounds;
    std::vector<std::vector<double>> samples(n);
    std::vector<double> cpu(n, 0.0), wall(n, 0.0);
    const double canary_before = canary();
    const double cpu0 = process_cpu_seconds(), busy0 = system_busy_seconds();
    const auto wall0 = Clock::now();
    for (int round = 0; round < kRounds; ++round) {
        for (size_t k = 0; k < n; ++k) {
            const size_t i = (k + size_t(round)) % n;
            wait_for_idle_workers();
            const auto warm0 = Clock::now();
            for (int w = 0; w < 2 || seconds_since(warm0) < 0.1 * slice; ++w) fns[i]();
            const double c0 = process_cpu_seconds();
            const auto s0 = Clock::now();
            double total = 0;
            for (size_t passes = 0; passes < 1 || (total < slice && passes < 100000 / kRounds); ++passes) {
                const auto a = Clock::now();
                fns[i]();
                const double dt = seconds_since(a);
                samples[i].push_back(dt);
                total += dt;
            }
            wall[i] += seconds_since(s0);
            cpu[i] += process_cpu_seconds() - c0;
        }
    }
    const double group_wall = seconds_since(wall0);
    const double group_cpu = process_cpu_seconds() - cpu0;
    const double busy = system_busy_seconds() - busy0;
    const double others = busy0 < 0 ? 0 : std::max(0.0, (busy - group_cpu) / group_wall);
    const double canary_after = canary();
    std::vector<Timing> out(n);
    for (size_t i = 0; i < n; ++i) {
        std::vector<double> &v = samples[i];
        std::sort(v.begin(), v.end());
        const size_t m = v.size();
        Timing &t = out[i];
        t.median = m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
        t.runs = static_cast<int>(m);
        t.cores = cpu[i] / wall[i];
        t.others = others;
        t.canary = std::min(canary_before, canary_after);
    }
    return out;
}

// time_interleaved; when another process or a slower machine disturbed it, wait a second and time
// the group again, at most 3 times in all, keeping the first undisturbed timing (else the least
// disturbed).
std::vector<Timing> time_group(const std::vector<std::function<void()>> &fns, double seconds) {
    auto disturbed = [](const std::vector<Timing> &ts) { return ts.front().disturbed(); };
    auto score = [](const std::vector<Timing> &ts) { return ts.front().canary - ts.front().others; };
    std::vector<Timing> best = time_interleaved(fns, seconds);
    int attempts = 1;
    while (disturbed(best) && attempts < 3) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        std::vector<Timing> t = time_interleaved(fns, seconds);
        ++attempts;
        if (!disturbed(t) || score(t) > score(best)) best = std::move(t);
    }
    for (Timing &t : best) t.attempts = attempts;
    return best;
}

void set_common_counters(benchmark::State &state, const LayerCase &lc, int threads, const Timing &t) {
    const double gflops = lc.spec.flops() / t.median * 1e-9;
    state.counters["threads"] = threads;
    state.counters["GFLOPS"] = gflops;
    state.counters["pct_peak"] = 100.0 * gflops / g_machine[threads].peak.gflops;
    state.counters["runs"] = t.runs;
    state.counters["cpu_cores"] = t.cores;
    state.counters["other_cores"] = t.others;
    state.counters["canary_pct"] = 100 * t.canary;
    state.counters["attempts"] = t.attempts;
    state.counters["flops"] = lc.spec.flops();
    state.counters["bytes"] = lc.bytes();
}

// convgen's kernel for `threads`, checked (against the C++ reference once per layer, and against
// the first thread count's kernel when it differs), and its timed pass.
std::function<void()> prepare_convgen(LayerCase &lc, int threads, Result &r, Tensor &out) {
    lc.first_kernel();
    if (g_opt.reference && !lc.ref_checked) {
        lc.ref_checked = true;
        const Tensor ref = convgen::reference_forward(lc.spec, lc.raw, lc.input);
        lc.ref_ok = convgen::within_tolerance(ref, lc.output(), &lc.ref_err, &lc.ref_tol);
        if (!lc.ref_ok) {
            g_check_failed = true;
            std::fprintf(stderr, "\n*** CHECK FAILED: convgen %s differs from the C++ reference: max|err| %.3g > %.3g\n\n",
                         lc.name.c_str(), lc.ref_err, lc.ref_tol);
        }
    }
    convgen::set_num_threads(threads);
    const LayerCase::ThreadKernel &tk = lc.kernel_for(threads);
    out = Tensor(lc.spec.output_shape());
    if (tk.kernel != lc.first_kernel().kernel) {
        double err = 0, tol = 0;
        tk.kernel->run(lc.input, tk.packed, out);
        if (!convgen::within_tolerance(lc.output(), out, &err, &tol)) {
            lc.ref_ok = false;
            g_check_failed = true;
            std::fprintf(stderr, "\n*** CHECK FAILED: convgen %s at %d threads (%s) differs from its 1st kernel: max|err| %.3g > %.3g\n\n",
                         lc.name.c_str(), threads, tk.kernel->info().schedule.c_str(), err, tol);
        }
    }
    r.describe = tk.kernel->info().schedule;
    r.check_ok = lc.ref_ok;
    r.max_err = lc.ref_err;
    r.tol = lc.ref_tol;
    const LayerCase *layer = &lc;
    return [layer, &tk, &out] { tk.kernel->run(layer->input, tk.packed, out); };
}

// A peer's layer, built (weights reordered, input converted: untimed) and checked against
// convgen's output; its timed pass.
std::function<void()> prepare_peer(LayerCase &lc, Impl impl, int threads, Result &r,
                                   std::unique_ptr<convgen_bench::Baseline> &b) {
    const Tensor &expected = lc.output();
    if (impl == kOneDnn) {
        const int got = convgen_bench::onednn_set_num_threads(threads);
        if (got != threads) throw std::runtime_error("OpenMP gives " + std::to_string(got) + " threads");
        b = convgen_bench::make_onednn_baseline(lc.spec, lc.weights, lc.input);
    } else {
        b = convgen_bench::make_xnnpack_baseline(lc.spec, lc.weights, lc.input, threads);
    }
    b->run();
    r.check_ok = convgen::within_tolerance(expected, b->output(), &r.max_err, &r.tol);
    r.fused = b->activation_fused();
    r.describe = b->describe();
    if (!r.check_ok) {
        g_check_failed = true;
        std::fprintf(stderr,
                     "\n*** CHECK FAILED: %s disagrees with convgen on %s (threads=%d): max|err| %.3g > "
                     "tolerance %.3g\n    %s ran: %s\n\n",
                     kImplName[impl], lc.name.c_str(), threads, r.max_err, r.tol, kImplName[impl], r.describe.c_str());
    }
    convgen_bench::Baseline *peer = b.get();
    return [peer] { peer->run(); };
}

// Times every implementation of layer `li` at `threads` together (time_group), the first time
// one of its entries runs; the entries then report their share. An implementation that cannot be
// prepared is n/a (the peer does not support the layer) or an error, and the others are timed
// without it.
void time_layer(size_t li, int threads) {
    static std::set<std::pair<size_t, int>> timed;
    if (!timed.insert({li, threads}).second) return;
    LayerCase &lc = g_layers[li];
    std::vector<Impl> impls;
    std::vector<std::function<void()>> fns;
    std::vector<std::unique_ptr<convgen_bench::Baseline>> peers;
    Tensor convgen_out;
    for (Impl impl : {kConvgen, kOneDnn, kXnnpack}) {
        if ((impl == kOneDnn && !g_opt.onednn) || (impl == kXnnpack && !g_opt.xnnpack)) continue;
        Result &r = g_results[{li, impl, threads}];
        try {
            if (impl == kConvgen) {
                fns.push_back(prepare_convgen(lc, threads, r, convgen_out));
            } else {
                peers.emplace_back();
                fns.push_back(prepare_peer(lc, impl, threads, r, peers.back()));
            }
            impls.push_back(impl);
        } catch (const convgen_bench::Unsupported &e) {
            r.na = true;
            r.message = e.what();
        } catch (const std::exception &e) {
            r.error = true;
            r.message = e.what();
        }
    }
    if (fns.empty()) return;
    std::vector<Timing> timings;
    try {
        timings = time_group(fns, g_opt.seconds);
    } catch (const std::exception &e) {
        for (Impl impl : impls) {
            Result &r = g_results[{li, impl, threads}];
            r.error = true;
            r.message = std::string("while timed: ") + e.what();
        }
        return;
    }
    for (size_t k = 0; k < impls.size(); ++k) {
        Result &r = g_results[{li, impls[k], threads}];
        r.ran = true;
        r.timing = timings[k];
    }
}

void bench_convgen(benchmark::State &state, size_t li, int threads) {
    time_layer(li, threads);
    LayerCase &lc = g_layers[li];
    const Result &r = g_results[{li, kConvgen, threads}];
    if (!r.ran) {
        state.SkipWithError(r.message.c_str());
        return;
    }
    const Timing &t = r.timing;
    for (auto _ : state) state.SetIterationTime(t.median);
    set_common_counters(state, lc, threads, t);
    state.counters["compile_s"] = lc.kernel_for(threads).compile_s;
    if (lc.ref_checked) {
        state.counters["ref_ok"] = lc.ref_ok;
        state.counters["ref_max_err"] = lc.ref_err;
    }
    state.SetLabel(lc.ref_ok ? r.describe : "MISMATCH vs reference; " + r.describe);
}

void bench_peer(benchmark::State &state, size_t li, Impl impl, int threads) {
    time_layer(li, threads);
    LayerCase &lc = g_layers[li];
    const Result &r = g_results[{li, impl, threads}];
    if (!r.ran) {
        state.SkipWithError(r.message.c_str());
        return;
    }
    const Timing &t = r.timing;
    for (auto _ : state) state.SetIterationTime(t.median);
    set_common_counters(state, lc, threads, t);
    state.counters["check_ok"] = r.check_ok;
    state.counters["max_err"] = r.max_err;
    state.counters["act_fused"] = r.fused;
    auto cg = g_results.find({li, kConvgen, threads});
    if (cg != g_results.end() && cg->second.ran) {
        state.counters["convgen_speedup"] = t.median / cg->second.timing.median;
    }
    std::string label = r.describe;
    if (!r.fused) label = "UNFUSED activation: " + label;
    if (!r.check_ok) label = "MISMATCH vs convgen; " + label;
    state.SetLabel(label);
}

// ---------------------------------------------------------------------------------------------
// The summary table.

const Result *find(size_t li, Impl impl, int threads) {
    auto it = g_results.find({li, impl, threads});
    return it == g_results.end() ? nullptr : &it->second;
}

std::string fmt(const char *f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

void print_table(FILE *out) {
    const bool peers[3] = {true, g_opt.onednn, g_opt.xnnpack};
    std::fprintf(out, "\nconvgen_bench summary (median of timed passes; speedup = peer time / convgen time, "
                      ">1 = convgen faster)\n");
    size_t width = 14;
    for (const auto &lc : g_layers) width = std::max(width, lc.name.size());
    std::vector<std::string> failures;
    bool contended_entries = false;
    for (int threads : g_opt.threads) {
        const Machine &m = g_machine[threads];
        std::fprintf(out, "\n== %d thread%s: FMA peak %.1f GFLOP/s (%s, %.1f per thread), triad %.1f GB/s ==\n",
                     threads, threads > 1 ? "s" : "", m.peak.gflops, m.peak.isa.c_str(), m.peak.gflops / threads,
                     m.triad_gbs);
        std::fprintf(out, "%-*s %8s | %9s %7s %6s", int(width), "layer", "MFLOP", "convgen", "GFLOP/s", "%peak");
        if (peers[kOneDnn]) std::fprintf(out, " | %9s %6s %8s", "oneDNN", "%peak", "vs dnn");
        if (peers[kXnnpack]) std::fprintf(out, " | %9s %6s %8s", "XNNPACK", "%peak", "vs xnn");
        const bool scaling = threads != g_opt.threads.front();
        if (scaling) std::fprintf(out, " | %7s", "scaling");
        std::fprintf(out, " | check\n");
        std::fprintf(out, "%-*s %8s | %9s %7s %6s", int(width), "", "", "ms", "", "");
        if (peers[kOneDnn]) std::fprintf(out, " | %9s %6s %8s", "ms", "", "");
        if (peers[kXnnpack]) std::fprintf(out, " | %9s %6s %8s", "ms", "", "");
        if (scaling) std::fprintf(out, " | %7s", ("vs " + std::to_string(g_opt.threads.front()) + "t").c_str());
        std::fprintf(out, " |\n");
        double log_sum[3] = {0, 0, 0};
        int count[3] = {0, 0, 0};
        bool unfused_seen = false;
        for (size_t li = 0; li < g_layers.size(); ++li) {
            const LayerCase &lc = g_layers[li];
            if (!find(li, kConvgen, threads) && !find(li, kOneDnn, threads) && !find(li, kXnnpack, threads)) {
                continue;  // filtered out
            }
            const Result *cg = find(li, kConvgen, threads);
            const bool cg_ok = cg && cg->ran;
            const double peak = m.peak.gflops;
            auto gflops = [&](const Result *r) { return lc.spec.flops() / r->timing.median * 1e-9; };
            std::string check;
            std::fprintf(out, "%-*s %8.1f |", int(width), lc.name.c_str(), lc.spec.flops() * 1e-6);
            // More CPU time than the thread count allows means the thread setting did not apply.
            // CPUs busy with other processes while timing: that entry's time is not to be trusted.
            auto overused = [&](const Result *r, const char *who) {
                if (r->timing.cores > threads + 0.25) check += std::string(" ") + who + " used " + fmt("%.1f", r->timing.cores) + " cores!";
                if (r->timing.others > 0.15) {
                    check += std::string(" ") + who + " contended(" + fmt("%.1f", r->timing.others) + " CPU)";
                    contended_entries = true;
                }
                if (r->timing.canary < 0.9) {
                    check += std::string(" ") + who + " slow-machine(" + fmt("%.0f", 100 * r->timing.canary) + "%)";
                    contended_entries = true;
                }
            };
            if (cg_ok) {
                std::fprintf(out, " %9.3f %7.1f %5.1f%%", cg->timing.median * 1e3, gflops(cg), 100 * gflops(cg) / peak);
                if (!cg->check_ok) check += " convgen!=ref";
                overused(cg, "convgen");
            } else {
                std::fprintf(out, " %9s %7s %6s", cg && cg->error ? "error" : "-", "", "");
                if (cg && cg->error) failures.push_back(lc.name + " convgen: " + cg->message);
            }
            for (Impl impl : {kOneDnn, kXnnpack}) {
                if (!peers[impl]) continue;
                const Result *r = find(li, impl, threads);
                if (r && r->ran) {
                    std::string time = fmt("%.3f", r->timing.median * 1e3) + (r->fused ? "" : "*");
                    unfused_seen |= !r->fused;
                    std::string ratio = cg_ok ? fmt("%.2fx", r->timing.median / cg->timing.median) : "-";
                    std::fprintf(out, " | %9s %5.1f%% %8s", time.c_str(), 100 * gflops(r) / peak, ratio.c_str());
                    if (cg_ok) {
                        log_sum[impl] += std::log(r->timing.median / cg->timing.median);
                        ++count[impl];
                    }
                    if (!r->check_ok) {
                        check += std::string(" ") + kImplName[impl] + " MISMATCH(" + fmt("%.2g", r->max_err) + ")";
                    }
                    overused(r, kImplName[impl]);
                } else {
                    std::fprintf(out, " | %9s %6s %8s", r && r->na ? "n/a" : (r && r->error ? "error" : "-"), "", "");
                    if (r && (r->na || r->error)) failures.push_back(lc.name + " " + kImplName[impl] + ": " + r->message);
                }
            }
            if (scaling) {
                const Result *base = find(li, kConvgen, g_opt.threads.front());
                if (cg_ok && base && base->ran) {
                    std::fprintf(out, " | %6.2fx", base->timing.median / cg->timing.median);
                } else {
                    std::fprintf(out, " | %7s", "-");
                }
            }
            std::fprintf(out, " | %s\n", check.empty() ? "ok" : check.c_str() + 1);
        }
        std::fprintf(out, "geomean convgen speedup at %d thread%s:", threads, threads > 1 ? "s" : "");
        for (Impl impl : {kOneDnn, kXnnpack}) {
            if (!peers[impl]) continue;
            if (count[impl]) {
                std::fprintf(out, "  vs %s %.3fx (%d layers)", kImplName[impl], std::exp(log_sum[impl] / count[impl]),
                             count[impl]);
            } else {
                std::fprintf(out, "  vs %s -", kImplName[impl]);
            }
        }
        std::fprintf(out, "\n");
        if (unfused_seen) {
            std::fprintf(out, "  * XNNPACK fuses only min/max clamps: this layer's activation ran as separate XNNPACK "
                              "operator(s), included in its time.\n");
        }
    }
    // Contention: another process on the CPUs makes multi-thread numbers meaningless (an OpenMP
    // barrier waits a whole scheduler tick for a descheduled thread). Say so.
    std::fprintf(out, "\nmachine check: FMA peak before/after the layers:");
    bool contended = false;
    for (int threads : g_opt.threads) {
        const Machine &m = g_machine[threads];
        std::fprintf(out, "  %dt %.1f/%.1f GFLOP/s", threads, m.peak.gflops, m.peak_after);
        const double one = g_machine.begin()->second.peak.gflops / g_machine.begin()->first;
        const double expect = one * std::min(threads, g_cpus);
        if (m.peak.gflops < 0.85 * expect || m.peak_after < 0.85 * expect) contended = true;
    }
    std::fprintf(out, "  (%d CPUs)\n", g_cpus);
    if (contended || contended_entries) {
        std::fprintf(out, "*** WARNING: another process was using the CPUs (the FMA peak did not scale or dropped, or "
                          "entries are marked 'contended' or 'slow-machine'): those timings are unreliable. ***\n");
    }
    if (!failures.empty()) {
        std::fprintf(out, "\nnot measured:\n");
        std::sort(failures.begin(), failures.end());
        failures.erase(std::unique(failures.begin(), failures.end()), failures.end());
        for (const auto &f : failures) std::fprintf(out, "  %s\n", f.c_str());
    }
    if (g_check_failed) {
        std::fprintf(out, "\n*** SOME OUTPUT CHECKS FAILED (see 'check' above and the messages on stderr) ***\n");
    }
}

// True when Google Benchmark will print JSON or CSV to stdout (then the table goes to stderr).
bool stdout_is_machine_format(int argc, char **argv) {
    bool machine = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--benchmark_format=", 0) == 0) machine = a != "--benchmark_format=console";
    }
    return machine;
}

}  // namespace

int main(int argc, char **argv) {
    g_opt = parse_options(&argc, argv);
    const bool table_to_stderr = stdout_is_machine_format(argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

    try {
        g_target = convgen::canonical_target(g_opt.convgen_target);
        std::vector<LayerSpec> specs;
        if (g_opt.layers.empty()) {
            specs = convgen::parse_suite_file(g_opt.suite);
        } else {
            for (const auto &text : g_opt.layers) specs.push_back(convgen::parse_layer_spec(text));
        }
        if (specs.empty()) usage_error("no layers in " + g_opt.suite);
        std::map<std::string, int> seen;
        for (size_t i = 0; i < specs.size(); ++i) {
            LayerCase lc;
            lc.spec = specs[i];
            lc.name = specs[i].name.empty() ? "layer" + std::to_string(i) : specs[i].name;
            if (seen[lc.name]++) lc.name += "_" + std::to_string(i);
            lc.raw = convgen::random_raw_weights(lc.spec, 1000 + unsigned(i));
            lc.weights = convgen::fold_batchnorm(lc.spec, lc.raw);
            lc.input = convgen::random_input(lc.spec, 2000 + unsigned(i));
            g_layers.push_back(std::move(lc));
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "convgen_bench: error: %s\n", e.what());
        return 2;
    }

    // Size convgen's pool before any kernel runs: a Halide pool that has started with more threads
    // does not shrink (see --threads), and one started before set_num_threads uses one per core.
    convgen::set_num_threads(g_opt.threads.front());

    // The machine, measured in this process before the layers.
    g_cpus = std::max(1u, std::thread::hardware_concurrency());
    for (int threads : g_opt.threads) {
        Machine m;
        m.peak = convgen_bench::measure_fma_peak(threads);
        // Another process can only lower it: while it falls short of what the smallest thread
        // count promises per thread, wait a second and measure again (5 tries; keep the best).
        const double expect =
            g_machine.empty() ? 0 : g_machine.begin()->second.peak.gflops / g_machine.begin()->first * std::min(threads, g_cpus);
        for (int again = 0; again < 4 && m.peak.gflops < 0.9 * expect; ++again) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            m.peak.gflops = std::max(m.peak.gflops, convgen_bench::measure_fma_peak(threads).gflops);
        }
        m.triad_gbs = convgen_bench::measure_triad_gbs(threads);
        g_machine[threads] = m;
        const std::string t = std::to_string(threads);
        benchmark::AddCustomContext("fma_peak_gflops_t" + t, fmt("%.2f", m.peak.gflops));
        benchmark::AddCustomContext("triad_gbs_t" + t, fmt("%.2f", m.triad_gbs));
    }
    benchmark::AddCustomContext("fma_isa", g_machine.begin()->second.peak.isa);
    std::string thread_list;
    for (int t : g_opt.threads) thread_list += (thread_list.empty() ? "" : ",") + std::to_string(t);
    benchmark::AddCustomContext("convgen_threads", thread_list);
    benchmark::AddCustomContext("convgen_suite", g_opt.layers.empty() ? g_opt.suite : "--layer");
    benchmark::AddCustomContext("convgen_target", g_target);
    benchmark::AddCustomContext("convgen_seconds_per_entry", fmt("%g", g_opt.seconds));
    benchmark::AddCustomContext("timing", "real_time = median wall time of one forward pass (manual time)");

    for (int threads : g_opt.threads) {
        for (size_t li = 0; li < g_layers.size(); ++li) {
            const std::string base = g_layers[li].name + "/";
            const std::string suffix = "/threads:" + std::to_string(threads);
            auto reg = [&](Impl impl) {
                const std::string name = base + kImplName[impl] + suffix;
                benchmark::internal::Benchmark *b =
                    impl == kConvgen
                        ? benchmark::RegisterBenchmark(name.c_str(), [li, threads](benchmark::State &s) {
                              bench_convgen(s, li, threads);
                          })
                        : benchmark::RegisterBenchmark(name.c_str(), [li, impl, threads](benchmark::State &s) {
                              bench_peer(s, li, impl, threads);
                          });
                b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
            };
            reg(kConvgen);
            if (g_opt.onednn) reg(kOneDnn);
            if (g_opt.xnnpack) reg(kXnnpack);
        }
    }

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    for (auto &[threads, m] : g_machine) m.peak_after = convgen_bench::measure_fma_peak(threads).gflops;
    std::fflush(stdout);
    print_table(table_to_stderr ? stderr : stdout);
    return g_check_failed ? 1 : 0;
}
