// aot_app: runs the seed model's layers through AOT kernels, on .npy data.
//
//   aot_app list                      the layers compiled in, and the variant each would use
//   aot_app explain                   why each variant was chosen (host CPU, CONVGEN_MAX_ISA)
//   aot_app demo DIR                  writes a random input .npy per layer to DIR, runs the layer on
//                                     it (random weights), writes DIR/<layer>_output.npy, checks it
//                                     against convgen's double-precision reference, prints timings
//   aot_app run LAYER WEIGHTS.safetensors IN.npy OUT.npy [PREFIX]
//                                     runs one layer (by name) on real data and PyTorch weights
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "runtime/errors.h"
#include "runtime/npy.h"
#include "runtime/reference.h"
#include "runtime/registry.h"
#include "runtime/safetensors.h"
#include "runtime/weights.h"

namespace {

using convgen::LayerSpec;

// The layers this app was built with: layers.txt, compiled in by convgen_add_kernels.
std::vector<LayerSpec> layers() { return convgen::aot_specs(); }

double median_ms(const convgen::Kernel &kernel, const convgen::Tensor &input, const convgen::PackedWeights &weights,
                 convgen::Tensor &output) {
    std::vector<double> ms;
    for (int i = 0; i < 11; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        kernel.run(input, weights, output);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

int demo(const std::string &dir) {
    int failures = 0;
    unsigned seed = 1;
    for (const LayerSpec &spec : layers()) {
        const std::string in_path = dir + "/" + spec.name + "_input.npy";
        const std::string out_path = dir + "/" + spec.name + "_output.npy";
        convgen::write_npy(in_path, convgen::random_input(spec, seed));
        const convgen::Tensor input = convgen::read_npy(in_path);
        const convgen::RawWeights raw = convgen::random_raw_weights(spec, seed + 100);
        ++seed;

        const auto kernel = convgen::load_kernel(spec);
        const convgen::PackedWeights packed = kernel->pack(convgen::fold_batchnorm(spec, raw));
        convgen::Tensor output;
        const double ms = median_ms(*kernel, input, packed, output);
        convgen::write_npy(out_path, output);

        double err = 0, limit = 0;
        const bool ok = convgen::within_tolerance(convgen::reference_forward(spec, raw, input), output, &err, &limit);
        failures += ok ? 0 : 1;
        std::printf("%-12s %-4s %s variant %s, median %.3f ms (%.1f GFLOP/s), max|err| %.2g (limit %.2g) -> %s\n",
                    spec.name.c_str(), ok ? "ok" : "FAIL", kernel->info().origin.c_str(), kernel->info().target.c_str(), ms,
                    spec.flops() / ms * 1e-6, err, limit, out_path.c_str());
    }
    return failures == 0 ? 0 : 1;
}

int run(const std::string &layer, const std::string &weights_path, const std::string &in_path, const std::string &out_path,
        const std::string &prefix) {
    for (const LayerSpec &spec : layers()) {
        if (spec.name != layer) continue;
        const convgen::SafeTensorsFile file = convgen::SafeTensorsFile::read(weights_path);
        const convgen::FoldedWeights folded = convgen::fold_batchnorm(spec, convgen::load_raw_weights(spec, file, prefix));
        const auto kernel = convgen::load_kernel(spec);
        convgen::write_npy(out_path, kernel->run(convgen::read_npy(in_path), folded));
        return 0;
    }
    throw convgen::Error("no layer named '" + layer + "' in this app (see `aot_app list`)");
}

int usage() {
    std::cerr << "usage: aot_app list | explain | demo DIR | run LAYER WEIGHTS.safetensors IN.npy OUT.npy [PREFIX]\n";
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.size() == 1 && args[0] == "list") {
            for (const LayerSpec &spec : layers()) {
                std::printf("%-12s %s -> %s\n", spec.name.c_str(), spec.to_string().c_str(),
                            convgen::load_kernel(spec)->info().target.c_str());
            }
            return 0;
        }
        if (args.size() == 1 && args[0] == "explain") {
            for (const LayerSpec &spec : layers()) std::cout << convgen::explain_kernel_choice(spec) << "\n";
            return 0;
        }
        if (args.size() == 2 && args[0] == "demo") return demo(args[1]);
        if ((args.size() == 5 || args.size() == 6) && args[0] == "run") {
            return run(args[1], args[2], args[3], args[4], args.size() == 6 ? args[5] : "");
        }
        return usage();
    } catch (const std::exception &e) {
        std::cerr << "aot_app: error: " << e.what() << "\n";
        return 2;
    }
}
