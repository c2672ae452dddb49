#include "schedules/tuner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <optional>
#include <thread>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/errors.h"
#include "runtime/reference.h"
#include "runtime/weights.h"

namespace convgen {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double s) {
    char buf[32];
    const int total = static_cast<int>(std::max(0.0, s) + 0.5);
    std::snprintf(buf, sizeof buf, "%d:%02d", total / 60, total % 60);
    return buf;
}

// One layer's fixed data: weights, input and the reference output every candidate must match.
struct LayerBench {
    LayerSpec spec;
    FoldedWeights folded;
    Tensor input, expected;
};

struct Measured {
    ScheduleParams params;
    double median_ms = 0;
    std::shared_ptr<const Kernel> kernel;
    PackedWeights packed;
};

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Runs the kernel `reps` times and returns the per-run times in ms.
std::vector<double> time_runs(const Kernel &kernel, const LayerBench &b, const PackedWeights &packed, Tensor &out, int reps) {
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
        const auto t0 = Clock::now();
        kernel.run(b.input, packed, out);
        ms.push_back(seconds_since(t0) * 1e3);
    }
    return ms;
}

// Runs the kernel once in a forked child and returns "" when it returned (right or wrong: the
// caller checks the answer), else why not. Candidate kernels are generated code: one that faults
// (Halide 14 once emitted an aligned 512-bit load at a 32-byte offset for one schedule) would end
// the whole tuning run if it ran here first. The child runs its parallel loops on its one thread
// (opt.prepare_forked_child), so a fault that needs two tasks racing is not seen; the same
// memory accesses happen, in order. Exit codes: 0 returned, 3 threw (a Halide runtime error,
// which the caller's own run reports), anything else or a signal: it crashed.
std::string first_run_in_child(const Kernel &kernel, const LayerBench &b, const PackedWeights &packed, Tensor &out,
                               const TuneOptions &opt) {
    // The child holds the only write end of `exited` (close-on-exec, so the compilers the other
    // thread starts never hold it): its exit wakes poll() at once, without polling waitpid.
    int exited[2];
    if (::pipe2(exited, O_CLOEXEC) != 0) throw Error(std::string("tune: cannot create a pipe to watch a candidate's process: ") + std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        ::close(exited[0]);
        ::close(exited[1]);
        throw Error(std::string("tune: cannot fork a process to try a candidate in: ") + std::strerror(e));
    }
    if (pid == 0) {
        opt.prepare_forked_child();
        int rc = 0;
        try {
            kernel.run(b.input, packed, out);
        } catch (...) {
            rc = 3;
        }
        ::_exit(rc);  // no atexit handlers, no flushing the parent's buffered output twice
    }
    ::close(exited[1]);
    const auto deadline = Clock::now() + std::chrono::duration<double>(opt.candidate_timeout_seconds);
    bool returned = false;
    int poll_error = 0;
    for (;;) {
        const double left_ms = std::chrono::duration<double, std::milli>(deadline - Clock::now()).count();
        pollfd watch{exited[0], POLLIN, 0};
        const int r = ::poll(&watch, 1, static_cast<int>(std::clamp(std::ceil(left_ms), 0.0, 1e9)));
        if (r > 0) returned = true;
        if (r < 0 && errno != EINTR) poll_error = errno;
        if (r >= 0 || poll_error) break;
    }
    ::close(exited[0]);
    if (!returned) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw Error(std::string("tune: waitpid on a candidate's process: ") + std::strerror(errno));
    }
    if (poll_error) throw Error(std::string("tune: poll on a candidate's process: ") + std::strerror(poll_error));
    if (!returned) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "did not finish a run in %g s (killed)", opt.candidate_timeout_seconds);
        return buf;
    }
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        return "crashed: signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3) {
        return "crashed: exit status " + std::to_string(WEXITSTATUS(status));  // e.g. a sanitizer's report
    }
    return "";
}

// Compiles, checks against the reference, times. Returns false (and says why in `why`) when the
// candidate crashes, does not compile or gives wrong answers: it is rejected, never kept.
bool evaluate(const std::shared_ptr<const Kernel> &kernel, const LayerBench &b, const TuneOptions &opt, Measured &m, std::string &why) {
    m.kernel = kernel;
    m.packed = kernel->pack(b.folded);
    Tensor out(b.spec.output_shape());  // the child writes its own copy of it
    why = first_run_in_child(*kernel, b, m.packed, out, opt);
    if (!why.empty()) return false;
    kernel->run(b.input, m.packed, out);
    double err = 0, limit = 0;
    if (!within_tolerance(b.expected, out, &err, &limit)) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "wrong results: max|err| %.3g > %.3g", err, limit);
        why = buf;
        return false;
    }
    // Warm up, then enough repeats for ~0.15 s (at least 5, at most 40).
    const std::vector<double> first = time_runs(*kernel, b, m.packed, out, 2);
    const int reps = std::clamp(static_cast<int>(150.0 / std::max(first[1], 1e-3)), 5, 40);
    m.median_ms = median_of(time_runs(*kernel, b, m.packed, out, reps));
    return true;
}

int register_count(IsaFamily isa) { return (isa == IsaFamily::AVX2 || isa == IsaFamily::Generic) ? 16 : 32; }

// A random point of the template space (the vector width stays the base's).
ScheduleParams random_params(const ScheduleParams &base, const LayerSpec &spec, IsaFamily isa, std::mt19937 &rng) {
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    ScheduleParams q = base;
    const int registers = register_count(isa);
    q.vectorize_channels = spec.layout == Layout::NCHW && channel_vectorization_supported(spec, q.vector_width) ? uniform(0, 1) : 0;
    const bool rows_in_tile = !along_channels(spec, q);  // the NCHW template along x
    do {
        q.tile_vectors = uniform(1, 8);
        q.tile_rows = uniform(1, max_tile_rows(spec, q));
        q.tile_y = rows_in_tile ? uniform(1, 3) : 1;
    } while (q.tile_vectors * q.tile_rows * q.tile_y + std::max(q.tile_vectors * q.tile_y, q.tile_rows) + 1 >
             registers + registers / 2);
    const int rows = std::max(1, spec.out_h() * spec.n);
    q.parallel_rows = std::min(rows, 1 << uniform(0, 4));
    const bool grouped_nchw = spec.kind == LayerKind::Conv && spec.g > 1 && spec.layout == Layout::NCHW;
    q.parallel_channels = grouped_nchw && !q.vectorize_channels ? uniform(0, 1) : 0;  // along x only
    q.depthwise_per_task = spec.kind == LayerKind::DepthwisePointwise ? uniform(0, 1) : 0;
    q.flat_rows = rows_in_tile && flat_rows_supported(spec) && flat_tile_vectors_supported(q.tile_vectors) ? uniform(0, 1) : 0;
    q.channel_blocks = 1;
    if (channel_blocks_apply(spec, q)) q.channel_blocks = 1 << uniform(0, 2);
    q.stream_input = stream_applies(spec, q) ? uniform(0, 1) : 0;
    q.depthwise_rows = std::min(1 << uniform(0, 2), depthwise_rows_at_once(spec, q));
    q.transpose_store = transpose_store_applies(spec, q) ? uniform(0, 1) : 0;
    return q;
}

class Progress {
public:
    Progress(std::ostream &log, bool tty) : log_(log), tty_(tty) {}
    void update(const std::string &line) {
        if (tty_) {
            log_ << "\r\033[K" << line << std::flush;
        }
    }
    void event(const std::string &line) {
        if (tty_) log_ << "\r\033[K";
        log_ << line << "\n" << std::flush;
    }

private:
    std::ostream &log_;
    bool tty_;
};

}  // namespace

bool uniformly_slower(const std::vector<double> &before, const std::vector<double> &after, double factor) {
    if (before.empty() || before.size() != after.size()) return false;
    for (size_t i = 0; i < before.size(); ++i) {
        if (!(after[i] > factor * before[i])) return false;
    }
    return true;
}

ScheduleParams seed_from_other_isa(ScheduleParams q, const LayerSpec &spec, IsaFamily isa, int vector_width) {
    q.vector_width = vector_width;
    const int registers = register_count(isa);
    auto accumulators = [&] { return q.tile_vectors * q.tile_rows * (q.flat_rows ? 1 : q.tile_y); };
    while (accumulators() > registers - 4 && (q.tile_vectors > 1 || q.tile_rows > 1 || q.tile_y > 1)) {
        if (q.tile_y > 1 && !q.flat_rows) {
            --q.tile_y;
        } else if (q.tile_vectors >= q.tile_rows && q.tile_vectors > 1) {
            q.tile_vectors = (q.tile_vectors + 1) / 2;
        } else {
            q.tile_rows = (q.tile_rows + 1) / 2;
        }
    }
    return adapt_to_spec(q, spec);  // after the cut: it only lowers tile_rows, so the tile still fits
}

std::vector<ScheduleParams> schedule_mutations(const ScheduleParams &p, const LayerSpec &spec, IsaFamily isa, int threads) {
    std::vector<ScheduleParams> out;
    // Rows in the register tile exist only in the NCHW template vectorised along x.
    const bool rows_in_tile = !along_channels(spec, p);
    auto add = [&](ScheduleParams q) {
        // Accumulators beyond twice the register file only spill: not worth a measurement. Along
        // channels tile_rows counts pixels of a row, where 9..16 can split a row evenly (27 = 3 x 9).
        if (q.tile_vectors < 1 || q.tile_rows < 1 || q.tile_vectors > 8 || q.tile_rows > max_tile_rows(spec, q)) return;
        // A flat tile's rows add pixels, not accumulators: up to 8 rows (a 7x7 image in one run).
        if (q.tile_y < 1 || q.tile_y > (q.flat_rows ? 8 : 4) || (q.tile_y > 1 && !rows_in_tile)) return;
        if (q.flat_rows && !(rows_in_tile && flat_rows_supported(spec))) return;
        if (q.flat_rows && !flat_tile_vectors_supported(q.tile_vectors)) return;
        if (q.channel_blocks < 1 || q.channel_blocks > 8 || (q.channel_blocks > 1 && !channel_blocks_apply(spec, q))) return;
        if (q.stream_input && !stream_applies(spec, q)) q.stream_input = 0;  // a knob the new template ignores
        if (q.transpose_store && !transpose_store_applies(spec, q)) q.transpose_store = 0;
        if (q.depthwise_rows < 1 || q.depthwise_rows > 8) return;
        // The depthwise tile's rows are one depthwise computation's at most, 1 where the knob does
        // not apply (as adapt_to_spec clamps them).
        q.depthwise_rows = std::min(q.depthwise_rows, depthwise_rows_at_once(spec, q));
        // A flat tile's rows are one pixel run: its accumulators are tile_vectors x tile_rows.
        const int accumulators = q.tile_vectors * q.tile_rows * (q.flat_rows ? 1 : q.tile_y);
        if (accumulators > 2 * register_count(isa)) return;
        if (q.parallel_rows < 1 || q.parallel_rows > std::max(1, spec.out_h() * spec.n)) return;
        out.push_back(q);
    };
    for (int d : {-1, 1}) {
        ScheduleParams q = p;
        q.tile_vectors += d;
        add(q);
        q = p;
        q.tile_rows += d;
        add(q);
        q = p;
        q.tile_y += d;
        add(q);
    }
    for (int f : {2, 0}) {
        ScheduleParams q = p;
        q.parallel_rows = f ? p.parallel_rows * 2 : p.parallel_rows / 2;
        add(q);
    }
    // Row blocks that split an image evenly between the threads: halving and doubling alone give a
    // 28-row image 4 tasks of 8, 8, 8 and 4 rows, or 2 of 16 and 12, leaving one of two threads idle
    // an eighth of the time.
    for (int m = 1; threads > 1 && m <= 4; ++m) {
        ScheduleParams q = p;
        q.parallel_rows = std::max(1, (spec.out_h() + m * threads - 1) / (m * threads));
        if (q.parallel_rows != p.parallel_rows) add(q);
    }
    const bool grouped_nchw = spec.kind == LayerKind::Conv && spec.g > 1 && spec.layout == Layout::NCHW;
    if (spec.layout == Layout::NCHW && channel_vectorization_supported(spec, p.vector_width)) {
        ScheduleParams q = p;
        q.vectorize_channels ^= 1;
        if (q.vectorize_channels) q.tile_y = 1;
        if (q.vectorize_channels) q.parallel_channels = 0;  // channel tasks are an along-x schedule
        q.tile_rows = std::min(q.tile_rows, max_tile_rows(spec, q));
        if (!channel_blocks_apply(spec, q)) q.channel_blocks = 1;
        add(q);
    }
    if (grouped_nchw && !along_channels(spec, p)) {
        ScheduleParams q = p;
        q.parallel_channels ^= 1;
        add(q);
    }
    if (spec.kind == LayerKind::DepthwisePointwise) {
        ScheduleParams q = p;
        q.depthwise_per_task ^= 1;
        if (!q.depthwise_per_task) q.channel_blocks = 1;
        add(q);
    }
    for (int f : {2, 0}) {
        ScheduleParams q = p;
        q.channel_blocks = f ? p.channel_blocks * 2 : p.channel_blocks / 2;
        add(q);
    }
    if (stream_applies(spec, p)) {
        ScheduleParams q = p;
        q.stream_input ^= 1;
        add(q);
    }
    if (transpose_store_applies(spec, p)) {
        ScheduleParams q = p;
        q.transpose_store ^= 1;
        add(q);
    }
    if (depthwise_rows_apply(spec, p)) {
        for (int rows : {p.depthwise_rows * 2, p.depthwise_rows / 2}) {
            // Doubling past the rows of one depthwise computation gives those rows, maybe p's own.
            rows = std::min(rows, depthwise_rows_at_once(spec, p));
            if (rows == p.depthwise_rows) continue;
            ScheduleParams q = p;
            q.depthwise_rows = rows;
            add(q);
        }
    }
    // Rows along x that are whole vectors: the tile of one whole row (no lane computed twice),
    // with as many channel rows as the registers hold beside 4 operands (7 x 4 spills two
    // accumulators and still runs at the FMA peak on resnext_g32's shape). Single steps from the heuristic's tile
    // seldom get there: resnext_g32's shape (56-pixel rows, 4 channels a group) went from 2 x 4
    // 16-lane vectors to 1 x 4 8-lane ones in a minute's search, 0.31 ms, where 7 x 4 8-lane
    // vectors run 0.29 ms.
    if (rows_in_tile && !p.flat_rows && spec.layout == Layout::NCHW) {
        for (int width : vector_widths(isa)) {
            const int tv = spec.out_w() / width;
            if (spec.out_w() % width != 0 || tv < 1 || tv > 8) continue;
            ScheduleParams q = p;
            q.vector_width = width;
            q.tile_vectors = tv;
            q.tile_y = 1;
            q.tile_rows = std::max(1, (register_count(isa) - 4) / tv);
            q = adapt_to_spec(q, spec);
            if (!(q == p)) add(q);
        }
    }
    // The ISA's other vector width (AVX-512: 8 or 16 lanes), with the register tile's vectors kept
    // and with them scaled to cover the same pixels or channels.
    for (int width : vector_widths(isa)) {
        if (width == p.vector_width) continue;
        ScheduleParams q = p;
        q.vector_width = width;
        add(adapt_to_spec(q, spec));
        const ScheduleParams same_pixels = with_vector_width(p, width, spec);
        if (same_pixels.tile_vectors != p.tile_vectors) add(same_pixels);
    }
    if (flat_rows_supported(spec)) {
        ScheduleParams q = p;
        q.flat_rows ^= 1;
        q.tile_y = std::min(q.tile_y, 4);
        add(q);
        // The flat run of `base`'s pixel tile that is the shortest whole number of tiles (RoundUp
        // computes the rest: one 28-pixel row in tiles of 16 computes 32, four rows exactly 112),
        // in tasks of whole runs; none when no run of 8 rows or fewer is whole tiles.
        auto whole_tile_run = [&](ScheduleParams base) {
            const int tile = base.tile_vectors * base.vector_width;
            for (int ty = 1; ty <= std::min(8, spec.out_h()); ++ty) {
                if (ty * spec.out_w() % tile != 0) continue;
                base.tile_y = ty;
                base.parallel_rows = std::min(spec.out_h() * spec.n, ceil_div(p.parallel_rows, ty) * ty);
                return std::optional<ScheduleParams>(adapt_to_spec(base, spec));
            }
            return std::optional<ScheduleParams>();
        };
        // Turned on: also the whole-tile run of a pixel tile of 1, 2 or 4 vectors. A flat run that is
        // not whole tiles is rarely better than rows along x, so from rows along x the plain toggle
        // above seldom leads anywhere (from shufflenet_g3's record, 3 vectors x 5 channels, no run
        // of 8 rows or fewer is whole tiles of 48).
        if (!p.flat_rows) {
            for (int tv : {1, 2, 4}) {  // flat_tile_vectors_supported
                ScheduleParams r = q;
                r.tile_vectors = tv;
                if (const auto run = whole_tile_run(r)) add(*run);
            }
        }
        // The flat run of a whole task's rows: one pass over each weight per task.
        if (p.flat_rows && p.tile_y != std::min(8, p.parallel_rows)) {
            q = p;
            q.tile_y = std::min(8, p.parallel_rows);
            add(q);
        }
        // The current tile's whole-tile run.
        if (p.flat_rows) {
            const auto run = whole_tile_run(p);
            if (run && run->tile_y != p.tile_y) add(*run);
        }
    }
    return out;
}


double parse_duration(const std::string &text) {
    if (text.empty()) throw Error("duration is empty (e.g. 10m, 90s, 1h)");
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (const std::exception &) {
        used = 0;
    }
    const std::string unit = used ? text.substr(used) : "";
    double scale = 0;
    if (unit.empty() || unit == "s") scale = 1;
    else if (unit == "m" || unit == "min") scale = 60;
    else if (unit == "h") scale = 3600;
    if (used == 0 || scale == 0 || !(v > 0) || !std::isfinite(v) || v * scale > 7 * 24 * 3600.0) {
        throw Error("duration '" + text + "' is not a positive number of seconds, minutes or hours below a week (e.g. 10m, 90s, 1h)");
    }
    return v * scale;
}

std::vector<LayerSpec> shard_of(const std::vector<LayerSpec> &specs, int index, int count) {
    if (count < 1 || index < 0 || index >= count) {
        throw Error("shard " + std::to_string(index) + "/" + std::to_string(count) + " is not i/N with 0 <= i < N");
    }
    std::vector<LayerSpec> out;
    for (size_t i = 0; i < specs.size(); ++i) {
        if (static_cast<int>(i % count) == index) out.push_back(specs[i]);
    }
    return out;
}

std::vector<LayerTuneResult> tune_suite(const std::vector<LayerSpec> &all_specs, const TuneOptions &opt, const CompileFn &compile,
                                        std::ostream &log, const volatile bool *stop) {
    if (!opt.prepare_forked_child) throw Error("tune: TuneOptions::prepare_forked_child is not set (codegen's run_parallel_loops_serially)");
    const std::vector<LayerSpec> specs = shard_of(all_specs, opt.shard_index, opt.shard_count);
    if (specs.empty()) throw Error("shard " + std::to_string(opt.shard_index) + "/" + std::to_string(opt.shard_count) + " has no layers");
    ScheduleDb db = ScheduleDb::load_or_empty(opt.db_path);
    const std::string cpu = host_cpu_model();
    const auto run_start = Clock::now();
    const double per_layer = opt.per_layer_seconds > 0 ? opt.per_layer_seconds : opt.budget_seconds / specs.size();
    Progress progress(log, opt.progress_tty);
    std::mt19937 rng(opt.seed);
    std::vector<LayerTuneResult> results;

    auto save_record = [&](const LayerSpec &spec, const Measured &best, double heuristic_ms, bool complete, int candidates) {
        ScheduleRecord r;
        r.spec = spec.to_string();
        r.target = opt.target;
        r.threads = opt.threads;
        r.schedule = best.params.to_string();
        r.median_ms = best.median_ms;
        r.gflops = spec.flops() / (best.median_ms * 1e-3) * 1e-9;
        r.heuristic_ms = heuristic_ms;
        r.cpu = cpu;
        r.convgen_version = convgen_version();
        r.halide_version = halide_version();
        r.date = utc_now_iso8601();
        r.complete = complete;
        r.candidates = candidates;
        db = ScheduleDb::update(opt.db_path, [&](ScheduleDb &d) { d.upsert(r); });
    };

    for (size_t li = 0; li < specs.size(); ++li) {
        const LayerSpec &spec = specs[li];
        LayerTuneResult result;
        result.spec = spec;
        const std::string label = "[" + std::to_string(li + 1) + "/" + std::to_string(specs.size()) + " " +
                                  (spec.name.empty() ? spec.to_string() : spec.name) + "]";
        // A copy: saving a record replaces the database's record storage.
        std::optional<ScheduleRecord> existing;
        if (const ScheduleRecord *r = db.find_exact(spec.to_string(), opt.target, opt.threads, cpu)) existing = *r;
        if (existing && existing->complete) {
            result.skipped = true;
            result.tuned_ms = existing->median_ms;
            result.heuristic_ms = existing->heuristic_ms;
            result.tuned_schedule = existing->schedule;
            progress.event(label + " already tuned (" + existing->schedule + "), skipped");
            results.push_back(result);
            continue;
        }
        if (stop && *stop) break;
        const auto layer_start = Clock::now();
        const double run_left = opt.budget_seconds - seconds_since(run_start);
        const double layer_budget = std::min(per_layer, std::max(run_left, 0.0));

        LayerBench bench;
        bench.spec = spec;
        const RawWeights raw = random_raw_weights(spec, opt.seed + static_cast<unsigned>(li));
        bench.folded = fold_batchnorm(spec, raw);
        bench.input = random_input(spec, opt.seed + 1000 + static_cast<unsigned>(li));
        bench.expected = reference_forward(spec, raw, bench.input);

        std::map<std::string, double> seen;  // schedule text -> median ms (or -1 if rejected)
        std::vector<Measured> measured;      // accepted, in measurement order
        const ScheduleParams heuristic = host_heuristic_schedule(spec, opt.isa);
        double heuristic_first_ms = 0;
        double best = 0;  // fastest first-pass median so far (0: none yet)

        auto try_kernel = [&](const ScheduleParams &p, std::shared_ptr<const Kernel> kernel, const std::string &compile_error) {
            const std::string text = p.to_string();
            ++result.candidates;
            Measured m;
            m.params = p;
            std::string why = compile_error;
            if (why.empty() && kernel) {
                try {
                    evaluate(kernel, bench, opt, m, why);
                } catch (const Error &e) {
                    why = e.what();
                }
            }
            if (!why.empty()) {
                ++result.rejected;
                seen[text] = -1;
                progress.event(label + " rejected " + text + ": " + why);
                return;
            }
            seen[text] = m.median_ms;
            const bool improved = best == 0 || m.median_ms < best;
            if (improved) best = m.median_ms;
            measured.push_back(m);
            if (p == heuristic && heuristic_first_ms == 0) heuristic_first_ms = m.median_ms;
            if (improved) save_record(spec, m, heuristic_first_ms, false, result.candidates);
            char buf[320];
            const double elapsed = seconds_since(layer_start);
            const double eta = std::max(0.0, layer_budget - elapsed) + per_layer * double(specs.size() - li - 1);
            std::snprintf(buf, sizeof buf, "%s %d candidates, best %.4g ms%s, layer %s/%s, ETA %s", label.c_str(), result.candidates,
                          best, heuristic_first_ms > 0 ? (" (" + std::to_string(heuristic_first_ms / best).substr(0, 4) + "x heuristic)").c_str() : "",
                          format_duration(elapsed).c_str(), format_duration(layer_budget).c_str(), format_duration(eta).c_str());
            progress.update(buf);
            if (!opt.progress_tty && improved) progress.event(std::string(buf) + "  <- " + text);
        };
        auto compile_now = [&](const ScheduleParams &p) {
            try {
                try_kernel(p, compile(spec, p), "");
            } catch (const Error &e) {
                try_kernel(p, nullptr, std::string("does not compile: ") + e.what());
            }
        };

        // Seeds: the heuristic, a previous (interrupted) run's best, this target's winners on
        // other CPU models (the same ISA on another microarchitecture: a good start, not a
        // result) and for other thread counts (a 2-thread run starts from the 1-thread tile; its
        // mutations then adjust the parallel split), this thread count's winners on other
        // targets (fitted to this ISA), and Halide's autoschedulers. The texts are copied first:
        // storing a record replaces the database's record storage.
        compile_now(heuristic);
        // The heuristic's choice within each other template family: a local search from the
        // heuristic's family rarely crosses to another in a minute (each family reads tile_rows
        // differently), and the best family differs by shape.
        for (TemplateFamily family : {TemplateFamily::AlongX, TemplateFamily::FlatRows, TemplateFamily::AlongChannels}) {
            if ((stop && *stop) || seconds_since(layer_start) > layer_budget) break;
            const ScheduleParams q = adapt_to_spec(host_heuristic_schedule(spec, opt.isa, family), spec);
            if (!seen.count(q.to_string())) compile_now(q);
        }
        std::vector<std::string> earlier, other_targets;
        if (existing) earlier.push_back(existing->schedule);
        for (const ScheduleRecord &r : db.records()) {
            if (r.spec != spec.to_string()) continue;
            if (r.target == opt.target && (r.threads != opt.threads || r.cpu != cpu)) earlier.push_back(r.schedule);
            if (r.target != opt.target && r.threads == opt.threads) other_targets.push_back(r.schedule);
        }
        auto seed = [&](const std::string &text, bool other_target) {
            try {
                ScheduleParams prev = ScheduleParams::parse(text);
                if (other_target) {
                    if (!prev.autoscheduler.empty()) return;  // measured here anyway
                    prev = seed_from_other_isa(prev, spec, opt.isa, heuristic.vector_width);
                }
                if (!seen.count(prev.to_string())) compile_now(prev);
            } catch (const Error &) {
            }
        };
        for (const std::string &text : earlier) seed(text, false);
        for (const std::string &text : other_targets) seed(text, true);
        if (opt.autoschedulers) {
            for (int a = 0; a < 3; ++a) {
                if ((stop && *stop) || seconds_since(layer_start) > layer_budget) break;
                ScheduleParams p;
                p.autoscheduler = halide_autoschedulers()[a];
                compile_now(p);
                if (seen[p.to_string()] > 0) result.autoscheduler_ms[a] = seen[p.to_string()];
            }
        }

        // Evolutionary search over the templates: mutate one of the best few, never re-measure.
        // The next candidate compiles on another core while the current one is measured.
        auto pick_next = [&]() -> std::optional<ScheduleParams> {
            std::vector<const Measured *> ranked;
            for (const auto &m : measured) {
                if (m.params.autoscheduler.empty()) ranked.push_back(&m);
            }
            std::sort(ranked.begin(), ranked.end(), [](auto a, auto b) { return a->median_ms < b->median_ms; });
            if (ranked.empty()) return std::nullopt;
            const size_t parents = std::min<size_t>(ranked.size(), 4);
            std::vector<ScheduleParams> pool;
            for (size_t i = 0; i < parents; ++i) {
                for (const auto &q : schedule_mutations(ranked[i]->params, spec, opt.isa, opt.threads)) {
                    if (!seen.count(q.to_string())) {
                        // Mutations of better parents appear more often (rank-weighted).
                        for (size_t w = i; w < parents; ++w) pool.push_back(q);
                    }
                }
            }
            if (pool.empty()) {  // a local optimum: jump two steps from the best
                for (const auto &q1 : schedule_mutations(ranked[0]->params, spec, opt.isa, opt.threads)) {
                    for (const auto &q2 : schedule_mutations(q1, spec, opt.isa, opt.threads)) {
                        if (!seen.count(q2.to_string())) pool.push_back(q2);
                    }
                }
            }
            if (pool.empty()) {
                // The neighbourhood of the leaders is measured out: explore the rest of the space
                // with random valid points until the layer's budget ends.
                for (int attempt = 0; attempt < 200; ++attempt) {
                    ScheduleParams q = random_params(ranked[0]->params, spec, opt.isa, rng);
                    if (!seen.count(q.to_string())) return q;
                }
                return std::nullopt;
            }
            return pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
        };
        const bool overlap = opt.threads < static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
        auto start_compile = [&](const ScheduleParams &p) {
            seen[p.to_string()] = 0;  // reserved: being compiled
            return std::async(overlap ? std::launch::async : std::launch::deferred, [&compile, &spec, p] { return compile(spec, p); });
        };
        std::optional<ScheduleParams> current = pick_next();
        std::future<std::shared_ptr<const Kernel>> compiling;
        if (current) compiling = start_compile(*current);
        // The search stops a little early: the final re-measurement (about a second for five
        // leaders, more when it is repeated) must fit in the layer's budget too.
        const double search_budget = layer_budget * 0.95 - std::min(1.5, 0.1 * layer_budget);
        while (current && !(stop && *stop) && seconds_since(layer_start) < search_budget) {
            std::shared_ptr<const Kernel> kernel;
            std::string error;
            try {
                kernel = compiling.get();
            } catch (const Error &e) {
                error = std::string("does not compile: ") + e.what();
            }
            const ScheduleParams p = *current;
            current = pick_next();
            if (current) compiling = start_compile(*current);
            try_kernel(p, kernel, error);
        }
        if (compiling.valid()) compiling.wait();  // never leave a compile running past its layer

        // Noise: re-measure the leaders and the heuristic, interleaved, before declaring a winner.
        std::vector<Measured *> leaders;
        for (auto &m : measured) leaders.push_back(&m);
        std::sort(leaders.begin(), leaders.end(), [](auto a, auto b) { return a->median_ms < b->median_ms; });
        if (leaders.size() > 3) leaders.resize(3);
        Measured *heur = nullptr;
        for (auto &m : measured) {
            if (m.params == heuristic) heur = &m;
        }
        if (heur && std::find(leaders.begin(), leaders.end(), heur) == leaders.end()) leaders.push_back(heur);
        // The record being re-tuned competes in the final round too: its first-pass time may have
        // been unlucky, and a run must not replace it with a candidate that is not faster
        // interleaved with it.
        for (auto &m : measured) {
            if (existing && m.params.to_string() == existing->schedule &&
                std::find(leaders.begin(), leaders.end(), &m) == leaders.end()) {
                leaders.push_back(&m);
            }
        }
        if (leaders.empty()) {
            progress.event(label + " no candidate matched the reference; nothing stored");
            results.push_back(result);
            continue;
        }
        // Each leader gets about 40 ms of runs per round (at least 5). A final round that is a
        // fraction of that (it was 15 runs, 2.4 ms, for a 0.16 ms kernel) is one disturbance away
        // from a wrong winner: a 2-thread run on a 2-core VM once re-measured every leader at its
        // 1-thread speed (0.31 ms against 0.16 ms in the search) and stored the heuristic.
        std::vector<double> search_ms;
        for (Measured *m : leaders) search_ms.push_back(m->median_ms);
        const double t = leaders.front()->median_ms;
        const int reps = std::clamp(static_cast<int>(40.0 / std::max(t, 1e-3)), 5, 200);
        Tensor out(spec.output_shape());
        std::vector<double> final_ms;
        for (int attempt = 1;; ++attempt) {
            std::map<Measured *, std::vector<double>> samples;
            for (int round = 0; round < 5; ++round) {
                for (Measured *m : leaders) {
                    for (double v : time_runs(*m->kernel, bench, m->packed, out, reps)) samples[m].push_back(v);
                }
            }
            std::vector<double> now;
            for (Measured *m : leaders) now.push_back(median_of(samples[m]));
            // Keep the attempt whose fastest leader is fastest: a busy machine slows every leader.
            if (final_ms.empty() || *std::min_element(now.begin(), now.end()) < *std::min_element(final_ms.begin(), final_ms.end()))
                final_ms = now;
            if (attempt == 3 || (stop && *stop) || !uniformly_slower(search_ms, final_ms, 1.25)) break;
            progress.event(label + " every leader re-measured over 1.25x slower than in the search (machine busy?): re-measuring");
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        for (size_t i = 0; i < leaders.size(); ++i) leaders[i]->median_ms = final_ms[i];
        Measured *winner = *std::min_element(leaders.begin(), leaders.end(), [](auto a, auto b) { return a->median_ms < b->median_ms; });
        result.heuristic_ms = heur ? heur->median_ms : 0;
        result.tuned_ms = winner->median_ms;
        result.tuned_schedule = winner->params.to_string();
        result.seconds = seconds_since(layer_start);
        const bool finished = !(stop && *stop);
        save_record(spec, *winner, result.heuristic_ms, finished, result.candidates);
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s done: %.4g ms (heuristic %.4g ms, %.2fx) after %d candidates (%d rejected) in %s", label.c_str(),
                      result.tuned_ms, result.heuristic_ms, result.heuristic_ms > 0 ? result.heuristic_ms / result.tuned_ms : 0.0,
                      result.candidates, result.rejected, format_duration(result.seconds).c_str());
        progress.event(std::string(buf) + "  <- " + result.tuned_schedule);
        results.push_back(result);
        if (!finished) break;
    }
    return results;
}

}  // namespace convgen
