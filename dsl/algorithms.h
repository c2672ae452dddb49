// The Halide algorithms: *what* each layer computes, with no scheduling (schedules/ says how).
// Funcs are indexed in logical order (c, x, y, n) through `at`/`def`, which map to the
// storage order of the spec's layout: NCHW stores x innermost, NHWC stores c innermost.
#pragma once

#include <Halide.h>

#include "dsl/layer_spec.h"
#include "dsl/weight_layout.h"

namespace convgen {

// Argument order of every compiled kernel (JIT and AOT alike):
//   conv:   input, weight, bias, output
//   dwconv: input, dw_weight, dw_bias, pw_weight, pw_bias, output
// Weights are BN-folded, in the kernel's WeightLayout (dsl/weight_layout.h): PyTorch's order, conv
// [c2][c1/g][k][k] (Halide dims kx, ky, ci, co), depthwise [c1][k][k] (kx, ky, c), pointwise [c2][c1]
// (ci, co); or output channels innermost (Halide dims co first); or in output channel blocks (see
// weight_extents / pw_weight_extents for the Halide dims). Biases are [c].
struct LayerAlgorithm {
    LayerSpec spec;
    WeightLayout weight_layout = WeightLayout::PyTorch;
    OutputTranspose output_transpose;
    // With output_transpose on: the activated tile and its deinterleaving rounds, in order; each
    // is indexed (i, xt, ct, y, n), i the position in a tile of pixels x lanes floats, xt and ct
    // the tile's pixel block of its row and channel vector. The last holds the tile channel-major.
    std::vector<Halide::Func> output_tiles;
    Halide::Var ti{"ti"}, xt{"xt"}, ct{"ct"};
    Halide::Var c{"c"}, x{"x"}, y{"y"}, n{"n"};

    Halide::ImageParam input, weight, bias;        // weight/bias: the conv, or the depthwise stage of dwconv
    Halide::ImageParam pw_weight, pw_bias;         // dwconv only
    Halide::Func padded{"padded"};                 // input with zero padding outside [0,h) x [0,w)
    // padded split by x phase: staged(xq, ph, ...) = padded(xq * s + ph, ...). The convolution
    // reads it at (x + floor((kx - p) / s), (kx - p) mod s), so strided convs read unit-stride
    // vectors when x is vectorised. Storage: NCHW (xq, ph, y, c, n); NHWC (c, xq, ph, y, n).
    Halide::Func staged{"staged"};
    Halide::Var xq{"xq"}, ph{"ph"};
    Halide::Func conv{"conv"};                     // conv: bias + sum (pure + one update)
    Halide::Func depthwise{"depthwise"};           // dwconv: activated depthwise output (pure + update via dw_acc)
    Halide::Func dw_acc{"dw_acc"};                 // dwconv: depthwise accumulator
    Halide::Func pointwise{"pointwise"};           // dwconv: pointwise accumulator
    Halide::Func output{"output"};                 // activation of the last accumulator
    Halide::RDom r;                                // conv: (kx, ky, ci); dwconv depthwise: (kx, ky)
    Halide::RDom r_pw;                             // dwconv pointwise: (ci)

    // The pure variables of a Func in storage order, innermost first.
    std::vector<Halide::Var> storage_vars() const;
    // Call or define a Func at logical coordinates (c, x, y, n).
    Halide::Expr at(const Halide::Func &f, Halide::Expr c_, Halide::Expr x_, Halide::Expr y_, Halide::Expr n_) const;
    Halide::FuncRef def(Halide::Func &f) const;

    std::vector<Halide::Argument> arguments() const;
    Halide::Pipeline pipeline() const { return Halide::Pipeline(output); }
};

// The kernel's input parameters. A Halide Generator passes its Inputs (converted to ImageParams, in
// the argument order above) so the generated function takes them; the JIT leaves them undefined and
// define_algorithm creates them. Their sizes are constrained to the spec's constants either way.
struct AlgorithmInputs {
    Halide::ImageParam input, weight, bias, pw_weight, pw_bias;
};

LayerAlgorithm define_algorithm(const LayerSpec &spec, WeightLayout weight_layout = WeightLayout::PyTorch,
                                const AlgorithmInputs &inputs = {}, OutputTranspose output_transpose = {});

// The activation in Halide, matching PyTorch's float32 definitions.
Halide::Expr activation_expr(Activation act, Halide::Expr v, float alpha);

}  // namespace convgen
