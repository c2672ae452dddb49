// The schedule database and the autotuner (schedules/schedule_db.h, schedules/tuner.h).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "codegen/jit.h"
#include "runtime/cpu.h"
#include "runtime/errors.h"
#include "schedules/default_schedules.h"
#include "schedules/schedule_db.h"
#include "schedules/tuner.h"

namespace convgen {
namespace {

std::string temp_prefix() { return "convgen_test_tuner_" + std::to_string(::getpid()) + "_"; }

std::string temp_path(const std::string &name) { return ::testing::TempDir() + temp_prefix() + name; }

// Removes what the tests leave in the temp directory: databases of failed tests and the lock
// files beside every database (ScheduleDb::update keeps them, since another process may hold one).
class RemoveTempFiles : public ::testing::Environment {
public:
    void TearDown() override {
        std::error_code ec;
        for (const auto &entry : std::filesystem::directory_iterator(::testing::TempDir(), ec)) {
            if (entry.path().filename().string().rfind(temp_prefix(), 0) == 0) std::filesystem::remove(entry.path(), ec);
        }
    }
};
[[maybe_unused]] ::testing::Environment *const g_remove_temp_files = ::testing::AddGlobalTestEnvironment(new RemoveTempFiles);

void write_text(const std::string &path, const std::string &text) {
    std::ofstream(path, std::ios::trunc) << text;
}

ScheduleRecord make_record(const std::string &spec_text, const std::string &schedule, double ms, const std::string &cpu) {
    ScheduleRecord r;
    r.spec = parse_layer_spec(spec_text).to_string();
    r.target = "x86-64-linux-avx-avx2-f16c-fma-sse41";
    r.threads = 1;
    r.schedule = schedule;
    r.median_ms = ms;
    r.gflops = 1;
    r.cpu = cpu;
    r.convgen_version = convgen_version();
    r.halide_version = halide_version();
    r.date = "2026-11-28T00:00:00Z";
    r.complete = true;
    return r;
}

TEST(ScheduleDb, RoundTripsAndMerges) {
    const std::string path = temp_path("rt.json");
    ScheduleDb db;
    db.upsert(make_record("conv c1=8 c2=8 h=8 w=8 k=3", "vec=8 tile_vectors=1 tile_rows=4 parallel_rows=1 channels=0 channel_tasks=0 dw_per_task=0", 1.0, "cpuA"));
    db.upsert(make_record("dwconv c1=8 c2=16 h=8 w=8 k=3", "auto=Li2018", 2.0, "cpuA"));
    db.save(path);
    const ScheduleDb back = ScheduleDb::load(path);
    ASSERT_EQ(back.records().size(), 2u);
    EXPECT_EQ(back.records()[1].schedule, "auto=Li2018");
    EXPECT_DOUBLE_EQ(back.records()[0].median_ms, 1.0);

    ScheduleDb other;
    other.upsert(make_record("conv c1=8 c2=8 h=8 w=8 k=3", "vec=8 tile_vectors=2 tile_rows=2 parallel_rows=1 channels=0 channel_tasks=0 dw_per_task=0", 0.5, "cpuA"));
    other.upsert(make_record("conv c1=8 c2=8 h=8 w=8 k=3", "vec=8 tile_vectors=2 tile_rows=2 parallel_rows=1 channels=0 channel_tasks=0 dw_per_task=0", 0.7, "cpuB"));
    ScheduleDb merged = back;
    merged.merge(other);
    ASSERT_EQ(merged.records().size(), 3u);  // cpuB is another key
    EXPECT_DOUBLE_EQ(merged.find_exact(parse_layer_spec("conv c1=8 c2=8 h=8 w=8 k=3").to_string(),
                                       "x86-64-linux-avx-avx2-f16c-fma-sse41", 1, "cpuA")->median_ms, 0.5);
    EXPECT_EQ(merged.prune("cpuA", "", ""), 1);
    EXPECT_EQ(merged.records().size(), 2u);
    std::remove(path.c_str());
}

TEST(ScheduleDb, RejectsBadFiles) {
    const std::string path = temp_path("bad.json");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{not json", "not valid JSON"},
        {"[]", "not a convgen schedule database"},
        {R"({"format":"convgen-schedule-db","version":99,"records":[]})", "unsupported version"},
        {R"({"format":"convgen-schedule-db","version":1,"records":{}})", "'records' must be an array"},
        {R"({"format":"convgen-schedule-db","version":1,"records":[{"spec":"conv c1=8"}]})", "record 0"},
        {R"({"format":"convgen-schedule-db","version":1,"records":[{"spec":"conv n=1 c1=8 c2=8 h=8 w=8 k=3 s=1 p=1 g=1 act=relu bn=1 eps=1e-05 layout=nchw","target":"x","threads":1,"schedule":"vec=zz","median_ms":1,"gflops":1,"cpu":"c","convgen":"v","halide":"h","date":"d","complete":true}]})",
         "schedule parameter 'vec'"},
    };
    for (const auto &[text, expected] : cases) {
        write_text(path, text);
        try {
            ScheduleDb::load(path);
            ADD_FAILURE() << "accepted: " << text;
        } catch (const Error &e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(ScheduleDb::load(temp_path("missing.json")), Error);
    EXPECT_TRUE(ScheduleDb::load_or_empty(temp_path("missing.json")).records().empty());
    std::remove(path.c_str());
}

TEST(ScheduleDb, ProcessesSharingOneDatabaseLoseNothing) {
    // Two writer processes add 60 records each, one locked read-modify-write per record, while a
    // third process keeps loading the file: every load is a valid database that never shrinks and
    // the end result holds all 120 records.
    const std::string db = temp_path("shared.json");
    std::remove(db.c_str());
    const std::string probe = CONVGEN_DB_PROBE_PATH;
    auto run = [](const std::string &cmd) { return std::system(cmd.c_str()); };
    std::vector<std::thread> procs;
    std::vector<int> status(3, -1);
    procs.emplace_back([&] { status[0] = run(probe + " write " + db + " 1 60"); });
    procs.emplace_back([&] { status[1] = run(probe + " write " + db + " 101 60"); });
    procs.emplace_back([&] { status[2] = run(probe + " read " + db + " 2 > " + db + ".reader.txt"); });
    for (auto &p : procs) p.join();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(status[i], 0) << "process " << i;
    const ScheduleDb merged = ScheduleDb::load(db);
    EXPECT_EQ(merged.records().size(), 120u);
    for (int c1 : {1, 60, 101, 160}) {
        EXPECT_NE(merged.find_exact(parse_layer_spec("conv c1=" + std::to_string(c1) + " c2=8 h=8 w=8 k=3").to_string(),
                                    "x86-64-linux-avx-avx2-f16c-fma-sse41", 1, "probe cpu"),
                  nullptr)
            << c1;
    }
    std::ifstream reader(db + ".reader.txt");
    std::string line;
    std::getline(reader, line);
    EXPECT_EQ(line.rfind("loads=", 0), 0u) << line;
    // The lock lives in its own file: the database itself is replaced by rename, never locked.
    EXPECT_NE(std::ifstream(db + ".lock").good(), false);
    std::remove(db.c_str());
    std::remove((db + ".lock").c_str());
    std::remove((db + ".reader.txt").c_str());
}

TEST(ScheduleDb, LookupPrefersThisHostThenFallsBackThenNeighbours) {
    const std::string target = "x86-64-linux-avx-avx2-f16c-fma-sse41";
    const std::string tuned = "vec=8 tile_vectors=3 tile_rows=4 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=0";
    ScheduleDb db;
    db.upsert(make_record("conv c1=64 c2=64 h=56 w=56 k=3", tuned, 1.0, host_cpu_model()));
    db.upsert(make_record("conv c1=32 c2=32 h=28 w=28 k=3", "auto=Li2018", 1.0, "some other CPU"));
    const LayerSpec exact = parse_layer_spec("conv c1=64 c2=64 h=56 w=56 k=3");
    ScheduleLookup l = lookup_schedule(&db, "db.json", exact, target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.to_string(), tuned);

    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=32 c2=32 h=28 w=28 k=3"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::TunedOtherHost);
    EXPECT_EQ(l.params.autoscheduler, "Li2018");

    // No record: the nearest layer with the same kind, k and s; the heuristic for anything else.
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=64 c2=72 h=50 w=50 k=3"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Neighbour);
    EXPECT_NE(l.detail.find("c1=64 c2=64"), std::string::npos) << l.detail;
    EXPECT_EQ(l.params.tile_vectors, 3);
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=64 c2=64 h=56 w=56 k=5"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Heuristic);
    // Same kind, k and s but more than 2x away (4x the channels, a quarter of the pixels): the
    // heuristic, and the detail names the neighbour that was too far.
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=256 c2=256 h=28 w=28 k=3"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Heuristic);
    EXPECT_EQ(l.params.to_string(), heuristic_schedule(parse_layer_spec("conv c1=256 c2=256 h=28 w=28 k=3"), IsaFamily::AVX2).to_string());
    EXPECT_NE(l.detail.find("too far"), std::string::npos) << l.detail;
    // Just inside 2x (c2 1.5x, pixels 1.3x the record's): still the neighbour.
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=64 c2=96 h=64 w=64 k=3"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Neighbour);
    // A grouped neighbour vectorised along channels (groups of 4 vectors of 8) keeps that for a
    // layer whose groups are whole vectors too, and goes along x, its pixel tile turned into a
    // channel tile that divides the group (30 channels: 14 -> at most 8 -> 6), for one whose are not.
    db.upsert(make_record("conv c1=128 c2=128 h=28 w=28 k=3 g=4",
                          "vec=8 tile_vectors=2 tile_rows=14 parallel_rows=2 channels=1 channel_tasks=0 dw_per_task=0", 1.0,
                          host_cpu_model()));
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=128 c2=128 h=24 w=24 k=3 g=4"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Neighbour);
    EXPECT_EQ(l.params.vectorize_channels, 1);
    EXPECT_EQ(l.params.tile_rows, 14);
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=120 c2=120 h=28 w=28 k=3 g=4"), target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Neighbour);
    EXPECT_EQ(l.params.vectorize_channels, 0);
    EXPECT_EQ(l.params.tile_rows, 6);
    EXPECT_EQ(l.params.parallel_channels, 0);
    l = lookup_schedule(&db, "db.json", exact, "x86-64-linux-sse41", IsaFamily::Generic, 1);
    EXPECT_EQ(l.source, ScheduleSource::Heuristic);
    l = lookup_schedule(nullptr, "", exact, target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.source, ScheduleSource::Heuristic);
}

// An AOT build's AVX-512 variant has a shorter target string than the JIT's on the same host:
// a record tuned for the JIT's target is its marked fallback, never one of another ISA family.
TEST(ScheduleDb, LookupFallsBackToAnotherTargetOfTheSameIsaFamily) {
    const std::string jit_target = "x86-64-linux-avx-avx2-avx512-avx512_cannonlake-avx512_sapphirerapids-avx512_skylake-f16c-fma-sse41";
    const std::string aot_target = "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41";
    const std::string tuned = "vec=16 tile_vectors=2 tile_rows=8 parallel_rows=4 channels=0 channel_tasks=0 dw_per_task=0";
    ScheduleDb db;
    ScheduleRecord r = make_record("conv c1=64 c2=64 h=56 w=56 k=3", tuned, 1.0, host_cpu_model());
    r.target = jit_target;
    db.upsert(r);
    const LayerSpec spec = parse_layer_spec("conv c1=64 c2=64 h=56 w=56 k=3");
    ScheduleLookup l = lookup_schedule(&db, "db.json", spec, jit_target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    l = lookup_schedule(&db, "db.json", spec, aot_target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::TunedOtherHost);
    EXPECT_EQ(l.params.to_string(), tuned);
    EXPECT_NE(l.detail.find("tuned for target " + jit_target), std::string::npos) << l.detail;
    // An exact record for the AOT target wins over the other target's.
    r.target = aot_target;
    r.schedule = "vec=16 tile_vectors=1 tile_rows=8 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=0";
    db.upsert(r);
    l = lookup_schedule(&db, "db.json", spec, aot_target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.to_string(), r.schedule);
    // Another ISA family does not take either (16-lane vectors on an AVX2 variant).
    l = lookup_schedule(&db, "db.json", spec, "x86-64-linux-avx-avx2-f16c-fma-sse41", IsaFamily::AVX2, 1);
    EXPECT_NE(l.source, ScheduleSource::Tuned);
    EXPECT_NE(l.source, ScheduleSource::TunedOtherHost);
    EXPECT_EQ(l.params.vector_width, 8);
}

// AVX-512 kernels may use 8-lane vectors (vector_widths): this host's record and a neighbour keep
// them; another CPU model's record gets 16 lanes back over the same pixels, and explain says so.
TEST(ScheduleDb, NarrowVectorsAreKeptOnlyForTheCpuTheyWereTunedOn) {
    const std::string target = "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41";
    const std::string narrow = "vec=8 tile_vectors=7 tile_rows=4 parallel_rows=10 channels=0 channel_tasks=1 dw_per_task=0";
    const LayerSpec spec = parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 g=32");
    ScheduleRecord r = make_record(spec.to_string(), narrow, 1.0, host_cpu_model());
    r.target = target;
    ScheduleDb db;
    db.upsert(r);
    ScheduleLookup l = lookup_schedule(&db, "db.json", spec, target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.to_string(), narrow);
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=128 c2=128 h=48 w=48 k=3 g=32"), target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Neighbour);
    EXPECT_EQ(l.params.vector_width, 8);

    r.cpu = "some other CPU";
    ScheduleDb other;
    other.upsert(r);
    l = lookup_schedule(&other, "db.json", spec, target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::TunedOtherHost);
    EXPECT_EQ(l.params.vector_width, 16);
    EXPECT_EQ(l.params.tile_vectors, 3);  // 7 vectors of 8 -> 3 of 16
    EXPECT_EQ(l.params.tile_rows, 4);
    EXPECT_NE(l.detail.find("vec 8 -> 16"), std::string::npos) << l.detail;
}

// Hypervisors give one CPU different brand strings: a record whose "(family F model M)" is this
// host's is this host's (kept 8-lane vectors included), ahead of another microarchitecture's, and
// behind a record under this host's exact name.
TEST(ScheduleDb, ARecordOfTheSameFamilyAndModelUnderAnotherNameIsThisHosts) {
    const std::string host = host_cpu_model();
    const size_t at = host.rfind("(family ");
    if (at == std::string::npos) GTEST_SKIP() << "host CPU model has no family and model: " << host;
    const std::string renamed = "Another Brand String " + host.substr(at);
    EXPECT_TRUE(same_microarchitecture(renamed, host));
    EXPECT_FALSE(same_microarchitecture("Some CPU (family 1 model 1)", host));
    EXPECT_FALSE(same_microarchitecture("Some CPU", "Another CPU"));
    EXPECT_FALSE(same_microarchitecture("Some CPU (family 1 model 1)", "Some CPU (family 1 model 10)"));

    const std::string target = "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41";
    const LayerSpec spec = parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 g=32");
    const std::string other_arch = "vec=16 tile_vectors=2 tile_rows=4 parallel_rows=2 channels=0 channel_tasks=1 dw_per_task=0";
    const std::string same_arch = "vec=8 tile_vectors=7 tile_rows=4 parallel_rows=4 channels=0 channel_tasks=1 dw_per_task=0";
    const std::string this_host = "vec=16 tile_vectors=4 tile_rows=4 parallel_rows=4 channels=0 channel_tasks=1 dw_per_task=0";
    ScheduleDb db;
    // The other microarchitecture's record has the exact thread count; the renamed one does not.
    ScheduleRecord r = make_record(spec.to_string(), other_arch, 1.0, "Some CPU (family 1 model 1)");
    r.target = target;
    db.upsert(r);
    r = make_record(spec.to_string(), same_arch, 1.0, renamed);
    r.target = target;
    r.threads = 2;
    db.upsert(r);
    ScheduleLookup l = lookup_schedule(&db, "db.json", spec, target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.to_string(), same_arch);
    EXPECT_NE(l.detail.find(renamed), std::string::npos) << l.detail;

    r = make_record(spec.to_string(), this_host, 1.0, host);
    r.target = target;
    r.threads = 2;
    db.upsert(r);
    l = lookup_schedule(&db, "db.json", spec, target, IsaFamily::AVX512, 1);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.to_string(), this_host);
}

// A 1-thread winner that makes the whole image one task would leave other threads idle: looked up
// for more threads, its rows are split (whole tile_y tiles) and explain's detail says so.
TEST(ScheduleDb, LookupForMoreThreadsSplitsSingleTaskSchedules) {
    const std::string target = "x86-64-linux-avx-avx2-f16c-fma-sse41";
    const std::string one_task = "vec=8 tile_vectors=1 tile_rows=4 parallel_rows=14 channels=0 channel_tasks=0 dw_per_task=0 tile_y=2";
    const std::string channel_tasks = "vec=8 tile_vectors=2 tile_rows=4 parallel_rows=14 channels=0 channel_tasks=1 dw_per_task=0";
    ScheduleDb db;
    db.upsert(make_record("conv c1=64 c2=64 h=14 w=14 k=3", one_task, 1.0, host_cpu_model()));
    db.upsert(make_record("conv c1=64 c2=64 h=14 w=14 k=3 g=16", channel_tasks, 1.0, host_cpu_model()));
    const LayerSpec dense = parse_layer_spec("conv c1=64 c2=64 h=14 w=14 k=3");

    ScheduleLookup l = lookup_schedule(&db, "db.json", dense, target, IsaFamily::AVX2, 1);
    EXPECT_EQ(l.params.to_string(), one_task);
    EXPECT_EQ(l.detail.find("parallel_rows"), std::string::npos) << l.detail;

    l = lookup_schedule(&db, "db.json", dense, target, IsaFamily::AVX2, 2);
    EXPECT_EQ(l.source, ScheduleSource::Tuned);
    EXPECT_EQ(l.params.parallel_rows, 2);  // 14 rows / 4 tasks = 3, down to a whole tile of 2 rows
    EXPECT_EQ(l.params.tile_y, 2);
    EXPECT_NE(l.detail.find("parallel_rows 14 -> 2 for 2 threads"), std::string::npos) << l.detail;

    l = lookup_schedule(&db, "db.json", dense, target, IsaFamily::AVX2, 16);
    EXPECT_EQ(l.params.parallel_rows, 1);

    // Tasks that are channel tiles already give every thread work.
    l = lookup_schedule(&db, "db.json", parse_layer_spec("conv c1=64 c2=64 h=14 w=14 k=3 g=16"), target, IsaFamily::AVX2, 2);
    EXPECT_EQ(l.params.to_string(), channel_tasks);
}

TEST(Tuner, DurationsAndShards) {
    EXPECT_DOUBLE_EQ(parse_duration("10m"), 600);
    EXPECT_DOUBLE_EQ(parse_duration("90s"), 90);
    EXPECT_DOUBLE_EQ(parse_duration("1.5h"), 5400);
    EXPECT_DOUBLE_EQ(parse_duration("45"), 45);
    for (const char *bad : {"", "m", "-1m", "0", "10x", "nan", "1e9h"}) EXPECT_THROW(parse_duration(bad), Error) << bad;
    std::vector<LayerSpec> specs;
    for (int c = 1; c <= 7; ++c) specs.push_back(parse_layer_spec("conv c1=" + std::to_string(c) + " c2=4 h=5 w=5 k=3"));
    size_t total = 0;
    for (int i = 0; i < 3; ++i) {
        const auto part = shard_of(specs, i, 3);
        total += part.size();
        for (const auto &s : part) EXPECT_EQ((s.c1 - 1) % 3, i);
    }
    EXPECT_EQ(total, specs.size());
    EXPECT_THROW(shard_of(specs, 3, 3), Error);
    EXPECT_THROW(shard_of(specs, 0, 0), Error);
}

TEST(Tuner, FinalRoundIsRepeatedOnlyWhenEveryLeaderSlowedDown) {
    // A busy machine slows every leader; one slower leader is a measurement of that schedule.
    EXPECT_TRUE(uniformly_slower({0.16, 0.17, 0.21}, {0.31, 0.30, 0.33}, 1.25));
    EXPECT_FALSE(uniformly_slower({0.16, 0.17, 0.21}, {0.31, 0.18, 0.33}, 1.25));
    EXPECT_FALSE(uniformly_slower({0.16, 0.17}, {0.19, 0.20}, 1.25));
    EXPECT_FALSE(uniformly_slower({}, {}, 1.25));
    EXPECT_FALSE(uniformly_slower({0.16}, {0.31, 0.30}, 1.25));
}

TEST(Tuner, MutationsStayInTheTemplateSpaceAndSplitRowsEvenly) {
    const LayerSpec spec = parse_layer_spec("dwconv c1=64 c2=64 h=28 w=28 k=3");
    ScheduleParams p = heuristic_schedule(spec, IsaFamily::AVX512);
    p.vectorize_channels = 0;
    p.flat_rows = 0;
    p.tile_vectors = 1;
    p.tile_rows = 8;
    p.tile_y = 2;
    p.parallel_rows = 8;
    auto rows_of = [&](int threads) {
        std::set<int> rows;
        for (const auto &q : schedule_mutations(p, spec, IsaFamily::AVX512, threads)) {
            EXPECT_FALSE(q == p) << "a mutation changes something";
            // A flat run's rows are not in the register tile (tile_flat_rows).
            EXPECT_LE(q.tile_vectors * q.tile_rows * (q.flat_rows ? 1 : q.tile_y), 64) << q.to_string();
            EXPECT_TRUE(q.tile_y == 1 || !q.vectorize_channels) << q.to_string();
            EXPECT_TRUE(q.channel_blocks == 1 || channel_blocks_apply(spec, q)) << q.to_string();
            EXPECT_TRUE(!q.stream_input || stream_applies(spec, q)) << q.to_string();
            EXPECT_GE(q.parallel_rows, 1);
            EXPECT_LE(q.parallel_rows, spec.out_h());
            rows.insert(q.parallel_rows);
        }
        return rows;
    };
    // One thread: halving and doubling only.
    EXPECT_EQ(rows_of(1), (std::set<int>{4, 8, 16}));
    // Two threads: also 14, 7, 5 and 4 rows (28 rows in 2, 4, 6 and 8 tasks), so no thread idles
    // on a lone last task.
    EXPECT_EQ(rows_of(2), (std::set<int>{4, 5, 7, 8, 14, 16}));
    // Streaming the staged input is proposed where the template has it, and dropped from a
    // mutation into a template without it (flat rows along x, without the depthwise per task).
    bool streams = false;
    for (const auto &q : schedule_mutations(p, spec, IsaFamily::AVX512, 1)) streams |= q.stream_input == 1;
    EXPECT_TRUE(streams);
    ScheduleParams s = p;
    s.stream_input = 1;
    s.tile_y = 1;
    for (const auto &q : schedule_mutations(s, spec, IsaFamily::AVX512, 1)) {
        if (q.flat_rows && !q.depthwise_per_task) {
            EXPECT_EQ(q.stream_input, 0) << q.to_string();
        }
    }
    // Turning flat rows on from rows along x also proposes runs of whole pixel tiles: from a
    // grouped 1x1 conv's 3-vector tile over 28-wide rows (no run of 8 rows or fewer is whole
    // tiles of 48), one vector over 4 rows (112 pixels, 7 tiles), in tasks of whole runs.
    const LayerSpec grouped_1x1 = parse_layer_spec("conv c1=240 c2=240 h=28 w=28 k=1 p=0 g=3");
    const ScheduleParams rows = ScheduleParams::parse("vec=16 tile_vectors=3 tile_rows=5 parallel_rows=7");
    bool whole_run = false;
    for (const auto &q : schedule_mutations(rows, grouped_1x1, IsaFamily::AVX512, 1)) {
        if (q.flat_rows && q.tile_vectors == 1 && q.tile_y == 4) {
            whole_run = true;
            EXPECT_EQ(q.parallel_rows % 4, 0) << q.to_string();
        }
    }
    EXPECT_TRUE(whole_run);
    // Accumulators past twice the AVX-512 register file are never proposed.
    p.tile_rows = 8;
    p.tile_vectors = 4;
    p.tile_y = 2;
    for (const auto &q : schedule_mutations(p, spec, IsaFamily::AVX512, 1))
        EXPECT_LE(q.tile_vectors * q.tile_rows * (q.flat_rows ? 1 : q.tile_y), 64) << q.to_string();

    // A grouped conv whose groups hold whole vectors may go along channels, and then never keeps
    // channel tasks (an along-x schedule); one with 6 channels per group stays along x.
    const LayerSpec grouped = parse_layer_spec("conv c1=64 c2=128 h=40 w=40 k=3 g=4");
    ScheduleParams g = heuristic_schedule(grouped, IsaFamily::AVX512);
    g.vectorize_channels = 0;
    g.parallel_channels = 1;
    bool went_along_channels = false;
    for (const auto &q : schedule_mutations(g, grouped, IsaFamily::AVX512, 2)) {
        if (q.vectorize_channels) went_along_channels = true;
        EXPECT_TRUE(!q.vectorize_channels || !q.parallel_channels) << q.to_string();
    }
    EXPECT_TRUE(went_along_channels);
    // Along channels, the tasks may also be split into blocks of channel tiles (and back from
    // them); going back along x drops the blocks, which only along-channel convs have.
    g.vectorize_channels = 1;
    g.parallel_channels = 0;
    g.tile_y = 1;
    g.channel_blocks = 4;
    std::set<int> blocks;
    for (const auto &q : schedule_mutations(g, grouped, IsaFamily::AVX512, 2)) {
        EXPECT_TRUE(q.channel_blocks == 1 || channel_blocks_apply(grouped, q)) << q.to_string();
        if (!q.vectorize_channels) {
            EXPECT_EQ(q.channel_blocks, 1) << q.to_string();
        }
        blocks.insert(q.channel_blocks);
    }
    EXPECT_EQ(blocks, (std::set<int>{1, 2, 4, 8}));
    // AVX-512 also proposes 8-lane vectors (the same tile, and one covering the same pixels), and
    // back; AVX2 keeps its 8.
    const LayerSpec g32 = parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 g=32");
    ScheduleParams wide = heuristic_schedule(g32, IsaFamily::AVX512);
    wide.vectorize_channels = 0;
    wide.tile_y = 1;
    wide.tile_vectors = 2;
    wide.tile_rows = 4;
    // The tile_vectors of the mutations of `p` to `width` lanes.
    auto tiles_at_width = [&](const ScheduleParams &p, int width) {
        std::set<int> tiles;
        for (const auto &q : schedule_mutations(p, g32, IsaFamily::AVX512, 1)) {
            if (q.vector_width == width) tiles.insert(q.tile_vectors);
        }
        return tiles;
    };
    EXPECT_EQ(tiles_at_width(wide, 8), (std::set<int>{2, 4, 7}));  // 7: the whole row (MutationsIncludeTheTileOfAWholeRow)
    ScheduleParams narrow = wide;
    narrow.vector_width = 8;
    narrow.tile_vectors = 7;
    EXPECT_EQ(tiles_at_width(narrow, 16), (std::set<int>{3, 7}));
    for (const auto &q : schedule_mutations(heuristic_schedule(g32, IsaFamily::AVX2), g32, IsaFamily::AVX2, 1))
        EXPECT_EQ(q.vector_width, 8) << q.to_string();
    const LayerSpec six = parse_layer_spec("conv c1=12 c2=12 h=16 w=16 k=3 g=2");
    for (const auto &q : schedule_mutations(heuristic_schedule(six, IsaFamily::AVX512), six, IsaFamily::AVX512, 1))
        EXPECT_EQ(q.vectorize_channels, 0) << q.to_string();
}

// The heuristic within each template family (the tuner's extra seeds): the family asked for where
// the spec supports it, rows along x where it does not; the heuristic itself is one of them.
TEST(Tuner, HeuristicWithinEachTemplateFamily) {
    const auto family = [](const char *text, TemplateFamily f) {
        const LayerSpec spec = parse_layer_spec(text);
        return adapt_to_spec(heuristic_schedule(spec, IsaFamily::AVX512, true, f), spec);
    };
    for (const char *text : {"conv c1=64 c2=64 h=56 w=56 k=3", "conv c1=240 c2=240 h=28 w=28 k=1 g=3",
                             "dwconv c1=128 c2=256 h=28 w=28 k=3", "conv c1=96 c2=256 h=27 w=27 k=5 g=2"}) {
        const LayerSpec spec = parse_layer_spec(text);
        const ScheduleParams x = family(text, TemplateFamily::AlongX);
        const ScheduleParams flat = family(text, TemplateFamily::FlatRows);
        const ScheduleParams channels = family(text, TemplateFamily::AlongChannels);
        EXPECT_EQ(x.vectorize_channels + x.flat_rows, 0) << text << " | " << x.to_string();
        EXPECT_EQ(flat.flat_rows, flat_rows_supported(spec) ? 1 : 0) << text << " | " << flat.to_string();
        EXPECT_EQ(flat.vectorize_channels, 0) << text << " | " << flat.to_string();
        EXPECT_EQ(channels.vectorize_channels, 1) << text << " | " << channels.to_string();
        EXPECT_EQ(channels.flat_rows, 0) << text << " | " << channels.to_string();
        const std::string h = adapt_to_spec(heuristic_schedule(spec, IsaFamily::AVX512, true), spec).to_string();
        EXPECT_TRUE(h == x.to_string() || h == flat.to_string() || h == channels.to_string()) << text << " | " << h;
        if (flat.flat_rows) {
            EXPECT_LE(flat.tile_vectors * flat.tile_rows + flat.tile_vectors + 1, 32) << text << " | " << flat.to_string();
        }
    }
    // A grouped conv whose groups are not whole vectors has no channel vectors: rows along x.
    EXPECT_EQ(family("conv c1=128 c2=128 h=56 w=56 k=3 g=32", TemplateFamily::AlongChannels).vectorize_channels, 0);
    // Flat rows of a grouped 1x1 conv keep a group's channels in one register tile.
    const ScheduleParams g3 = family("conv c1=240 c2=240 h=28 w=28 k=1 g=3", TemplateFamily::FlatRows);
    EXPECT_EQ(80 % g3.tile_rows, 0) << g3.to_string();
}

// NCHW dwconv rows that waste lanes along x (28 pixels = 3.5 vectors of 8) get flat pixel runs of
// whole register tiles from the heuristic, in tasks of whole runs; rows of whole vectors stay
// along x. From a flat schedule whose run is not whole tiles, the tuner proposes the shortest run
// that is.
TEST(Tuner, FlatRunsAreWholeRegisterTiles) {
    const LayerSpec rows28 = parse_layer_spec("dwconv c1=256 c2=256 h=28 w=28 k=3");
    const ScheduleParams h = heuristic_schedule(rows28, IsaFamily::AVX2);
    EXPECT_EQ(h.flat_rows, 1) << h.to_string();
    EXPECT_EQ(h.tile_y * 28 % (h.tile_vectors * h.vector_width), 0) << h.to_string();
    EXPECT_EQ(h.parallel_rows % h.tile_y, 0) << h.to_string();
    EXPECT_LE(h.tile_vectors * h.tile_rows + h.tile_vectors + 1, 16) << h.to_string();
    EXPECT_EQ(heuristic_schedule(parse_layer_spec("dwconv c1=32 c2=64 h=112 w=112 k=3"), IsaFamily::AVX2).flat_rows, 0);

    const ScheduleParams one_row = ScheduleParams::parse("vec=8 tile_vectors=2 tile_rows=6 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=0 flat=1");
    bool proposed = false;
    for (const auto &q : schedule_mutations(one_row, rows28, IsaFamily::AVX2, 1)) {
        if (q.flat_rows && q.tile_vectors == 2 && q.tile_rows == 6 && q.tile_y == 4) {
            proposed = true;
            EXPECT_EQ(q.parallel_rows, 4) << q.to_string();
        }
    }
    EXPECT_TRUE(proposed);
    // Flat tiles of 3 vectors (one 48-lane vector LLVM assembles element by element) are never
    // proposed: not from 2 or 4 vectors, nor turning flat rows on from 3 vectors along x.
    ScheduleParams along_x = one_row;
    along_x.flat_rows = 0;
    along_x.tile_vectors = 3;
    ScheduleParams four = one_row;
    four.tile_vectors = 4;
    int flat_mutations = 0;
    for (const ScheduleParams &base : {one_row, four, along_x}) {
        for (const auto &q : schedule_mutations(base, rows28, IsaFamily::AVX2, 1)) {
            if (!q.flat_rows) continue;
            ++flat_mutations;
            EXPECT_TRUE(flat_tile_vectors_supported(q.tile_vectors)) << q.to_string();
        }
    }
    EXPECT_GT(flat_mutations, 10);
}

// The tuner proposes depthwise row tiles where the depthwise is computed for several rows at
// once, doubling and halving them, never past those rows, and drops them where it is per row.
TEST(Tuner, MutationsIncludeTheTileOfAWholeRow) {
    // 56-pixel rows: 7 vectors of 8 lanes (56 is not whole vectors of 16), with the channel rows
    // that fit beside them in 32 registers, 4 (one group of this grouped conv).
    const LayerSpec g32 = parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 g=32 act=relu");
    const ScheduleParams start = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=4 parallel_rows=3 tile_y=3");
    int whole_rows = 0;
    for (const auto &q : schedule_mutations(start, g32, IsaFamily::AVX512, 1)) {
        if (q.tile_vectors * q.vector_width != g32.out_w()) continue;
        ++whole_rows;
        EXPECT_EQ(q.vector_width, 8) << q.to_string();
        EXPECT_EQ(q.tile_rows, 4) << q.to_string();
        EXPECT_EQ(q.tile_y, 1) << q.to_string();
    }
    EXPECT_EQ(whole_rows, 1);
    // From that tile itself, none (a mutation changes something).
    const ScheduleParams whole = ScheduleParams::parse("vec=8 tile_vectors=7 tile_rows=4 parallel_rows=3");
    for (const auto &q : schedule_mutations(whole, g32, IsaFamily::AVX512, 1)) EXPECT_FALSE(q == whole) << q.to_string();
    // Rows that are no whole number of vectors (28 at 8 and 16 lanes) get none.
    const LayerSpec b8 = parse_layer_spec("conv n=8 c1=128 c2=128 h=28 w=28 k=3 g=32 act=relu");
    for (const auto &q : schedule_mutations(heuristic_schedule(b8, IsaFamily::AVX512), b8, IsaFamily::AVX512, 1))
        EXPECT_NE(q.tile_vectors * q.vector_width, b8.out_w()) << q.to_string();
}

TEST(Tuner, MutationsTileTheDepthwiseRowsWhereTheyApply) {
    const LayerSpec spec = parse_layer_spec("dwconv c1=240 c2=80 h=28 w=28 k=5 act=silu");
    const ScheduleParams per_task = ScheduleParams::parse("vec=16 tile_vectors=1 tile_rows=7 parallel_rows=4 channels=1 dw_per_task=1 dw_rows=2");
    bool doubled = false, halved = false;
    for (const auto &q : schedule_mutations(per_task, spec, IsaFamily::AVX512, 1)) {
        EXPECT_LE(q.depthwise_rows, depthwise_rows_at_once(spec, q)) << q.to_string();
        if (!depthwise_rows_apply(spec, q)) {
            EXPECT_EQ(q.depthwise_rows, 1) << q.to_string();
        }
        if (q.depthwise_per_task && q.parallel_rows == 4 && q.tile_rows == 7 && q.tile_vectors == 1) {
            doubled |= q.depthwise_rows == 4;
            halved |= q.depthwise_rows == 1;
        }
    }
    EXPECT_TRUE(doubled);
    EXPECT_TRUE(halved);
    // At the task's rows already, doubling would be clamped back: no mutation is the schedule itself.
    ScheduleParams full = per_task;
    full.depthwise_rows = 4;
    for (const auto &q : schedule_mutations(full, spec, IsaFamily::AVX512, 1)) EXPECT_FALSE(q == full) << q.to_string();
}

// The heuristic tiles the depthwise over up to 4 rows where it is a tenth of the MACs or more, 2
// where a 30th or more.
TEST(Tuner, HeuristicTilesTheDepthwiseRowsWhereTheDepthwiseWeighs) {
    const LayerSpec k5_spec = parse_layer_spec("dwconv c1=240 c2=80 h=28 w=28 k=5 act=silu");
    const ScheduleParams k5 = heuristic_schedule(k5_spec, IsaFamily::AVX512);
    EXPECT_TRUE(depthwise_rows_apply(k5_spec, k5)) << k5.to_string();
    EXPECT_EQ(k5.depthwise_rows, std::min(4, k5.tile_y)) << k5.to_string();
    EXPECT_GT(k5.depthwise_rows, 1) << k5.to_string();
    const LayerSpec mid_spec = parse_layer_spec("dwconv c1=64 c2=128 h=112 w=112 k=3 s=2");
    const ScheduleParams mid = heuristic_schedule(mid_spec, IsaFamily::AVX512);
    ASSERT_TRUE(depthwise_rows_apply(mid_spec, mid)) << mid.to_string();
    EXPECT_EQ(mid.depthwise_rows, 2) << "a 30th of the MACs or more: " << mid.to_string();
    const ScheduleParams wide = heuristic_schedule(parse_layer_spec("dwconv c1=512 c2=512 h=14 w=14 k=3"), IsaFamily::AVX512);
    EXPECT_EQ(wide.depthwise_rows, 1) << wide.to_string();
}

// The transposed store applies to NCHW channel-vector tiles of 16 lanes whose even pixel count
// divides the rows; the heuristic takes it for power-of-two tiles, the tuner flips it.
TEST(Tuner, TransposeStoreAppliesToEvenTilesOfSixteenLanes) {
    const LayerSpec yolo = parse_layer_spec("conv c1=64 c2=128 h=80 w=80 k=3 s=2 g=4 act=silu");
    const ScheduleParams p = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=8 parallel_rows=10 channels=1 channel_blocks=4");
    EXPECT_TRUE(transpose_store_applies(yolo, p));
    EXPECT_FALSE(output_transpose_for(yolo, p).on()) << "off unless asked for";
    ScheduleParams on = p;
    on.transpose_store = 1;
    EXPECT_EQ(output_transpose_for(yolo, on).pixels, 8);
    EXPECT_EQ(output_transpose_for(yolo, on).lanes, 16);
    ScheduleParams odd = on, eight_lanes = on, along_x = on;
    odd.tile_rows = 5;
    eight_lanes.vector_width = 8;
    along_x.vectorize_channels = 0;
    EXPECT_FALSE(transpose_store_applies(yolo, odd));
    EXPECT_FALSE(transpose_store_applies(yolo, eight_lanes));
    EXPECT_FALSE(transpose_store_applies(yolo, along_x));
    EXPECT_EQ(adapt_to_spec(odd, yolo).transpose_store, 0);
    EXPECT_FALSE(transpose_store_applies(parse_layer_spec("conv c1=64 c2=40 h=80 w=80 k=3 s=2 act=silu"), on)) << "40 channels";
    EXPECT_FALSE(transpose_store_applies(parse_layer_spec("conv c1=64 c2=128 h=80 w=80 k=3 s=2 layout=nhwc"), on));
    ScheduleParams six = on;  // 6 pixels do not divide 40-pixel rows
    six.tile_rows = 6;
    EXPECT_FALSE(transpose_store_applies(yolo, six));

    const ScheduleParams heuristic = heuristic_schedule(yolo, IsaFamily::AVX512);
    ASSERT_TRUE(transpose_store_applies(yolo, heuristic)) << heuristic.to_string();
    EXPECT_EQ(heuristic.transpose_store, 1) << heuristic.to_string();
    bool flipped = false;
    for (const auto &q : schedule_mutations(on, yolo, IsaFamily::AVX512, 1)) {
        if (!transpose_store_applies(yolo, q)) {
            EXPECT_EQ(q.transpose_store, 0) << q.to_string();
        }
        flipped |= q.transpose_store == 0 && q.tile_rows == 8 && q.tile_vectors == 2 && q.vector_width == 16 && q.parallel_rows == 10;
    }
    EXPECT_TRUE(flipped);
}

// A winner from the AVX-512 host seeds an AVX2 search: its structure is kept, its vector width
// becomes AVX2's and its 32-accumulator tile is cut to fit 16 registers; a grouped conv whose
// 4-channel groups hold no 8-lane vector goes along x, with a channel tile inside one group.
TEST(Tuner, SeedsFromAnotherIsaFitItsRegisterFile) {
    const LayerSpec dw = parse_layer_spec("dwconv n=8 c1=256 c2=256 h=28 w=28 k=3");
    ScheduleParams p = ScheduleParams::parse("vec=16 tile_vectors=4 tile_rows=8 parallel_rows=4 channels=1 channel_tasks=0 dw_per_task=1 channel_blocks=2 stream=1");
    const ScheduleParams q = seed_from_other_isa(p, dw, IsaFamily::AVX2, 8);
    EXPECT_EQ(q.vector_width, 8);
    EXPECT_EQ(q.vectorize_channels, 1);
    EXPECT_EQ(q.depthwise_per_task, 1);
    EXPECT_EQ(q.channel_blocks, 2);
    EXPECT_EQ(q.stream_input, 1) << "the depthwise per task streams its input on any ISA";
    EXPECT_LE(q.tile_vectors * q.tile_rows, 12);
    EXPECT_GE(q.tile_vectors * q.tile_rows, 6) << "cut to fit, not to one accumulator: " << q.to_string();
    EXPECT_EQ(q.autoscheduler, "");

    const LayerSpec g4 = parse_layer_spec("conv c1=16 c2=16 h=28 w=28 k=3 g=4");
    ScheduleParams along = ScheduleParams::parse("vec=4 tile_vectors=1 tile_rows=14 parallel_rows=4 channels=1 channel_tasks=0 dw_per_task=0");
    const ScheduleParams r = seed_from_other_isa(along, g4, IsaFamily::AVX2, 8);
    EXPECT_EQ(r.vectorize_channels, 0) << "4-channel groups hold no 8-lane vector: " << r.to_string();
    EXPECT_LE(r.tile_rows, max_tile_rows(g4, r));
    EXPECT_EQ(g4.out_channels_per_group() % r.tile_rows, 0) << "along x a tile's channels stay in one group: " << r.to_string();
    EXPECT_LE(r.tile_vectors * r.tile_rows * r.tile_y, 12);
}

// The heuristic gives a grouped conv that runs along channels one task per group (channel blocks),
// with enough row blocks for 16 tasks; an along-x or dense conv keeps row tasks only.
TEST(Tuner, HeuristicTasksDivideTheImageWhenRowTilesGuardTheLastTask) {
    int with_row_tiles = 0;
    for (const char *text : {"dwconv n=8 c1=256 c2=256 h=28 w=28 k=3", "dwconv n=4 c1=64 c2=64 h=27 w=27 k=3",
                             "conv n=8 c1=64 c2=64 h=28 w=28 k=3", "dwconv n=1 c1=256 c2=256 h=56 w=56 k=3"}) {
        const LayerSpec spec = parse_layer_spec(text);
        for (IsaFamily isa : {IsaFamily::AVX2, IsaFamily::AVX512}) {
            const ScheduleParams p = heuristic_schedule(spec, isa);
            if (p.tile_y <= 1 || p.parallel_channels) continue;
            ++with_row_tiles;
            EXPECT_EQ(spec.out_h() % p.parallel_rows, 0) << text << ": " << p.to_string();
            EXPECT_EQ(p.parallel_rows % p.tile_y == 0 || p.parallel_rows == spec.out_h(), true) << text << ": " << p.to_string();
        }
    }
    // Not vacuous: the heuristic gives most of these shapes row tiles (7 of the 8 when written).
    EXPECT_GE(with_row_tiles, 4);
    // mbv1_batch8's shape: 8 rows a task (16 tasks wanted from 224 rows) become 4, whole tiles of 4 rows.
    const ScheduleParams b8 = heuristic_schedule(parse_layer_spec("dwconv n=8 c1=256 c2=256 h=28 w=28 k=3"), IsaFamily::AVX512);
    EXPECT_EQ(b8.tile_y, 4) << b8.to_string();
    EXPECT_EQ(b8.parallel_rows, 4) << b8.to_string();
}

// On a CPU that splits 512-bit FMAs (Zen 4) the heuristic keeps its register tile and takes
// 8-lane vectors where they waste fewer lanes of an NCHW row or of NHWC output channels;
// elsewhere, and where 16 lanes fit as well, it keeps 16.
TEST(Tuner, HeuristicTakesEightLanesWhereWideFmasAreSplitAndTheyWasteFewerLanes) {
    for (const char *text : {"conv c1=64 c2=64 h=56 w=56 k=3", "conv c1=120 c2=120 h=45 w=47 k=3 s=2 g=120",
                             "conv c1=16 c2=24 h=9 w=7 k=3", "conv c1=24 c2=40 h=56 w=56 k=3 layout=nhwc",
                             "dwconv c1=72 c2=24 h=56 w=56 k=3 layout=nhwc"}) {
        const LayerSpec spec = parse_layer_spec(text);
        const ScheduleParams wide = heuristic_schedule(spec, IsaFamily::AVX512);
        const ScheduleParams split = heuristic_schedule(spec, IsaFamily::AVX512, true);
        EXPECT_EQ(wide.vector_width, 16) << text;
        EXPECT_EQ(split.vector_width, 8) << text << ": " << split.to_string();
        ScheduleParams same_tile = wide;
        same_tile.vector_width = 8;
        EXPECT_EQ(split.to_string(), same_tile.to_string()) << text;
    }
    // Rows of 32 (whole 16-lane vectors) and of 28 (32 pixels computed with one-vector tiles of
    // either width) and 112 NHWC channels (7 vectors of 16) keep 16 lanes; AVX2, whose vectors
    // have 8 lanes only, is unchanged.
    for (const char *text : {"conv c1=64 c2=64 h=32 w=32 k=3", "dwconv c1=128 c2=256 h=56 w=56 k=3 s=2",
                             "conv c1=112 c2=112 h=14 w=14 k=3 layout=nhwc"}) {
        const LayerSpec spec = parse_layer_spec(text);
        EXPECT_EQ(heuristic_schedule(spec, IsaFamily::AVX512, true).to_string(),
                  heuristic_schedule(spec, IsaFamily::AVX512).to_string()) << text;
    }
    const LayerSpec rows56 = parse_layer_spec("conv c1=64 c2=64 h=56 w=56 k=3");
    EXPECT_EQ(heuristic_schedule(rows56, IsaFamily::AVX2, true).to_string(), heuristic_schedule(rows56, IsaFamily::AVX2).to_string());
    // The JIT's lookup (code that runs on this host) says why it took 8 lanes; an AOT build's keeps 16.
    const std::string target = "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41";
    const ScheduleLookup jit = lookup_schedule(nullptr, "", rows56, target, IsaFamily::AVX512, 1, true);
    EXPECT_EQ(jit.params.vector_width, host_cpu().splits_wide_fma ? 8 : 16) << jit.params.to_string();
    EXPECT_EQ(jit.detail.find("512-bit FMAs") != std::string::npos, host_cpu().splits_wide_fma) << jit.detail;
    const ScheduleLookup aot = lookup_schedule(nullptr, "", rows56, target, IsaFamily::AVX512, 1, false);
    EXPECT_EQ(aot.params.vector_width, 16);
    EXPECT_EQ(aot.detail, "");
}

// Channel tasks (one channel tile over the whole image) only where a task is thousands of MACs:
// a depthwise 7x7 or 14x14 image is not (441 or 1764 MACs), 28x28 (7056) and a 4-channel group's
// tile of 14x14 (8 channels x 4 inputs x 9 x 196) are. 3x3 depthwise rows of 14 take 8 lanes on a
// CPU that splits wide FMAs (two vectors instead of one rounded up), 5x5 ones and dense rows keep 16.
TEST(Tuner, HeuristicGivesChannelTasksOnlyWhereATaskIsThousandsOfMacs) {
    for (const char *text : {"conv c1=960 c2=960 h=7 w=7 k=3 g=960", "conv c1=384 c2=384 h=14 w=14 k=3 g=384",
                             "conv c1=672 c2=672 h=7 w=7 k=5 g=672"}) {
        const ScheduleParams p = heuristic_schedule(parse_layer_spec(text), IsaFamily::AVX512);
        EXPECT_EQ(p.parallel_channels, 0) << text << ": " << p.to_string();
        EXPECT_GE(ceil_div(parse_layer_spec(text).out_h(), p.parallel_rows), 2) << text << ": rows in one task leave a core idle";
    }
    for (const char *text : {"conv c1=192 c2=192 h=28 w=28 k=3 g=192", "conv c1=128 c2=128 h=14 w=14 k=3 g=32"}) {
        const ScheduleParams p = heuristic_schedule(parse_layer_spec(text), IsaFamily::AVX512);
        EXPECT_EQ(p.parallel_channels, 1) << text << ": " << p.to_string();
    }
    const LayerSpec dw14 = parse_layer_spec("conv c1=384 c2=384 h=14 w=14 k=3 g=384");
    EXPECT_EQ(heuristic_schedule(dw14, IsaFamily::AVX512).vector_width, 16);
    EXPECT_EQ(heuristic_schedule(dw14, IsaFamily::AVX512, true).vector_width, 8);
    for (const char *text : {"conv c1=480 c2=480 h=14 w=14 k=5 g=480", "conv c1=256 c2=256 h=14 w=14 k=3"}) {
        EXPECT_EQ(heuristic_schedule(parse_layer_spec(text), IsaFamily::AVX512, true).vector_width, 16) << text;
    }
}

// A strided NCHW conv takes channel vectors on an even score (its rows along x pay for strided
// loads and a padded copy the model does not count); the same output from a stride-1 conv asks
// channels for a clear win and stays along x.
TEST(Tuner, HeuristicTakesChannelVectorsForStridedConvsOnAnEvenScore) {
    const ScheduleParams strided = heuristic_schedule(parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 s=2"), IsaFamily::AVX512);
    const ScheduleParams plain = heuristic_schedule(parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 s=1"), IsaFamily::AVX512);
    EXPECT_EQ(strided.vectorize_channels, 1) << strided.to_string();
    EXPECT_EQ(plain.vectorize_channels, 0) << plain.to_string();
}

// So do convs with a kernel whose rows are under three vectors, in tiles of at least 4 pixels (2
// pixels x 8 vectors streamed the weights); 1x1 convs and 56-wide rows stay along x.
TEST(Tuner, HeuristicTakesChannelVectorsForShortRowsOfConvsWithKernels) {
    for (const char *text : {"conv c1=256 c2=256 h=14 w=14 k=3", "conv c1=96 c2=256 h=27 w=27 k=5 p=2 g=2",
                             "conv c1=128 c2=128 h=40 w=40 k=3 g=4", "conv n=4 c1=64 c2=64 h=28 w=28 k=3"}) {
        const ScheduleParams p = heuristic_schedule(parse_layer_spec(text), IsaFamily::AVX512);
        EXPECT_EQ(p.vectorize_channels, 1) << text << ": " << p.to_string();
        EXPECT_GE(p.tile_rows, 4) << text << ": " << p.to_string();
    }
    for (const char *text : {"conv c1=64 c2=64 h=56 w=56 k=3", "conv c1=384 c2=384 h=28 w=28 k=1 g=8", "conv c1=64 c2=64 h=56 w=56 k=1"}) {
        const ScheduleParams p = heuristic_schedule(parse_layer_spec(text), IsaFamily::AVX512);
        EXPECT_EQ(p.vectorize_channels, 0) << text << ": " << p.to_string();
    }
}

TEST(Tuner, HeuristicStreamsTheZeroPaddedRowsOfGroupedStridedConvsBiggerThanL1) {
    // Channel tasks of 8 input channels of 58x58 (107 KB), row tasks of 240 depthwise channels
    // (9 rows of 30: 259 KB): per channel tile and row tile.
    for (const char *big : {"conv c1=256 c2=256 h=56 w=56 k=3 s=2 g=32 act=relu", "conv c1=240 c2=240 h=28 w=28 k=3 s=2 g=240"}) {
        const ScheduleParams p = heuristic_schedule(parse_layer_spec(big), IsaFamily::AVX512);
        EXPECT_EQ(p.vectorize_channels, 0) << big << ": " << p.to_string();
        EXPECT_EQ(p.stream_input, 1) << big << ": " << p.to_string();
    }
    // A depthwise channel of 47x49 a task (9 KB) stays per task; a dense strided conv along x
    // would copy all its rows again per channel tile.
    const ScheduleParams small = heuristic_schedule(parse_layer_spec("conv c1=120 c2=120 h=45 w=47 k=3 s=2 g=120"), IsaFamily::AVX512);
    EXPECT_EQ(small.parallel_channels, 1) << small.to_string();
    EXPECT_EQ(small.stream_input, 0) << small.to_string();
    const ScheduleParams dense = heuristic_schedule(parse_layer_spec("conv c1=3 c2=64 h=224 w=224 k=7 s=2 p=3"), IsaFamily::AVX512);
    EXPECT_EQ(dense.vectorize_channels, 0) << dense.to_string();
    EXPECT_EQ(dense.stream_input, 0) << dense.to_string();
}

TEST(Tuner, HeuristicGivesGroupedConvsAlongChannelsOneTaskPerGroup) {
    const LayerSpec grouped = parse_layer_spec("conv c1=64 c2=64 h=28 w=28 k=3 g=2 layout=nhwc");
    const ScheduleParams g = heuristic_schedule(grouped, IsaFamily::AVX512);
    EXPECT_EQ(g.channel_blocks, 2) << g.to_string();
    EXPECT_EQ(g.parallel_rows, 3) << g.to_string();  // 28 rows x 2 groups / 16 tasks
    const LayerSpec four = parse_layer_spec("conv n=2 c1=64 c2=128 h=20 w=20 k=3 g=4 layout=nhwc");
    const ScheduleParams f = heuristic_schedule(four, IsaFamily::AVX512);
    EXPECT_EQ(f.channel_blocks, 4) << f.to_string();
    EXPECT_EQ(f.parallel_rows, 10) << f.to_string();  // 40 rows x 4 groups / 16 tasks
    // Groups of 4 channels do not hold whole vectors: no blocks.
    const LayerSpec small = parse_layer_spec("conv c1=64 c2=64 h=28 w=28 k=3 g=16 layout=nhwc");
    EXPECT_EQ(heuristic_schedule(small, IsaFamily::AVX512).channel_blocks, 1);
    const LayerSpec dense = parse_layer_spec("conv c1=64 c2=64 h=28 w=28 k=3 layout=nhwc");
    EXPECT_EQ(heuristic_schedule(dense, IsaFamily::AVX512).channel_blocks, 1);
    // Tasks per row block count at most one block per channel tile (64 channels in tiles of 32).
    ScheduleParams b = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=4 channels=1 channel_blocks=8");
    EXPECT_EQ(channel_blocks_of(dense, b), 2);
    b.channel_blocks = 1;
    EXPECT_EQ(channel_blocks_of(dense, b), 1);
}

// Tuning on the host, templates only (the autoschedulers take seconds per layer), measured at 1
// thread as `convgen tune` does for the records' key: tune_suite leaves the thread pool to its
// caller. (Left at the machine's core count, the kernels' buffers are read by Halide's workers,
// whose hand-off back to the caller ThreadSanitizer cannot see: a race report on every buffer
// the tuner frees, seen on 2026-12-03 in the TSan stage.)
TuneOptions host_options(const std::string &db_path, double budget_seconds) {
    set_num_threads(1);
    TuneOptions opt;
    opt.db_path = db_path;
    opt.target = canonical_target("host");
    opt.isa = isa_family_of(Halide::get_host_target());
    opt.budget_seconds = budget_seconds;
    opt.autoschedulers = false;
    opt.prepare_forked_child = run_parallel_loops_serially;
    return opt;
}

CompileFn jit_compile_fn(bool sabotage = false) {
    return [sabotage](const LayerSpec &spec, const ScheduleParams &p) {
        CompileOptions o;
        o.has_schedule = true;
        o.schedule = p;
        o.disk_cache = false;
        if (sabotage && !(p == host_heuristic_schedule(spec, isa_family_of(Halide::get_host_target())))) {
            // A "candidate" that computes something else: same shapes, another activation.
            LayerSpec wrong = spec;
            wrong.act = Activation::Identity;
            return jit_compile(wrong, o).kernel;
        }
        return jit_compile(spec, o).kernel;
    };
}

TEST(Tuner, TunesStoresAndResumes) {
    const std::string db_path = temp_path("tune.json");
    std::remove(db_path.c_str());
    TuneOptions opt = host_options(db_path, 12)  /* 6 s a layer: several candidates even on a loaded machine */;
    std::vector<LayerSpec> specs = {parse_layer_spec("conv name=a c1=16 c2=16 h=12 w=12 k=3"),
                                    parse_layer_spec("dwconv name=b c1=8 c2=16 h=10 w=10 k=3")};
    std::ostringstream log;
    const auto results = tune_suite(specs, opt, jit_compile_fn(), log, nullptr);
    ASSERT_EQ(results.size(), 2u);
    const ScheduleDb db = ScheduleDb::load(db_path);
    ASSERT_EQ(db.records().size(), 2u) << log.str();
    for (const auto &r : results) {
        EXPECT_FALSE(r.skipped);
        EXPECT_GT(r.candidates, 1) << log.str();
        EXPECT_GT(r.tuned_ms, 0);
        EXPECT_GT(r.heuristic_ms, 0);
        EXPECT_LE(r.tuned_ms, r.heuristic_ms * 1.0000001) << "the winner is the fastest re-measured leader";
        const ScheduleRecord *rec = db.find_exact(r.spec.to_string(), opt.target, 1, host_cpu_model());
        ASSERT_NE(rec, nullptr);
        EXPECT_TRUE(rec->complete);
        EXPECT_EQ(rec->schedule, r.tuned_schedule);
    }
    // A second run finds both layers tuned and skips them.
    const auto again = tune_suite(specs, opt, jit_compile_fn(), log, nullptr);
    EXPECT_TRUE(again[0].skipped && again[1].skipped);
    std::remove(db_path.c_str());
}

TEST(Tuner, SeedsFromThisTargetOnAnotherCpuModel) {
    // A checked-in database tuned on another CPU with the same ISA: its winner is measured here
    // as a seed, and the result is stored as a new record for this CPU beside the old one.
    const std::string db_path = temp_path("other_cpu.json");
    std::remove(db_path.c_str());
    TuneOptions opt = host_options(db_path, 3);
    const LayerSpec spec = parse_layer_spec("conv name=o c1=16 c2=16 h=12 w=12 k=3");
    const ScheduleParams heuristic = host_heuristic_schedule(spec, opt.isa);
    ScheduleParams other = heuristic;
    other.parallel_rows = heuristic.parallel_rows == 1 ? 2 : 1;
    ASSERT_NE(other.to_string(), heuristic.to_string());
    ScheduleRecord r;
    r.spec = spec.to_string();
    r.target = opt.target;
    r.threads = 1;
    r.schedule = other.to_string();
    r.median_ms = 1;
    r.cpu = "Some Other CPU";
    r.complete = true;
    ScheduleDb::update(db_path, [&](ScheduleDb &d) { d.upsert(r); });

    std::set<std::string> compiled;
    CompileFn fn = [&](const LayerSpec &s, const ScheduleParams &p) {
        compiled.insert(p.to_string());
        return jit_compile_fn()(s, p);
    };
    std::ostringstream log;
    const auto results = tune_suite({spec}, opt, fn, log, nullptr);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_FALSE(results[0].skipped) << "a record from another CPU is not this host's result";
    EXPECT_EQ(compiled.count(other.to_string()), 1u) << log.str();
    const ScheduleDb stored = ScheduleDb::load(db_path);
    EXPECT_EQ(stored.records().size(), 2u);
    ASSERT_NE(stored.find_exact(spec.to_string(), opt.target, 1, "Some Other CPU"), nullptr);
    ASSERT_NE(stored.find_exact(spec.to_string(), opt.target, 1, host_cpu_model()), nullptr);
    std::remove(db_path.c_str());
}

TEST(Tuner, WrongCandidatesAreRejectedNeverStored) {
    const std::string db_path = temp_path("wrong.json");
    std::remove(db_path.c_str());
    TuneOptions opt = host_options(db_path, 8);  // room for at least one candidate on a loaded machine
    const LayerSpec spec = parse_layer_spec("conv name=w c1=16 c2=16 h=12 w=12 k=3 act=relu");
    std::ostringstream log;
    const auto results = tune_suite({spec}, opt, jit_compile_fn(true), log, nullptr);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_GT(results[0].rejected, 0) << log.str();
    EXPECT_NE(log.str().find("wrong results"), std::string::npos) << log.str();
    const ScheduleDb stored = ScheduleDb::load(db_path);
    const ScheduleRecord *rec = stored.find_exact(spec.to_string(), opt.target, 1, host_cpu_model());
    ASSERT_NE(rec, nullptr);
    // Only the heuristic computes the right thing in this sabotaged space.
    EXPECT_EQ(rec->schedule, host_heuristic_schedule(spec, opt.isa).to_string());
    std::remove(db_path.c_str());
}

// Stand-ins for generated code gone wrong: a kernel that faults and one that never returns.
int faulting_entry(void **) {
    std::raise(SIGSEGV);
    return 0;
}
int hanging_entry(void **) {
    for (;;) ::pause();
}

// Every candidate but the heuristic is `entry`; the run survives them, rejects each with the
// reason, and stores the heuristic.
void expect_bad_candidates_rejected(KernelEntry entry, double timeout_seconds, const std::string &reason) {
    const std::string db_path = temp_path("bad_kernels.json");
    std::remove(db_path.c_str());
    // Room for candidates after the heuristic's own compile and timing, which took the whole of a
    // 4 s budget in the ASan stage on a loaded 2-core machine (1 candidate, nothing rejected).
    TuneOptions opt = host_options(db_path, 10);
    opt.candidate_timeout_seconds = timeout_seconds;
    const LayerSpec spec = parse_layer_spec("conv name=f c1=16 c2=16 h=12 w=12 k=3");
    const ScheduleParams heuristic = host_heuristic_schedule(spec, opt.isa);
    CompileFn fn = [&](const LayerSpec &s, const ScheduleParams &p) -> std::shared_ptr<const Kernel> {
        std::shared_ptr<const Kernel> real = jit_compile_fn()(s, p);
        if (p == heuristic) return real;
        return std::make_shared<const Kernel>(entry, real->info(), nullptr);
    };
    std::ostringstream log;
    const auto results = tune_suite({spec}, opt, fn, log, nullptr);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_GT(results[0].candidates, 1) << log.str();
    EXPECT_EQ(results[0].rejected, results[0].candidates - 1) << log.str();
    EXPECT_NE(log.str().find(reason), std::string::npos) << log.str();
    const ScheduleDb stored = ScheduleDb::load(db_path);
    const ScheduleRecord *rec = stored.find_exact(spec.to_string(), opt.target, 1, host_cpu_model());
    ASSERT_NE(rec, nullptr);
    EXPECT_EQ(rec->schedule, heuristic.to_string());
    EXPECT_TRUE(rec->complete);
    std::remove(db_path.c_str());
}

TEST(Tuner, CrashingCandidatesAreRejectedAndTheRunGoesOn) {
    expect_bad_candidates_rejected(faulting_entry, 60, "crashed: ");
}

TEST(Tuner, CandidatesThatNeverReturnAreKilledAndRejected) {
    expect_bad_candidates_rejected(hanging_entry, 0.3, "did not finish a run in 0.3 s (killed)");
}

TEST(Tuner, StopFlagLeavesAValidResumableDatabase) {
    const std::string db_path = temp_path("stop.json");
    std::remove(db_path.c_str());
    TuneOptions opt = host_options(db_path, 60);
    const LayerSpec spec = parse_layer_spec("conv name=s c1=16 c2=16 h=12 w=12 k=3");
    volatile bool stop = false;
    std::atomic<int> compiles{0};
    CompileFn fn = [&](const LayerSpec &s, const ScheduleParams &p) {
        if (++compiles == 3) stop = true;  // as a SIGINT handler would, mid-search
        return jit_compile_fn()(s, p);
    };
    std::ostringstream log;
    tune_suite({spec}, opt, fn, log, &stop);
    const ScheduleDb stored = ScheduleDb::load(db_path);
    const ScheduleRecord *rec = stored.find_exact(spec.to_string(), opt.target, 1, host_cpu_model());
    ASSERT_NE(rec, nullptr);
    EXPECT_FALSE(rec->complete);  // a re-run resumes this layer
    opt.budget_seconds = 3;
    const auto resumed = tune_suite({spec}, opt, jit_compile_fn(), log, nullptr);
    EXPECT_FALSE(resumed[0].skipped);
    EXPECT_TRUE(ScheduleDb::load(db_path).find_exact(spec.to_string(), opt.target, 1, host_cpu_model())->complete);
    std::remove(db_path.c_str());
}

}  // namespace
}  // namespace convgen
