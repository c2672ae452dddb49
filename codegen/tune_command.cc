// `convgen tune` and `convgen db show|merge|prune` (see codegen/tune_command.h).
#include "codegen/tune_command.h"

#include <Halide.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "schedules/default_schedules.h"
#include "schedules/tuner.h"

namespace convgen {

namespace {

volatile bool g_stop = false;

extern "C" void on_stop_signal(int) { g_stop = true; }

void parse_shard(const std::string &text, int &index, int &count) {
    const size_t slash = text.find('/');
    try {
        size_t a = 0, b = 0;
        if (slash == std::string::npos) throw std::invalid_argument("no slash");
        index = std::stoi(text.substr(0, slash), &a);
        count = std::stoi(text.substr(slash + 1), &b);
        if (a != slash || b != text.size() - slash - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception &) {
        throw Error("--shard '" + text + "' is not i/N (e.g. 0/4)");
    }
    if (count < 1 || count > 10000 || index < 0 || index >= count) throw Error("--shard '" + text + "': need 0 <= i < N <= 10000");
}

// Candidates are measured as apps run them: through the JIT's disk cache, linked into a shared
// library and loaded. Measured on AVX-512: a dwconv schedule with 64 accumulators ran 0.80 ms
// compiled in memory and 0.97-1.00 ms from the disk cache (schedules that do not spill ran the same
// either way), so a tuner measuring in-memory kernels stored a winner that was 13% slower than the
// record it replaced. The candidates go to a private cache directory, removed at the end, so the
// user's cache does not fill with hundreds of losers.
class PrivateKernelCache {
public:
    PrivateKernelCache() {
        const char *tmp = std::getenv("TMPDIR");
        std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/convgen-tune-XXXXXX";
        if (!::mkdtemp(pattern.data())) throw Error("tune: cannot create a private kernel cache under '" + pattern + "'");
        path_ = pattern;
        const char *old = std::getenv("CONVGEN_CACHE_DIR");
        if (old) old_ = old;
        had_old_ = old != nullptr;
        ::setenv("CONVGEN_CACHE_DIR", path_.c_str(), 1);
    }
    ~PrivateKernelCache() {
        if (had_old_) {
            ::setenv("CONVGEN_CACHE_DIR", old_.c_str(), 1);
        } else {
            ::unsetenv("CONVGEN_CACHE_DIR");
        }
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    PrivateKernelCache(const PrivateKernelCache &) = delete;
    PrivateKernelCache &operator=(const PrivateKernelCache &) = delete;

private:
    std::string path_, old_;
    bool had_old_ = false;
};

}  // namespace

int cmd_tune(const TuneCommand &c) {
    if (c.db.empty()) throw Error("tune: --db FILE is required (where the tuned schedules go)");
    TuneOptions opt;
    opt.db_path = c.db;
    opt.target = canonical_target(c.target);
    opt.isa = isa_family_of(Halide::Target(opt.target));
    if (c.threads < 1) throw Error("tune: --threads must be >= 1 (got " + std::to_string(c.threads) + ")");
    opt.threads = c.threads;
    opt.budget_seconds = parse_duration(c.budget);
    opt.per_layer_seconds = c.per_layer.empty() ? 0 : parse_duration(c.per_layer);
    parse_shard(c.shard, opt.shard_index, opt.shard_count);
    opt.autoschedulers = !c.no_autoschedulers;
    opt.progress_tty = ::isatty(2);
    opt.prepare_forked_child = run_parallel_loops_serially;
    std::vector<LayerSpec> specs = parse_suite_file(c.suite);
    if (specs.empty()) throw Error("tune: suite '" + c.suite + "' has no layers");
    // Fail before tuning, not after: the database must be readable and its directory writable.
    ScheduleDb::update(c.db, [](ScheduleDb &) {});

    set_num_threads(opt.threads);
    // Adams2019's default beam search (beam 32) takes minutes per layer; tuning uses its greedy
    // mode unless the user sets HL_BEAM_SIZE.
    ::setenv("HL_BEAM_SIZE", "1", 0);
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    CompileFn compile = [&](const LayerSpec &spec, const ScheduleParams &p) {
        CompileOptions o;
        o.target = opt.target;
        o.has_schedule = true;
        o.schedule = p;
        o.disk_cache = true;  // into the private cache below (CONVGEN_DISK_CACHE=0 still turns it off)
        return jit_compile(spec, o).kernel;
    };
    PrivateKernelCache private_cache;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<LayerTuneResult> results = tune_suite(specs, opt, compile, std::cerr, &g_stop);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::printf("%-16s %12s %12s %12s %12s %12s %9s %6s\n", "layer", "heuristic_ms", "Mullapudi_ms", "Li2018_ms", "Adams2019_ms",
                "tuned_ms", "speedup", "cands");
    double log_sum = 0, log_auto = 0;
    int n = 0, n_auto = 0;
    for (const auto &r : results) {
        auto cell = [](double v) {
            char b[32];
            if (v > 0) std::snprintf(b, sizeof b, "%.4f", v);
            else std::snprintf(b, sizeof b, "-");
            return std::string(b);
        };
        const double speedup = r.heuristic_ms > 0 && r.tuned_ms > 0 ? r.heuristic_ms / r.tuned_ms : 0;
        std::printf("%-16s %12s %12s %12s %12s %12s %8.2fx %6d%s\n", r.spec.name.c_str(), cell(r.heuristic_ms).c_str(),
                    cell(r.autoscheduler_ms[0]).c_str(), cell(r.autoscheduler_ms[1]).c_str(), cell(r.autoscheduler_ms[2]).c_str(),
                    cell(r.tuned_ms).c_str(), speedup, r.candidates, r.skipped ? " (already tuned)" : "");
        if (speedup > 0 && !r.skipped) {
            log_sum += std::log(speedup);
            ++n;
        }
        double best_auto = 0;
        for (double a : r.autoscheduler_ms) {
            if (a > 0 && (best_auto == 0 || a < best_auto)) best_auto = a;
        }
        if (best_auto > 0 && r.tuned_ms > 0 && !r.skipped) {
            log_auto += std::log(best_auto / r.tuned_ms);
            ++n_auto;
        }
    }
    if (n) std::printf("geomean tuned vs heuristic: %.3fx over %d layers\n", std::exp(log_sum / n), n);
    if (n_auto) std::printf("geomean tuned vs best autoscheduler: %.3fx over %d layers\n", std::exp(log_auto / n_auto), n_auto);
    std::printf("tuning wall time: %.1f s; database: %s\n", wall, c.db.c_str());
    if (g_stop) {
        std::fprintf(stderr, "convgen: tuning interrupted; the database is valid and a re-run resumes\n");
        return 130;
    }
    return 0;
}

int cmd_db(const DbCommand &c) {
    if (c.action == "show") {
        const ScheduleDb db = ScheduleDb::load(c.db);
        std::printf("%zu records in %s\n", db.records().size(), c.db.c_str());
        for (const auto &r : db.records()) {
            std::printf("%s\n  target %s, %d thread(s): %s\n  %.4g ms (%.1f GFLOP/s%s), %s, convgen %s, Halide %s, %s%s\n", r.spec.c_str(),
                        r.target.c_str(), r.threads, r.schedule.c_str(), r.median_ms, r.gflops,
                        r.heuristic_ms > 0 ? (", " + std::to_string(r.heuristic_ms / r.median_ms).substr(0, 4) + "x heuristic").c_str() : "",
                        r.cpu.c_str(), r.convgen_version.c_str(), r.halide_version.c_str(), r.date.c_str(),
                        r.complete ? "" : " (incomplete)");
        }
        return 0;
    }
    if (c.action == "merge") {
        if (c.inputs.empty()) throw Error("db merge: give the databases to merge");
        std::vector<ScheduleDb> inputs;
        for (const auto &in : c.inputs) inputs.push_back(ScheduleDb::load(in));  // all readable before writing
        const ScheduleDb out = ScheduleDb::update(c.db, [&](ScheduleDb &db) {
            for (const auto &in : inputs) db.merge(in);
        });
        std::printf("%zu records in %s\n", out.records().size(), c.db.c_str());
        return 0;
    }
    if (c.action == "prune") {
        ScheduleDb::load(c.db);  // prune needs an existing database; update() would create one
        int removed = 0;
        const ScheduleDb db = ScheduleDb::update(c.db, [&](ScheduleDb &d) {
            removed = d.prune(c.keep_other_cpus ? "" : host_cpu_model(), convgen_version(), halide_version());
        });
        std::printf("removed %d records (other CPU models or versions); %zu left in %s\n", removed, db.records().size(), c.db.c_str());
        return 0;
    }
    throw Error("db: unknown action '" + c.action + "' (show, merge or prune)");
}

}  // namespace convgen
