// XNNPACK (Debian libxnnpack-dev, snapshot 2022-02) as convgen's baseline: NHWC operators
// (xnn_create_convolution2d_nhwc_f32, grouped and depthwise through `groups`), BN folded into
// weights + bias, the input converted to NHWC outside run().
//
// XNNPACK fuses only min/max clamps, so identity, relu and relu6 are fused. The other
// activations run as separate XNNPACK operators after the convolution, inside run(), and the
// baseline says so (activation_fused() == false):
//   leaky -> leaky_relu_nc_f32, sigmoid -> sigmoid_nc_f32, hardswish -> hardswish_nc_f32,
//   silu -> sigmoid_nc_f32 then multiply_nd_f32 (x * sigmoid(x)).
// gelu, gelu_tanh and tanh have no XNNPACK operator in this snapshot: Unsupported (n/a).
#pragma once

#include <memory>

#include "bench/baseline.h"

namespace convgen_bench {

// `threads` sizes the baseline's own pthreadpool (pthreadpool_create(threads)).
std::unique_ptr<Baseline> make_xnnpack_baseline(const convgen::LayerSpec &spec, const convgen::FoldedWeights &weights,
                                                const convgen::Tensor &input, int threads);

}  // namespace convgen_bench
