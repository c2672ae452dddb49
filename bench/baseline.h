// What convgen_bench needs from a peer library (oneDNN, XNNPACK): build a layer once (weights
// reordered, input converted to the peer's preferred layout: all untimed), then run one forward
// pass at a time (timed), then hand back the last output in the spec's own layout for the check
// against convgen's output (untimed).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "dsl/layer_spec.h"
#include "runtime/tensor.h"
#include "runtime/weights.h"

namespace convgen_bench {

// A layer the peer cannot run as specified (e.g. an activation XNNPACK has no operator for).
// The benchmark reports it as n/a, with this message.
struct Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Baseline {
public:
    virtual ~Baseline() = default;
    // One forward pass from the prepared input to the peer's output buffer; returns when done.
    virtual void run() = 0;
    // The output of the last run() in the spec's layout (NCHW or NHWC, like convgen's), untimed.
    virtual convgen::Tensor output() = 0;
    // Which kernels ran and what is fused, e.g. "jit:avx2 + eltwise post-op".
    virtual std::string describe() const = 0;
    // False when the layer's activation(s) run as separate operators after the convolution.
    virtual bool activation_fused() const = 0;
};

// Layout helpers for peers: [n,c,h,w] <-> [n,h,w,c], C order.
void nchw_to_nhwc(const float *src, float *dst, int n, int c, int h, int w);
void nhwc_to_nchw(const float *src, float *dst, int n, int c, int h, int w);

}  // namespace convgen_bench
