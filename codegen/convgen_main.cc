// The convgen command-line tool: run a layer on files, explain its schedule, compare outputs,
// and check a suite against the reference.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "codegen/jit.h"
#include "codegen/tune_command.h"
#include "dsl/layer_spec.h"
#include "runtime/errors.h"
#include "runtime/npy.h"
#include "runtime/reference.h"
#include "runtime/safetensors.h"
#include "runtime/weights.h"

using namespace convgen;

namespace {

// The seed model's two layers: the built-in default of `convgen check`.
const char *kBuiltinSuite =
    "conv   name=seed_conv   c1=64 c2=64  h=56 w=56 k=3 s=1 act=relu\n"
    "dwconv name=seed_dwconv c1=96 c2=192 h=40 w=40 k=3 s=1 act=relu bn=0 dw_bn=0 dw_act=identity\n";

bool verbose() {
    const char *v = std::getenv("CONVGEN_VERBOSE");
    return v && std::string(v) != "0" && std::string(v) != "";
}

std::string one_line(std::string s) {
    for (char &c : s)
        if (c == '\n' || c == '\r') c = ' ';
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Set by --schedule: explicit schedule parameters instead of the heuristic.
std::string g_schedule_text;
// Set by --no-disk-cache.
bool g_no_disk_cache = false;
// Set by --db: the schedule database (default: $CONVGEN_SCHEDULE_DB, else schedules/db/default.json).
std::string g_schedule_db;

CompileOptions compile_options(const std::string &target) {
    CompileOptions o;
    o.target = target;
    o.disk_cache = !g_no_disk_cache;
    o.schedule_db = g_schedule_db;
    if (!g_schedule_text.empty()) {
        o.has_schedule = true;
        o.schedule = ScheduleParams::parse(g_schedule_text);
    }
    return o;
}

// Where a kernel came from, for `check`'s table: compiled now (in memory, or compiled and stored
// in the disk cache), loaded from the disk cache, or this process's in-memory cache.
const char *kernel_source(const CompiledKernel &k) {
    if (k.from_cache) return "memory";
    if (k.from_disk_cache) return "disk";
    return k.disk_cache_note.rfind("off", 0) == 0 || k.disk_cache_note.rfind("unavailable", 0) == 0 ? "compiled" : "compiled+stored";
}

// One line about the disk cache, after `check`'s table.
std::string disk_cache_line() {
    if (g_no_disk_cache) return "JIT disk cache: off (--no-disk-cache)";
    const DiskCacheInfo info = jit_disk_cache_info();
    return info.enabled ? "JIT disk cache: " + info.dir : "JIT disk cache: off (" + info.reason + ")";
}

int cmd_run(const std::string &layer, const std::string &weights_path, const std::string &prefix, const std::string &input_path,
            const std::string &output_path, int threads, const std::string &target) {
    const LayerSpec spec = parse_layer_spec(layer);
    const SafeTensorsFile file = SafeTensorsFile::read(weights_path);
    const FoldedWeights weights = fold_batchnorm(spec, load_raw_weights(spec, file, prefix));
    const Tensor input = read_npy(input_path);
    if (input.shape != spec.input_shape()) {
        throw Error(input_path + ": shape " + shape_to_string(input.shape) + " does not match the layer's input " +
                    shape_to_string(spec.input_shape()) + " (layout=" + layout_name(spec.layout) + ")");
    }
    // Fail before compiling, not after computing, when the output cannot be written.
    const size_t slash = output_path.find_last_of('/');
    const std::string output_dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : output_path.substr(0, slash));
    if (::access(output_dir.c_str(), W_OK) != 0) {
        throw Error("cannot write output '" + output_path + "': directory '" + output_dir + "' " +
                    (errno == ENOENT ? "does not exist" : "is not writable"));
    }
    if (threads > 0) set_num_threads(threads);
    const CompiledKernel compiled = jit_compile(spec, compile_options(target));
    if (verbose()) {
        const KernelInfo &info = compiled.kernel->info();
        std::fprintf(stderr, "convgen: %s kernel for '%s' target=%s schedule='%s' %s=%.4fs disk_cache=%s\n", info.origin.c_str(),
                     spec.to_string().c_str(), info.target.c_str(), info.schedule.c_str(),
                     compiled.from_disk_cache ? "load" : "compile", compiled.compile_seconds,
                     compiled.disk_cache_note.empty() ? "-" : compiled.disk_cache_note.c_str());
    }
    const Tensor output = compiled.kernel->run(input, weights);
    write_npy(output_path, output);
    return 0;
}

int cmd_compare(const std::string &expected_path, const std::string &actual_path) {
    const Tensor expected = read_npy(expected_path);
    const Tensor actual = read_npy(actual_path);
    if (expected.shape != actual.shape) {
        throw Error("shapes differ: " + expected_path + " is " + shape_to_string(expected.shape) + ", " + actual_path + " is " +
                    shape_to_string(actual.shape));
    }
    double err = 0, limit = 0;
    const bool ok = within_tolerance(expected, actual, &err, &limit);
    std::printf("%s max_abs_err=%.3g limit=%.3g\n", ok ? "match" : "MISMATCH", err, limit);
    return ok ? 0 : 1;
}

int cmd_check(const std::string &suite_path, const std::vector<std::string> &layers, int threads, const std::string &target,
              int repeats) {
    std::vector<LayerSpec> specs;
    for (const auto &l : layers) specs.push_back(parse_layer_spec(l));
    if (!suite_path.empty()) {
        auto more = parse_suite_file(suite_path);
        specs.insert(specs.end(), more.begin(), more.end());
    }
    if (specs.empty()) specs = parse_suite_text(kBuiltinSuite, "<built-in seed suite>");
    if (threads > 0) set_num_threads(threads);

    std::printf("convgen check: %zu layers, target %s, %s threads\n", specs.size(), canonical_target(target).c_str(),
                threads > 0 ? std::to_string(threads).c_str() : "default");
    std::printf("%-16s %9s %-15s %11s %9s %10s  %s\n", "layer", "compile_s", "kernel", "median_ms", "GFLOP/s", "max_err", "result");
    int failures = 0;
    unsigned seed = 1;
    for (const LayerSpec &spec : specs) {
        const RawWeights raw = random_raw_weights(spec, seed);
        const FoldedWeights folded = fold_batchnorm(spec, raw);
        const Tensor input = random_input(spec, seed + 1000);
        seed++;
        const CompiledKernel compiled = jit_compile(spec, compile_options(target));
        const PackedWeights packed = compiled.kernel->pack(folded);  // once, at load time
        Tensor out(spec.output_shape());
        compiled.kernel->run(input, packed, out);  // warm-up
        std::vector<double> times;
        for (int i = 0; i < repeats; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            compiled.kernel->run(input, packed, out);
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        const Tensor expected = reference_forward(spec, raw, input);
        double err = 0;
        const bool ok = within_tolerance(expected, out, &err);
        failures += ok ? 0 : 1;
        const double t = median(times);
        std::printf("%-16s %9.4f %-15s %11.3f %9.1f %10.2e  %s\n", spec.name.empty() ? kind_name(spec.kind) : spec.name.c_str(),
                    compiled.compile_seconds, kernel_source(compiled), t * 1e3, spec.flops() / t * 1e-9, err, ok ? "ok" : "MISMATCH");
        std::fflush(stdout);
    }
    std::printf("%zu layers checked against the reference: %d mismatches\n", specs.size(), failures);
    std::printf("%s\n", disk_cache_line().c_str());
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"convgen: fused convolution layers compiled with Halide, checked against PyTorch semantics.\n"
                 "Specs use the text format of bench/layers.txt, e.g. \"conv c1=64 c2=64 h=56 w=56 k=3 g=1 act=relu\"."};
    app.require_subcommand(1);
    app.footer("Environment:\n"
               "  CONVGEN_CACHE_DIR=DIR   JIT disk cache directory (default $XDG_CACHE_HOME/convgen, else ~/.cache/convgen)\n"
               "  CONVGEN_DISK_CACHE=0    no JIT disk cache (compile every kernel in memory, as --no-disk-cache)\n"
               "  CONVGEN_CXX=CMD         compiler driver that links disk-cached kernels (default c++)\n"
               "  CONVGEN_VERBOSE=1       say which kernel ran and why disk cache entries were rebuilt\n"
               "  CONVGEN_MEMORY_BUDGET=S most bytes one layer's tensors may take, e.g. 8G (default: half the RAM; 'unlimited')\n"
               "  CONVGEN_SCHEDULE_DB=F   schedule database used without --db (empty: none; default schedules/db/default.json)");

    std::string layer, weights, prefix, input, output, target, suite, expected, actual;
    std::vector<std::string> layers;
    int threads = 0, repeats = 10;

    CLI::App *run = app.add_subcommand("run", "Run one layer on .npy input with .safetensors weights and write .npy output");
    run->add_option("--layer", layer, "Layer spec text")->required();
    run->add_option("--weights", weights, "PyTorch state_dict as .safetensors (F32, F16 or BF16)")->required();
    run->add_option("--prefix", prefix, "Prefix of the layer's tensor names in the state_dict, e.g. 'model.3.'");
    run->add_option("--input", input, "Input tensor, float32 .npy in the spec's layout")->required();
    run->add_option("--output", output, "Where to write the output .npy")->required();
    run->add_option("--threads", threads, "Threads of the Halide pool (default: one per core)")->check(CLI::Range(0, 1024));
    run->add_option("--target", target, "Halide target string (default: host)");
    run->add_option("--db", g_schedule_db, "Schedule database (JSON) to take tuned schedules from");
    run->add_option("--schedule", g_schedule_text, "Schedule parameters, e.g. \"vec=8 tile_vectors=4 tile_rows=3 parallel_rows=2\" (default: heuristic)");
    run->add_flag("--no-disk-cache", g_no_disk_cache, "Compile in memory; neither read nor write the JIT disk cache");

    CLI::App *exp = app.add_subcommand("explain", "Print the normalised spec, target, schedule and Halide loop nest");
    exp->add_option("--layer", layer, "Layer spec text")->required();
    exp->add_option("--target", target, "Halide target string (default: host)");
    exp->add_option("--db", g_schedule_db, "Schedule database (JSON) to take tuned schedules from");
    exp->add_option("--schedule", g_schedule_text, "Schedule parameters, e.g. \"vec=8 tile_vectors=4 tile_rows=3 parallel_rows=2\" (default: heuristic)");
    std::string asm_path;
    exp->add_option("--asm", asm_path, "Also write the kernel's assembly to this file");

    CLI::App *cmp = app.add_subcommand("compare", "Compare two .npy files with convgen's tolerance (1e-4 * max(1, max|expected|))");
    cmp->add_option("expected", expected, "Expected .npy")->required();
    cmp->add_option("actual", actual, "Actual .npy")->required();

    CLI::App *chk = app.add_subcommand("check", "JIT-compile layers, check them against the C++ reference, print time and GFLOP/s");
    chk->add_option("--suite", suite, "Suite file (one spec per line); default: the seed's two layers");
    chk->add_option("--layer", layers, "A layer spec (repeatable)");
    chk->add_option("--threads", threads, "Threads of the Halide pool (default: one per core)")->check(CLI::Range(0, 1024));
    chk->add_option("--target", target, "Halide target string (default: host)");
    chk->add_option("--db", g_schedule_db, "Schedule database (JSON) to take tuned schedules from");
    chk->add_option("--schedule", g_schedule_text, "Schedule parameters, e.g. \"vec=8 tile_vectors=4 tile_rows=3 parallel_rows=2\" (default: heuristic)");
    chk->add_option("--repeats", repeats, "Timed runs per layer (median reported)")->check(CLI::Range(1, 100000));
    chk->add_flag("--no-disk-cache", g_no_disk_cache, "Compile in memory; neither read nor write the JIT disk cache");

    TuneCommand tune_cmd;
    CLI::App *tune = app.add_subcommand("tune", "Autotune the schedules of a suite's layers and store the winners in a schedule database");
    tune->add_option("--suite", tune_cmd.suite, "Suite file (one spec per line)")->required();
    tune->add_option("--db", tune_cmd.db, "Schedule database to write (created if absent; a re-run resumes)")->required();
    tune->add_option("--budget", tune_cmd.budget, "Time for the whole run, e.g. 10m, 90s, 1h (default 10m)");
    tune->add_option("--per-layer", tune_cmd.per_layer, "Time per layer (default: budget / layers)");
    tune->add_option("--threads", tune_cmd.threads, "Threads the kernels are measured with (default 1)")->check(CLI::Range(1, 1024));
    tune->add_option("--target", tune_cmd.target, "Halide target string (default: host)");
    tune->add_option("--shard", tune_cmd.shard, "Tune only shard i of N (layers i, i+N, ...), e.g. 0/4 (default 0/1)");
    tune->add_flag("--no-autoschedulers", tune_cmd.no_autoschedulers, "Do not try Halide's Mullapudi2016, Li2018 and Adams2019");

    DbCommand db_cmd;
    CLI::App *dbc = app.add_subcommand("db", "Show, merge or prune schedule databases");
    dbc->require_subcommand(1);
    CLI::App *db_show = dbc->add_subcommand("show", "Print every record");
    db_show->add_option("db", db_cmd.db, "Schedule database")->required();
    CLI::App *db_merge = dbc->add_subcommand("merge", "Merge databases into OUT (per key: complete beats interrupted, then faster)");
    db_merge->add_option("out", db_cmd.db, "Database to merge into (created if absent)")->required();
    db_merge->add_option("inputs", db_cmd.inputs, "Databases to merge")->required();
    CLI::App *db_prune = dbc->add_subcommand("prune", "Drop records of other convgen/Halide versions or CPU models");
    db_prune->add_option("db", db_cmd.db, "Schedule database")->required();
    db_prune->add_flag("--keep-other-cpus", db_cmd.keep_other_cpus, "Keep records measured on other CPU models");

    // CLI11 reports an unknown command as "A subcommand is required"; name it instead.
    if (argc > 1 && argv[1][0] != '-') {
        const std::string command = argv[1];
        bool known = false;
        for (const CLI::App *sub : app.get_subcommands([](CLI::App *) { return true; })) known = known || sub->get_name() == command;
        if (!known) {
            std::cerr << "convgen: error: unknown command '" << command << "' (commands: run, explain, check, compare, tune, db; see convgen --help)\n";
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &) {
        std::cout << app.help();
        return 0;
    } catch (const CLI::CallForAllHelp &) {
        std::cout << app.help("", CLI::AppFormatMode::All);
        return 0;
    } catch (const CLI::ParseError &e) {
        std::cerr << "convgen: error: " << one_line(e.what()) << " (see convgen --help)\n";
        return 2;
    }

    try {
        if (run->parsed()) return cmd_run(layer, weights, prefix, input, output, threads, target);
        if (exp->parsed()) {
            CompileOptions o = compile_options(target);
            const LayerSpec spec = parse_layer_spec(layer);
            std::cout << explain(spec, o);
            if (!asm_path.empty()) {
                write_assembly(spec, o, asm_path);
                std::cout << "assembly: " << asm_path << "\n";
            }
            return 0;
        }
        if (cmp->parsed()) return cmd_compare(expected, actual);
        if (chk->parsed()) return cmd_check(suite, layers, threads, target, repeats);
        if (tune->parsed()) return cmd_tune(tune_cmd);
        if (dbc->parsed()) {
            db_cmd.action = db_show->parsed() ? "show" : db_merge->parsed() ? "merge" : "prune";
            return cmd_db(db_cmd);
        }
    } catch (const Error &e) {
        std::cerr << "convgen: error: " << one_line(e.what()) << "\n";
        return 2;
    } catch (const std::bad_alloc &) {
        std::cerr << "convgen: error: out of memory\n";
        return 2;
    } catch (const std::exception &e) {
        std::cerr << "convgen: error: " << one_line(e.what()) << "\n";
        return 2;
    }
    return 2;
}
