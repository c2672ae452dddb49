// libFuzzer target: the schedule database reader (schedules/schedule_db.h, ScheduleDb::load) and
// the schedule text parser (schedules/schedule_params.h, ScheduleParams::parse).
// ScheduleDb::load reads a path, so each input is written to a private temporary file (in
// /dev/shm when it exists). A database that loads is also looked up for each record's own spec
// and target (the JIT's and `convgen explain`'s use of it), saved, and loaded back unchanged;
// schedule text that parses must round-trip through to_string.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dsl/layer_spec.h"
#include "fuzz_common.h"
#include "runtime/errors.h"
#include "runtime/tensor.h"
#include "schedules/schedule_db.h"
#include "schedules/schedule_params.h"

namespace {

std::string temp_path(const char *suffix) {
    static const std::string dir = [] {
        if (::access("/dev/shm", W_OK) == 0) return std::string("/dev/shm");
        const char *tmp = std::getenv("TMPDIR");
        return std::string(tmp && *tmp ? tmp : "/tmp");
    }();
    return dir + "/convgen_fuzz_db_" + std::to_string(::getpid()) + suffix;
}

const std::string &input_path() {
    static const std::string p = temp_path(".json");
    return p;
}
const std::string &saved_path() {
    static const std::string p = temp_path(".saved.json");
    return p;
}

// Removes the temporary files when an input is done (libFuzzer ends with _Exit: no atexit).
struct RemoveTempFiles {
    ~RemoveTempFiles() {
        std::remove(input_path().c_str());
        std::remove(saved_path().c_str());
    }
};

bool same_record(const convgen::ScheduleRecord &a, const convgen::ScheduleRecord &b) {
    return a.spec == b.spec && a.target == b.target && a.threads == b.threads && a.schedule == b.schedule &&
           a.median_ms == b.median_ms && a.gflops == b.gflops && a.heuristic_ms == b.heuristic_ms && a.cpu == b.cpu &&
           a.convgen_version == b.convgen_version && a.halide_version == b.halide_version && a.date == b.date &&
           a.complete == b.complete && a.candidates == b.candidates;
}

void fuzz_db(const uint8_t *data, size_t size) {
    const RemoveTempFiles cleanup;
    convgen::write_file_bytes(input_path(), data, size);
    const convgen::ScheduleDb db = convgen::ScheduleDb::load(input_path());
    for (const convgen::ScheduleRecord &r : db.records()) {
        const convgen::LayerSpec spec = convgen::parse_layer_spec(r.spec);  // load() promised it parses
        const convgen::ScheduleParams params = convgen::ScheduleParams::parse(r.schedule);
        FUZZ_CHECK(convgen::ScheduleParams::parse(params.to_string()) == params);
        for (int threads : {1, 4}) {
            const convgen::ScheduleLookup found =
                convgen::lookup_schedule(&db, "<fuzz>", spec, r.target, convgen::IsaFamily::AVX2, threads);
            FUZZ_CHECK(found.source == convgen::ScheduleSource::Tuned || found.source == convgen::ScheduleSource::TunedOtherHost);
        }
        // A neighbour lookup: the same layer with another channel count has no exact record.
        convgen::LayerSpec other = spec;
        other.c1 = spec.c1 * 3;
        other.c2 = spec.c2 * 3;
        other.g = spec.g == 1 ? 1 : spec.g * 3;
        try {
            convgen::validate(other);
            (void)convgen::lookup_schedule(&db, "<fuzz>", other, r.target, convgen::IsaFamily::AVX512, 2);
        } catch (const convgen::Error &) {
        }
    }
    db.save(saved_path());
    const convgen::ScheduleDb again = convgen::ScheduleDb::load(saved_path());
    FUZZ_CHECK(again.records().size() == db.records().size());
    for (size_t i = 0; i < db.records().size(); ++i) FUZZ_CHECK(same_record(again.records()[i], db.records()[i]));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        const convgen::ScheduleParams p = convgen::ScheduleParams::parse(std::string(reinterpret_cast<const char *>(data), size));
        FUZZ_CHECK(convgen::ScheduleParams::parse(p.to_string()) == p);
    } catch (const convgen::Error &) {
    }
    try {
        fuzz_db(data, size);
    } catch (const convgen::Error &) {
    }
    return 0;
}
