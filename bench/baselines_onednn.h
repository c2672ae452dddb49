// oneDNN 2.6 (Debian libdnnl-dev) as convgen's baseline: BN folded into weights + bias, the
// activation as an eltwise post-op, format_tag::any for src/weights/dst (the library picks its
// blocked layouts), reorders from/to the user's NCHW outside run(); dwconv as oneDNN runs it:
// two primitives, depthwise then pointwise, each with its own post-op.
#pragma once

#include <memory>

#include "bench/baseline.h"

namespace convgen_bench {

// Debian's libdnnl is built with DNNL_CPU_RUNTIME=OMP (it links libgomp): its thread count is
// OpenMP's, set with omp_set_num_threads on the calling thread. Returns omp_get_max_threads().
int onednn_set_num_threads(int threads);

// Throws Unsupported when oneDNN cannot express the layer, std::exception on library errors.
std::unique_ptr<Baseline> make_onednn_baseline(const convgen::LayerSpec &spec, const convgen::FoldedWeights &weights,
                                               const convgen::Tensor &input);

}  // namespace convgen_bench
