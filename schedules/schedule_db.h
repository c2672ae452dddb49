// The schedule database: tuned ScheduleParams per (normalised spec, target, threads), as a
// human-readable JSON file written atomically. The autotuner fills it; the JIT, the AOT generator
// and `convgen explain` read it.
//
// {"format": "convgen-schedule-db", "version": 1, "records": [
//   {"spec": "...", "target": "...", "threads": 1, "schedule": "vec=8 ...", "median_ms": 0.52,
//    "gflops": 88.1, "heuristic_ms": 0.61, "cpu": "AMD EPYC 7B13", "convgen": "0.1.0",
//    "halide": "14.0.0", "date": "2026-11-28T02:10:00Z", "complete": true, "candidates": 41}, ...]}
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "schedules/schedule_params.h"

namespace convgen {

struct ScheduleRecord {
    std::string spec;    // normalised
    std::string target;  // canonical Halide target string
    int threads = 1;
    std::string schedule;  // ScheduleParams text
    double median_ms = 0;
    double gflops = 0;
    double heuristic_ms = 0;  // the heuristic's median in the same run (0: not measured)
    std::string cpu;          // host CPU model it was measured on
    std::string convgen_version;
    std::string halide_version;
    std::string date;       // ISO 8601, UTC
    bool complete = false;  // false: tuning was interrupted; a re-run resumes this layer
    int candidates = 0;     // candidates measured so far
};

class ScheduleDb {
public:
    // Throws convgen::Error naming the file and the problem (missing, not JSON, wrong fields).
    static ScheduleDb load(const std::string &path);
    // An absent file is an empty database; anything else as load().
    static ScheduleDb load_or_empty(const std::string &path);
    // Writes to a temporary file in the same directory, then renames it over `path`: readers see
    // the old or the new file, never a partial one.
    void save(const std::string &path) const;
    // Read-modify-write under an exclusive lock (flock on `path`.lock), so processes sharing one
    // database (tuning shards, `db merge` while tuning) never lose each other's records. Returns
    // the database as written.
    static ScheduleDb update(const std::string &path, const std::function<void(ScheduleDb &)> &change);

    const std::vector<ScheduleRecord> &records() const { return records_; }
    // Replaces the record with the same (spec, target, threads, cpu), or adds it.
    void upsert(const ScheduleRecord &r);
    const ScheduleRecord *find_exact(const std::string &spec, const std::string &target, int threads, const std::string &cpu) const;
    // Merges `other`: for each key the faster complete record wins (same CPU model), else both kept.
    void merge(const ScheduleDb &other);
    // Drops records whose convgen/Halide version or CPU differ from the given ones (empty: keep any).
    int prune(const std::string &cpu, const std::string &convgen_version, const std::string &halide_version);

private:
    std::vector<ScheduleRecord> records_;
};

// The ISA family a Halide target string names, read from its tokens (this file is built without
// Halide, for the database fuzzer; isa_family_of(Halide::Target) reads the same string): arm-64 is
// NEON, x86-64 with avx512 or avx512_skylake AVX-512, with avx2 AVX2, anything else generic.
IsaFamily isa_family_of_target_string(const std::string &target);

// What a lookup found, for explain and logs. TunedOtherHost: a record from another CPU model,
// convgen or Halide version, or another target string of the same ISA family (a fallback).
enum class ScheduleSource { Given, Tuned, TunedOtherHost, Neighbour, Heuristic };
const char *schedule_source_name(ScheduleSource s);

struct ScheduleLookup {
    ScheduleParams params;
    ScheduleSource source = ScheduleSource::Heuristic;
    std::string detail;  // e.g. "db x.json, 0.52 ms on AMD EPYC 7B13" or the neighbour's spec
};

// The schedule for `spec` on `target`: the database's record for this CPU model (or one of the
// same family and model, see same_microarchitecture) and version
// (threads: the closest count), else one from another CPU/version, else one for another target
// string of the same ISA family (both marked as a fallback), else the nearest tuned neighbour
// (same kind, k, s, layout; closest channels and size) with its
// parameters adapted to this spec, else the heuristic (host_heuristic_schedule when the code
// `runs_on_this_host`, as the JIT's does; an AOT build's runs on CPUs it cannot know).
ScheduleLookup lookup_schedule(const ScheduleDb *db, const std::string &db_path, const LayerSpec &spec,
                               const std::string &target, IsaFamily isa, int threads, bool runs_on_this_host = false);

// This process's identity for records: CPU model, versions, the time now.
std::string host_cpu_model();
// The heuristic's parameters for code that runs on this host: heuristic_schedule, told whether
// this CPU splits AVX-512 FMAs (HostCpu::splits_wide_fma) when `isa` is AVX-512.
ScheduleParams host_heuristic_schedule(const LayerSpec &spec, IsaFamily isa, TemplateFamily family = TemplateFamily::Heuristic);
// Whether two host_cpu_model strings name the same microarchitecture: equal, or the same
// "(family F model M)" under another brand string, since hypervisors name one CPU differently
// (one Zen 5 host here was "AMD EPYC" one day and "Oxide Virtual Turin-like Processor" later).
bool same_microarchitecture(const std::string &a, const std::string &b);
std::string convgen_version();
std::string halide_version();
std::string utc_now_iso8601();

// The database the JIT uses when none is given: $CONVGEN_SCHEDULE_DB, else the checked-in default
// under schedules/db/ (if it exists), else none ("").
std::string default_schedule_db_path();

}  // namespace convgen
