// The autotuner: searches the schedule templates' parameter space (and tries Halide's
// autoschedulers) for each layer, measuring every candidate that matches the reference, and
// keeps the winners in a ScheduleDb. Compiling is injected (the JIT lives in codegen/, which
// depends on schedules/), so this file knows only specs, parameters and kernels.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "runtime/kernel.h"
#include "schedules/schedule_db.h"
#include "schedules/schedule_params.h"

namespace convgen {

struct TuneOptions {
    std::string db_path;          // written after every improvement (atomically) and at each layer's end
    std::string target;           // canonical Halide target the kernels are compiled for
    IsaFamily isa = IsaFamily::AVX2;
    int threads = 1;              // threads the kernels run with while measured (the record's key)
    double budget_seconds = 600;  // whole run
    double per_layer_seconds = 0; // 0: budget / layers
    int shard_index = 0, shard_count = 1;  // tune layers i, i+N, i+2N, ... of the suite
    bool autoschedulers = true;   // also measure Mullapudi2016, Li2018, Adams2019
    unsigned seed = 1;
    bool progress_tty = false;    // redraw one progress line (else print a line per event)
    // Each new candidate first runs once in a forked child, so that a kernel that faults is
    // rejected instead of ending the run. This is called first in that child: codegen's
    // run_parallel_loops_serially (the child has one thread; the kernels' thread pool must not
    // wait for workers that are not there). Required: tune_suite throws when it is empty.
    std::function<void()> prepare_forked_child;
    double candidate_timeout_seconds = 60;  // a first run that takes longer is killed and rejected
};

// Compiles a spec with given parameters (throws convgen::Error when it cannot).
using CompileFn = std::function<std::shared_ptr<const Kernel>(const LayerSpec &, const ScheduleParams &)>;

struct LayerTuneResult {
    LayerSpec spec;
    bool skipped = false;        // already tuned (complete record for this host)
    double heuristic_ms = 0;     // medians from the final, interleaved re-measurement
    double tuned_ms = 0;
    std::string tuned_schedule;
    double autoscheduler_ms[3] = {0, 0, 0};  // Mullapudi2016, Li2018, Adams2019 (0: failed or not run)
    int candidates = 0, rejected = 0;
    double seconds = 0;
};

// The neighbours of `p` in the template space the search mutates to: one knob changed, within
// the register file and the templates' support for `spec`; with threads > 1 also row blocks that
// split an image evenly between the threads.
std::vector<ScheduleParams> schedule_mutations(const ScheduleParams &p, const LayerSpec &spec, IsaFamily isa, int threads);

// A winner of `spec` on another ISA family fitted to this one as a search seed: this ISA's vector
// width, the register tile shrunk to fit its register file, knobs its template ignores reset.
ScheduleParams seed_from_other_isa(ScheduleParams q, const LayerSpec &spec, IsaFamily isa, int vector_width);

// Whether every time in `after` exceeds `factor` times its counterpart in `before` (same
// length, non-empty): the tuner's final re-measurement then says more about the machine (another
// process took a core) than about the schedules, and is repeated.
bool uniformly_slower(const std::vector<double> &before, const std::vector<double> &after, double factor);

// The deterministic slice of `specs` that shard i of N tunes.
std::vector<LayerSpec> shard_of(const std::vector<LayerSpec> &specs, int index, int count);

// Tunes every layer of the shard; returns per-layer results. Stops early (leaving a valid,
// resumable database) when `stop` becomes true (set it from a signal handler).
std::vector<LayerTuneResult> tune_suite(const std::vector<LayerSpec> &specs, const TuneOptions &options, const CompileFn &compile,
                                        std::ostream &log, const volatile bool *stop);

// "10m", "90s", "1h", "45" (seconds) -> seconds; throws convgen::Error.
double parse_duration(const std::string &text);

}  // namespace convgen
