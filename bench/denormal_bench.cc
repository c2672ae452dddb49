// convgen_denormal_bench: do denormal inputs slow convgen's kernels down?
//
// convgen does not set flush-to-zero (PyTorch keeps denormals by default, and tests/test_numerics.cc
// checks that convgen's results match it on denormal data). This measures what that costs: each
// layer runs on its usual random input and on the same input scaled into the denormal range
// (x 1e-40, so every input value is subnormal and so are most products and partial sums),
// alternating the two in rounds, 1 thread, and reports the ratio of the medians.
//
//   build/bin/convgen_denormal_bench [--suite FILE] [--rounds N]   (default: the public suite, 15)
// Exit status: 0, 2 on bad arguments.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "runtime/reference.h"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Median seconds of `reps` back-to-back runs.
double time_runs(const convgen::Kernel &k, const convgen::Tensor &in, const convgen::PackedWeights &w, convgen::Tensor &out, int reps) {
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        k.run(in, w, out);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return median(t);
}

}  // namespace

int main(int argc, char **argv) {
    std::string suite = std::string(CONVGEN_SOURCE_DIR) + "/../shared/bench/layers.txt";
    int rounds = 15;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--suite" && i + 1 < argc) suite = argv[++i];
        else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: convgen_denormal_bench [--suite FILE] [--rounds N]\n");
            return 2;
        }
    }
    if (rounds < 1) {
        std::fprintf(stderr, "convgen_denormal_bench: --rounds must be >= 1\n");
        return 2;
    }
    try {
        const std::vector<convgen::LayerSpec> specs = convgen::parse_suite_file(suite);
        convgen::set_num_threads(1);
        std::printf("%-16s %12s %12s %8s\n", "layer", "normal_ms", "denormal_ms", "ratio");
        double log_sum = 0;
        for (const auto &spec : specs) {
            const auto k = convgen::jit_compile(spec).kernel;
            const convgen::PackedWeights w = k->pack(convgen::fold_batchnorm(spec, convgen::random_raw_weights(spec, 1)));
            const convgen::Tensor normal = convgen::random_input(spec, 2);
            convgen::Tensor denormal = normal;
            for (float &v : denormal.data) v *= 1e-40f;
            convgen::Tensor out(spec.output_shape());
            const int reps = 5;
            time_runs(*k, normal, w, out, 2);  // warm-up
            std::vector<double> tn, td;
            for (int r = 0; r < rounds; ++r) {
                tn.push_back(time_runs(*k, normal, w, out, reps));
                td.push_back(time_runs(*k, denormal, w, out, reps));
            }
            const double n = median(tn), d = median(td);
            log_sum += std::log(d / n);
            std::printf("%-16s %12.3f %12.3f %7.2fx\n", spec.name.c_str(), n * 1e3, d * 1e3, d / n);
        }
        std::printf("geomean denormal/normal time: %.3fx over %zu layers (1.00x = no slowdown)\n",
                    std::exp(log_sum / specs.size()), specs.size());
    } catch (const convgen::Error &e) {
        std::fprintf(stderr, "convgen_denormal_bench: error: %s\n", e.what());
        return 2;
    }
    return 0;
}
