// A separate process for the shared-schedule-database test in tests/test_tuner.cc.
//   schedule_db_probe write DB FIRST COUNT   adds COUNT records (c1 = FIRST .. FIRST+COUNT-1), each
//                                            through its own locked read-modify-write
//   schedule_db_probe read DB SECONDS        loads DB (and looks a record up) as often as it can;
//                                            every load must see a complete, valid database
// Exit status: 0 done, 1 a check failed, 2 an error (message on stderr).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/errors.h"
#include "schedules/schedule_db.h"

int main(int argc, char **argv) {
    using namespace convgen;
    if (argc != 5 && argc != 4) {
        std::fprintf(stderr, "usage: schedule_db_probe write DB FIRST COUNT | read DB SECONDS\n");
        return 2;
    }
    const std::string mode = argv[1], db_path = argv[2];
    try {
        if (mode == "write" && argc == 5) {
            const int first = std::atoi(argv[3]), count = std::atoi(argv[4]);
            for (int i = 0; i < count; ++i) {
                ScheduleRecord r;
                r.spec = parse_layer_spec("conv c1=" + std::to_string(first + i) + " c2=8 h=8 w=8 k=3").to_string();
                r.target = "x86-64-linux-avx-avx2-f16c-fma-sse41";
                r.schedule = "vec=8";
                r.median_ms = 1.0 + i;
                r.gflops = 1;
                r.cpu = "probe cpu";
                r.convgen_version = convgen_version();
                r.halide_version = halide_version();
                r.date = utc_now_iso8601();
                r.complete = true;
                ScheduleDb::update(db_path, [&](ScheduleDb &db) { db.upsert(r); });
            }
            return 0;
        }
        if (mode == "read" && argc == 4) {
            const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::atof(argv[3]));
            long loads = 0;
            size_t last = 0;
            while (std::chrono::steady_clock::now() < end) {
                const ScheduleDb db = ScheduleDb::load_or_empty(db_path);  // throws on a partial file
                if (db.records().size() < last) {
                    std::fprintf(stderr, "schedule_db_probe: records went from %zu to %zu\n", last, db.records().size());
                    return 1;
                }
                last = db.records().size();
                ++loads;
            }
            std::printf("loads=%ld records=%zu\n", loads, last);
            return 0;
        }
        std::fprintf(stderr, "schedule_db_probe: bad arguments\n");
        return 2;
    } catch (const Error &e) {
        std::fprintf(stderr, "schedule_db_probe: error: %s\n", e.what());
        return 2;
    }
}
