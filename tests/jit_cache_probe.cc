// A second process for tests/test_jit_disk_cache.cc: JIT-compiles each spec given on the command
// line (the disk cache comes from the environment: CONVGEN_CACHE_DIR etc.), runs it on seeded
// random data, checks it against the reference and prints one line per spec:
//   spec=<i> from_disk_cache=0|1 from_cache=0|1 seconds=<s> ok=0|1 out_xxh64=<hash of the output> note=<disk cache note>
// Exit status: 0 all match, 1 a mismatch, 2 an error (message on stderr).
#include <cstdio>
#include <string>

#include "codegen/jit.h"
#include "codegen/jit_disk_cache.h"
#include "runtime/errors.h"
#include "runtime/reference.h"

int main(int argc, char **argv) {
    using namespace convgen;
    int failures = 0;
    try {
        for (int i = 1; i < argc; ++i) {
            const LayerSpec spec = parse_layer_spec(argv[i]);
            const RawWeights raw = random_raw_weights(spec, 5);
            const Tensor input = random_input(spec, 6);
            const CompiledKernel k = jit_compile(spec);
            const Tensor out = k.kernel->run(input, fold_batchnorm(spec, raw));
            const bool ok = within_tolerance(reference_forward(spec, raw, input), out);
            failures += ok ? 0 : 1;
            std::printf("spec=%d from_disk_cache=%d from_cache=%d seconds=%.6f ok=%d out_xxh64=%s note=%s\n", i - 1,
                        k.from_disk_cache ? 1 : 0, k.from_cache ? 1 : 0, k.compile_seconds, ok ? 1 : 0,
                        disk_cache::xxh64_hex(out.data.data(), out.data.size() * sizeof(float)).c_str(),
                        k.disk_cache_note.c_str());
            std::fflush(stdout);
        }
    } catch (const Error &e) {
        std::fprintf(stderr, "jit_cache_probe: error: %s\n", e.what());
        return 2;
    }
    return failures == 0 ? 0 : 1;
}
