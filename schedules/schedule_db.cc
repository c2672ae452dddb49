#include "schedules/schedule_db.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/cpu.h"
#include "runtime/errors.h"
#include "runtime/tensor.h"

namespace convgen {

namespace {

using nlohmann::json;

constexpr const char *kFormat = "convgen-schedule-db";
constexpr int kVersion = 1;

template <typename T>
T field(const json &j, const char *name, const std::string &where) {
    auto it = j.find(name);
    if (it == j.end()) throw Error(where + ": missing field '" + name + "'");
    try {
        return it->get<T>();
    } catch (const json::exception &) {
        throw Error(where + ": field '" + std::string(name) + "' has the wrong type");
    }
}

// An integer field that must fit in int. nlohmann's get<int>() casts any number (and booleans): a
// double outside int's range is undefined behaviour and a large integer silently wraps (fuzz_schedule_db).
int int_field(const json &j, const char *name, const std::string &where) {
    auto it = j.find(name);
    if (it == j.end()) throw Error(where + ": missing field '" + name + "'");
    if (!it->is_number_integer()) throw Error(where + ": field '" + std::string(name) + "' has the wrong type");
    if (it->is_number_unsigned() ? it->get<uint64_t>() > uint64_t(std::numeric_limits<int>::max())
                                 : (it->get<int64_t>() < std::numeric_limits<int>::min() ||
                                    it->get<int64_t>() > std::numeric_limits<int>::max())) {
        throw Error(where + ": field '" + std::string(name) + "' is out of range");
    }
    return it->get<int>();
}

ScheduleRecord record_from_json(const json &j, const std::string &where) {
    if (!j.is_object()) throw Error(where + ": not an object");
    ScheduleRecord r;
    r.spec = field<std::string>(j, "spec", where);
    r.target = field<std::string>(j, "target", where);
    r.threads = int_field(j, "threads", where);
    r.schedule = field<std::string>(j, "schedule", where);
    r.median_ms = field<double>(j, "median_ms", where);
    r.gflops = field<double>(j, "gflops", where);
    // Optional fields: not j.value(), which throws nlohmann's type_error, not a convgen::Error, on a wrong type.
    r.heuristic_ms = j.contains("heuristic_ms") ? field<double>(j, "heuristic_ms", where) : 0.0;
    r.cpu = field<std::string>(j, "cpu", where);
    r.convgen_version = field<std::string>(j, "convgen", where);
    r.halide_version = field<std::string>(j, "halide", where);
    r.date = field<std::string>(j, "date", where);
    r.complete = field<bool>(j, "complete", where);
    r.candidates = j.contains("candidates") ? int_field(j, "candidates", where) : 0;
    // A record must describe something convgen can build: the spec and schedule must parse.
    try {
        const LayerSpec spec = parse_layer_spec(r.spec);
        if (spec.to_string() != r.spec) throw Error("spec is not in normalised form");
        ScheduleParams::parse(r.schedule);
    } catch (const Error &e) {
        throw Error(where + ": " + e.what());
    }
    if (r.threads < 0 || !(r.median_ms >= 0) || !std::isfinite(r.median_ms)) throw Error(where + ": bad threads or median_ms");
    return r;
}

json record_to_json(const ScheduleRecord &r) {
    return json{{"spec", r.spec},           {"target", r.target},
                {"threads", r.threads},     {"schedule", r.schedule},
                {"median_ms", r.median_ms}, {"gflops", r.gflops},
                {"heuristic_ms", r.heuristic_ms}, {"cpu", r.cpu},
                {"convgen", r.convgen_version}, {"halide", r.halide_version},
                {"date", r.date},           {"complete", r.complete},
                {"candidates", r.candidates}};
}

bool same_key(const ScheduleRecord &a, const ScheduleRecord &b) {
    return a.spec == b.spec && a.target == b.target && a.threads == b.threads && a.cpu == b.cpu;
}

// A record tuned for fewer threads may split the image into too few parallel tasks for this many
// (a 1-thread winner often makes the whole image one task, leaving the other threads idle): split
// the rows so that each thread gets at least two tasks, keeping whole register tiles of rows.
// Schedules whose tasks are channel tiles (parallel_channels) or an autoscheduler's are left alone.
bool ensure_parallel_tasks(ScheduleParams &p, const LayerSpec &spec, int threads) {
    if (!p.autoscheduler.empty() || p.parallel_channels || threads <= 1) return false;
    const int rows = spec.out_h();
    const int wanted = 2 * threads;
    const int per_image = spec.n * channel_blocks_of(spec, p);  // tasks a row block gives
    auto tasks = [&](int per_task) { return ceil_div(rows, per_task) * per_image; };
    if (tasks(p.parallel_rows) >= wanted) return false;
    const int images_short = (wanted + per_image - 1) / per_image;  // row blocks each image must provide
    int per_task = std::max(1, rows / images_short);
    if (p.tile_y > 1 && per_task >= p.tile_y) per_task -= per_task % p.tile_y;
    if (per_task >= p.parallel_rows) return false;
    p.parallel_rows = per_task;
    return true;
}

double log_ratio(double a, double b) { return std::fabs(std::log(std::max(a, 1.0) / std::max(b, 1.0))); }

}  // namespace

ScheduleDb ScheduleDb::load(const std::string &path) {
    const std::vector<uint8_t> bytes = read_file_bytes(path);
    json j;
    try {
        j = json::parse(bytes.begin(), bytes.end());
    } catch (const json::exception &e) {
        throw Error("schedule database '" + path + "' is not valid JSON (" + e.what() + ")");
    }
    // find() and comparisons, not j.value(): that throws nlohmann's type_error (not a convgen::Error)
    // for a "format" or "version" of the wrong type, and casts a huge "version" double to int (UB).
    if (!j.is_object() || !j.contains("format") || j["format"] != kFormat) {
        throw Error("schedule database '" + path + "': not a convgen schedule database (\"format\": \"" + kFormat + "\" missing)");
    }
    if (!j.contains("version") || !j["version"].is_number() || j["version"] != kVersion) {
        throw Error("schedule database '" + path + "': unsupported version (this convgen reads version " + std::to_string(kVersion) + ")");
    }
    auto records = j.find("records");
    if (records == j.end() || !records->is_array()) throw Error("schedule database '" + path + "': 'records' must be an array");
    ScheduleDb db;
    for (size_t i = 0; i < records->size(); ++i) {
        db.upsert(record_from_json((*records)[i], "schedule database '" + path + "' record " + std::to_string(i)));
    }
    return db;
}

ScheduleDb ScheduleDb::load_or_empty(const std::string &path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ScheduleDb();
    return load(path);
}

void ScheduleDb::save(const std::string &path) const {
    json records = json::array();
    for (const auto &r : records_) records.push_back(record_to_json(r));
    const std::string text = json{{"format", kFormat}, {"version", kVersion}, {"records", records}}.dump(2) + "\n";
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.flush();
        if (!out) {
            std::remove(tmp.c_str());
            throw Error("cannot write schedule database '" + tmp + "'");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error("cannot replace schedule database '" + path + "'");
    }
}

ScheduleDb ScheduleDb::update(const std::string &path, const std::function<void(ScheduleDb &)> &change) {
    const std::string lock_path = path + ".lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw Error("cannot open the lock file '" + lock_path + "' of schedule database '" + path + "'");
    struct Unlock {
        int fd;
        ~Unlock() { ::close(fd); }  // closing the descriptor releases the flock
    } unlock{fd};
    while (::flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) throw Error("cannot lock schedule database '" + path + "' (" + lock_path + ")");
    }
    ScheduleDb db = load_or_empty(path);
    change(db);
    db.save(path);
    return db;
}

void ScheduleDb::upsert(const ScheduleRecord &r) {
    for (auto &old : records_) {
        if (same_key(old, r)) {
            old = r;
            return;
        }
    }
    records_.push_back(r);
}

const ScheduleRecord *ScheduleDb::find_exact(const std::string &spec, const std::string &target, int threads,
                                             const std::string &cpu) const {
    for (const auto &r : records_) {
        if (r.spec == spec && r.target == target && r.threads == threads && r.cpu == cpu) return &r;
    }
    return nullptr;
}

void ScheduleDb::merge(const ScheduleDb &other) {
    for (const auto &r : other.records_) {
        bool placed = false;
        for (auto &old : records_) {
            if (!same_key(old, r)) continue;
            placed = true;
            // Complete beats interrupted; then the faster median.
            if ((r.complete && !old.complete) || (r.complete == old.complete && r.median_ms < old.median_ms)) old = r;
        }
        if (!placed) records_.push_back(r);
    }
}

int ScheduleDb::prune(const std::string &cpu, const std::string &convgen_version, const std::string &halide_version) {
    const size_t before = records_.size();
    records_.erase(std::remove_if(records_.begin(), records_.end(),
                                  [&](const ScheduleRecord &r) {
                                      return (!cpu.empty() && r.cpu != cpu) ||
                                             (!convgen_version.empty() && r.convgen_version != convgen_version) ||
                                             (!halide_version.empty() && r.halide_version != halide_version);
                                  }),
                   records_.end());
    return static_cast<int>(before - records_.size());
}

const char *schedule_source_name(ScheduleSource s) {
    switch (s) {
    case ScheduleSource::Given: return "given";
    case ScheduleSource::Tuned: return "tuned";
    case ScheduleSource::TunedOtherHost: return "tuned on another CPU, version or target (fallback)";
    case ScheduleSource::Neighbour: return "adapted from the nearest tuned layer";
    case ScheduleSource::Heuristic: return "heuristic";
    }
    return "?";
}

IsaFamily isa_family_of_target_string(const std::string &target) {
    std::vector<std::string> tokens;
    size_t start = 0;
    while (start <= target.size()) {
        const size_t end = std::min(target.find('-', start), target.size());
        tokens.push_back(target.substr(start, end - start));
        start = end + 1;
    }
    auto has = [&](const char *t) { return std::find(tokens.begin(), tokens.end(), t) != tokens.end(); };
    if (tokens.size() >= 2 && tokens[0] == "arm" && tokens[1] == "64") return IsaFamily::NEON;
    if (tokens.size() >= 2 && tokens[0] == "x86" && tokens[1] == "64") {
        if (has("avx512") || has("avx512_skylake")) return IsaFamily::AVX512;
        if (has("avx2")) return IsaFamily::AVX2;
    }
    return IsaFamily::Generic;
}

ScheduleLookup lookup_schedule(const ScheduleDb *db, const std::string &db_path, const LayerSpec &spec,
                               const std::string &target, IsaFamily isa, int threads, bool runs_on_this_host) {
    ScheduleLookup out;
    out.params = runs_on_this_host ? host_heuristic_schedule(spec, isa) : heuristic_schedule(spec, isa);
    if (out.params.vector_width != vector_widths(isa).front())
        out.detail = "vec " + std::to_string(out.params.vector_width) + ": this CPU runs 512-bit FMAs as two 256-bit halves";
    if (!db) return out;
    const std::string key = spec.to_string();
    const std::string cpu = host_cpu_model(), cv = convgen_version(), hv = halide_version();
    // Best record for this spec and target: this host and version first (a CPU of the same family
    // and model under another name counts as this host, see same_microarchitecture), then the
    // closest thread count.
    const ScheduleRecord *best = nullptr;
    auto foreign = [&](const ScheduleRecord &r) {
        return !same_microarchitecture(r.cpu, cpu) || r.convgen_version != cv || r.halide_version != hv;
    };
    auto rank = [&](const ScheduleRecord &r) {
        const int level = foreign(r) ? 2 : r.cpu == cpu ? 0 : 1;
        // 64-bit: a record may claim up to INT_MAX threads (fuzz_schedule_db found the int overflow).
        return level * int64_t(100000) + std::llabs(int64_t(r.threads) - threads);
    };
    for (const auto &r : db->records()) {
        if (r.spec != key || r.target != target) continue;
        if (!best || rank(r) < rank(*best)) best = &r;
    }
    // Else a record for another target string of the same ISA family: an AOT build's AVX-512
    // variant (`...-avx512-avx512_skylake`) and the JIT on the same host (`...-avx512_sapphirerapids`,
    // the host's full feature list) run the same templates with the same vector width and
    // register file, so the JIT-tuned record is a fallback for the AOT variant (marked as such).
    bool other_target = false;
    if (!best) {
        for (const auto &r : db->records()) {
            if (r.spec != key || isa_family_of_target_string(r.target) != isa) continue;
            if (!best || rank(r) < rank(*best)) best = &r;
        }
        other_target = best != nullptr;
    }
    if (best) {
        out.params = ScheduleParams::parse(best->schedule);
        out.source = other_target || foreign(*best) ? ScheduleSource::TunedOtherHost : ScheduleSource::Tuned;
        char buf[256];
        std::snprintf(buf, sizeof buf, "%.4g ms at %d thread(s) on %s, convgen %s, Halide %s%s", best->median_ms, best->threads,
                      best->cpu.c_str(), best->convgen_version.c_str(), best->halide_version.c_str(),
                      best->complete ? "" : ", tuning incomplete");
        out.detail = "db " + db_path + ": " + buf;
        if (other_target) out.detail += "; tuned for target " + best->target;
        // A narrower vector than the ISA's first width pays only on CPUs that split wide FMAs (see
        // vector_widths); another CPU model's record gets the first width back, over the same pixels.
        const int preferred = vector_widths(isa).front();
        if (!same_microarchitecture(best->cpu, cpu) && out.params.autoscheduler.empty() && out.params.vector_width < preferred) {
            const int before = out.params.vector_width;
            out.params = with_vector_width(out.params, preferred, spec);
            out.detail += "; vec " + std::to_string(before) + " -> " + std::to_string(preferred) + " (another CPU's choice)";
        }
        if (best->threads < threads) {
            const int before = out.params.parallel_rows;
            if (ensure_parallel_tasks(out.params, spec, threads)) {
                out.detail += "; parallel_rows " + std::to_string(before) + " -> " + std::to_string(out.params.parallel_rows) +
                              " for " + std::to_string(threads) + " threads";
            }
        }
        return out;
    }
    // Nearest neighbour of the same kind, kernel, stride, layout and group structure.
    const ScheduleRecord *nearest = nullptr;
    double nearest_d = 1e30;
    for (const auto &r : db->records()) {
        if (r.target != target) continue;
        LayerSpec o;
        try {
            o = parse_layer_spec(r.spec);
        } catch (const Error &) {
            continue;
        }
        if (o.kind != spec.kind || o.k != spec.k || o.s != spec.s || o.layout != spec.layout) continue;
        if (o.kind == LayerKind::Conv && ((o.g == 1) != (spec.g == 1) || o.is_depthwise_conv() != spec.is_depthwise_conv())) continue;
        double d = log_ratio(o.c1, spec.c1) + log_ratio(o.c2, spec.c2) +
                   log_ratio(double(o.out_h()) * o.out_w() * o.n, double(spec.out_h()) * spec.out_w() * spec.n) +
                   (o.kind == LayerKind::Conv ? log_ratio(o.c1 / o.g, spec.c1 / spec.g) : 0.0) + 0.01 * std::abs(r.threads - threads);
        if (d < nearest_d) {
            nearest_d = d;
            nearest = &r;
        }
    }
    // A neighbour's parameters transfer only to a layer of about its size. Measured at 1 thread on
    // AVX-512 against the heuristic: layers within 2x (distance <= log 2) ran 0.83x-1.07x of the
    // neighbour's time either way, farther ones up to 2.9x slower with the neighbour's (a
    // 256-channel 14x14 conv given the 64-channel 56x56 record).
    const double max_neighbour_distance = std::log(2.0) + 1e-9;
    if (nearest && nearest_d > max_neighbour_distance) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.2f", nearest_d);
        out.detail = (out.detail.empty() ? "" : out.detail + "; ") + "nearest tuned layer '" + nearest->spec +
                     "' too far (distance " + buf + " > log 2)";
        return out;
    }
    if (nearest) {
        ScheduleParams neighbour = ScheduleParams::parse(nearest->schedule);
        const std::vector<int> widths = vector_widths(isa);
        if (std::find(widths.begin(), widths.end(), neighbour.vector_width) == widths.end()) neighbour.vector_width = widths.front();
        out.params = adapt_to_spec(neighbour, spec);
        out.source = ScheduleSource::Neighbour;
        out.detail = "db " + db_path + ": from '" + nearest->spec + "'";
    }
    return out;
}

ScheduleParams host_heuristic_schedule(const LayerSpec &spec, IsaFamily isa, TemplateFamily family) {
    return heuristic_schedule(spec, isa, isa == IsaFamily::AVX512 && host_cpu().splits_wide_fma, family);
}

std::string host_cpu_model() {
    const HostCpu &cpu = host_cpu();
    return cpu.model.empty() ? cpu_arch_name(cpu.arch) : cpu.model;
}

bool same_microarchitecture(const std::string &a, const std::string &b) {
    if (a == b) return true;
    auto family_and_model = [](const std::string &cpu) {
        const size_t at = cpu.rfind("(family ");
        return at == std::string::npos || cpu.back() != ')' ? std::string() : cpu.substr(at);
    };
    const std::string fa = family_and_model(a);
    return !fa.empty() && fa == family_and_model(b);
}

std::string convgen_version() { return CONVGEN_VERSION_STRING; }

std::string halide_version() { return CONVGEN_HALIDE_VERSION_STRING; }

std::string utc_now_iso8601() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string default_schedule_db_path() {
    const char *env = std::getenv("CONVGEN_SCHEDULE_DB");
    if (env) return env;  // set but empty: no database
    struct stat st;
    if (::stat(CONVGEN_DEFAULT_SCHEDULE_DB, &st) == 0) return CONVGEN_DEFAULT_SCHEDULE_DB;
    return "";
}

}  // namespace convgen
