// Tests of the plain reference (runtime/reference.cc) against hand-computed cases, against
// itself (layouts, batching, dwconv = two convs, BN folding) and, where /usr/bin/python3 has
// torch, against PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "runtime/errors.h"
#include "runtime/npy.h"
#include "runtime/reference.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "runtime/weights.h"

namespace fs = std::filesystem;
using namespace convgen;

namespace {

LayerSpec conv(int c1, int c2, int h, int w, int k, int s, int p, int g, Activation act = Activation::Identity, bool bn = false) {
    LayerSpec sp;
    sp.kind = LayerKind::Conv;
    sp.c1 = c1;
    sp.c2 = c2;
    sp.h = h;
    sp.w = w;
    sp.k = k;
    sp.s = s;
    sp.p = p;
    sp.g = g;
    sp.act = act;
    sp.bn = bn;
    return sp;
}

LayerSpec dwconv(int c1, int c2, int h, int w, int k, int s, int p, Activation dw_act, bool dw_bn, Activation act, bool bn) {
    LayerSpec sp;
    sp.kind = LayerKind::DepthwisePointwise;
    sp.c1 = c1;
    sp.c2 = c2;
    sp.h = h;
    sp.w = w;
    sp.k = k;
    sp.s = s;
    sp.p = p;
    sp.dw_act = dw_act;
    sp.dw_bn = dw_bn;
    sp.act = act;
    sp.bn = bn;
    return sp;
}

Tensor tensor(std::vector<int64_t> shape, std::vector<float> data) {
    Tensor t(std::move(shape));
    EXPECT_EQ(t.data.size(), data.size());
    t.data = std::move(data);
    return t;
}

// [n,c,h,w] <-> [n,h,w,c]
Tensor nchw_to_nhwc(const Tensor &t) {
    const int64_t n = t.shape[0], c = t.shape[1], h = t.shape[2], w = t.shape[3];
    Tensor o({n, h, w, c});
    for (int64_t a = 0; a < n; ++a)
        for (int64_t b = 0; b < c; ++b)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t x = 0; x < w; ++x) o.data[((a * h + y) * w + x) * c + b] = t.data[((a * c + b) * h + y) * w + x];
    return o;
}

// Element [n][c][y][x] of an NCHW tensor.
float at(const Tensor &t, int64_t n, int64_t c, int64_t y, int64_t x) {
    return t.data[static_cast<size_t>(((n * t.shape[1] + c) * t.shape[2] + y) * t.shape[3] + x)];
}

// ---------------------------------------------------------------------------------------------
// Convolution arithmetic

TEST(Reference, Conv1x1IdentityIsIdentity) {
    LayerSpec s = conv(3, 3, 2, 4, 1, 1, 0, 1);
    RawWeights w;
    w.conv_weight = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    Tensor in = random_input(s, 5);
    Tensor out = reference_forward(s, w, in);
    EXPECT_EQ(out.shape, in.shape);
    EXPECT_EQ(out.data, in.data);
}

TEST(Reference, Conv1x1MixesChannels) {
    // out[o] = sum_i W[o][i] * in[i] at every pixel.
    LayerSpec s = conv(2, 3, 1, 2, 1, 1, 0, 1);
    RawWeights w;
    w.conv_weight = {1, 2, -1, 0, 0.5f, 0.25f};
    Tensor in = tensor({1, 2, 1, 2}, {1, 2, 10, 20});
    Tensor out = reference_forward(s, w, in);
    EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 3, 1, 2}));
    EXPECT_EQ(out.data, (std::vector<float>{21, 42, -1, -2, 3, 6}));
}

TEST(Reference, AllOnes3x3WithZeroPadding) {
    LayerSpec s = conv(1, 1, 3, 3, 3, 1, 1, 1);
    RawWeights w;
    w.conv_weight.assign(9, 1.0f);
    Tensor in = tensor({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    Tensor out = reference_forward(s, w, in);
    EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 1, 3, 3}));
    EXPECT_EQ(out.data, (std::vector<float>{12, 21, 16, 27, 45, 33, 24, 39, 28}));
}

TEST(Reference, KernelIsNotFlipped) {
    // PyTorch's conv2d is a cross-correlation: w[ky][kx] multiplies in[y + ky - p][x + kx - p].
    LayerSpec s = conv(1, 1, 3, 3, 3, 1, 0, 1);
    RawWeights w;
    w.conv_weight = {1, 0, 0, 0, 0, 0, 0, 0, 0};  // top-left tap only
    Tensor in = tensor({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    EXPECT_EQ(reference_forward(s, w, in).data, std::vector<float>{1});
    w.conv_weight = {0, 0, 0, 0, 0, 1, 0, 0, 0};  // middle-right tap
    EXPECT_EQ(reference_forward(s, w, in).data, std::vector<float>{6});
}

TEST(Reference, NoPaddingValidOnly) {
    LayerSpec s = conv(1, 1, 4, 3, 3, 1, 0, 1);
    RawWeights w;
    w.conv_weight.assign(9, 1.0f);
    Tensor in = tensor({1, 1, 4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    Tensor out = reference_forward(s, w, in);
    EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 1, 2, 1}));
    EXPECT_EQ(out.data, (std::vector<float>{45, 72}));
}

TEST(Reference, StrideTwoOutputSizeAndValues) {
    LayerSpec s = conv(1, 1, 7, 7, 3, 2, 1, 1);
    EXPECT_EQ(s.output_shape(), (std::vector<int64_t>{1, 1, 4, 4}));
    RawWeights w;
    w.conv_weight.assign(9, 1.0f);
    Tensor in(s.input_shape());
    for (float &v : in.data) v = 1.0f;
    Tensor out = reference_forward(s, w, in);
    ASSERT_EQ(out.shape, (std::vector<int64_t>{1, 1, 4, 4}));
    // Windows at rows/cols -1..1, 1..3, 3..5, 5..7: the first and last lose one row/column.
    const std::vector<float> expect = {4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4};
    EXPECT_EQ(out.data, expect);
    // Even sizes: (6 + 2 - 3) / 2 + 1 = 3, and stride 3 without padding: (8 - 3) / 3 + 1 = 2.
    EXPECT_EQ(reference_forward(conv(1, 1, 6, 6, 3, 2, 1, 1), w, Tensor({1, 1, 6, 6})).shape, (std::vector<int64_t>{1, 1, 3, 3}));
    EXPECT_EQ(reference_forward(conv(1, 1, 8, 5, 3, 3, 0, 1), w, Tensor({1, 1, 8, 5})).shape, (std::vector<int64_t>{1, 1, 2, 1}));
}

TEST(Reference, StrideSamplesTheRightPixels) {
    // 1x1 kernel, stride 2: picks in[2y][2x].
    LayerSpec s = conv(1, 1, 4, 5, 1, 2, 0, 1);
    RawWeights w;
    w.conv_weight = {1};
    Tensor in(s.input_shape());
    for (size_t i = 0; i < in.data.size(); ++i) in.data[i] = static_cast<float>(i);
    Tensor out = reference_forward(s, w, in);
    EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 1, 2, 3}));
    EXPECT_EQ(out.data, (std::vector<float>{0, 2, 4, 10, 12, 14}));
}

TEST(Reference, GroupsKeepChannelsSeparate) {
    LayerSpec s = conv(4, 4, 1, 1, 1, 1, 0, 2);
    RawWeights w;
    w.conv_weight.assign(4 * 2, 1.0f);  // [4][2][1][1]
    Tensor in = tensor({1, 4, 1, 1}, {1, 10, 100, 1000});
    EXPECT_EQ(reference_forward(s, w, in).data, (std::vector<float>{11, 11, 1100, 1100}));
}

TEST(Reference, GroupedWeightIndexing) {
    // c1=4, c2=2, g=2: weight [2][2][1][1]; out0 = w00*x0 + w01*x1, out1 = w10*x2 + w11*x3.
    LayerSpec s = conv(4, 2, 1, 1, 1, 1, 0, 2);
    RawWeights w;
    w.conv_weight = {1, 2, 3, 4};
    Tensor in = tensor({1, 4, 1, 1}, {1, 10, 100, 1000});
    EXPECT_EQ(reference_forward(s, w, in).data, (std::vector<float>{21, 4300}));
    // Depthwise (g = c1 = c2) with a 3x3 kernel: each channel only sees itself.
    LayerSpec d = conv(2, 2, 3, 3, 3, 1, 1, 2);
    RawWeights dw;
    dw.conv_weight.assign(18, 0.0f);
    dw.conv_weight[4] = 2.0f;   // channel 0: centre tap x2
    dw.conv_weight[9] = 1.0f;   // channel 1: top-left tap
    Tensor din(d.input_shape());
    for (size_t i = 0; i < din.data.size(); ++i) din.data[i] = static_cast<float>(i + 1);
    Tensor dout = reference_forward(d, dw, din);
    for (int i = 0; i < 9; ++i) EXPECT_EQ(dout.data[i], 2.0f * (i + 1));
    EXPECT_EQ(at(dout, 0, 1, 0, 0), 0.0f);          // the tap falls into the padding
    EXPECT_EQ(at(dout, 0, 1, 1, 1), 10.0f);         // in[1][0][0]
    EXPECT_EQ(at(dout, 0, 1, 2, 2), 14.0f);         // in[1][1][1]
}

TEST(Reference, BatchNormIsAppliedExplicitly) {
    LayerSpec s = conv(2, 2, 1, 3, 1, 1, 0, 1, Activation::Identity, true);
    s.eps = 0.25f;
    RawWeights w;
    w.conv_weight = {1, 0, 0, 1};
    w.bn.weight = {2.0f, -1.0f};
    w.bn.bias = {0.5f, 3.0f};
    w.bn.running_mean = {1.0f, -2.0f};
    w.bn.running_var = {0.75f, 3.75f};  // + eps = 1 and 4
    Tensor in = tensor({1, 2, 1, 3}, {0, 1, 2, 0, 2, -2});
    // ch0: (x - 1) / 1 * 2 + 0.5; ch1: (x + 2) / 2 * -1 + 3
    EXPECT_EQ(reference_forward(s, w, in).data, (std::vector<float>{-1.5f, 0.5f, 2.5f, 2.0f, 1.0f, 3.0f}));
}

TEST(Reference, BatchNormUsesSpecEps) {
    LayerSpec s = conv(1, 1, 1, 1, 1, 1, 0, 1, Activation::Identity, true);
    RawWeights w;
    w.conv_weight = {1};
    w.bn = {{1.0f}, {0.0f}, {0.0f}, {0.0f}};  // var 0: the output is x / sqrt(eps)
    Tensor in = tensor({1, 1, 1, 1}, {1.0f});
    s.eps = 1e-2f;
    EXPECT_FLOAT_EQ(reference_forward(s, w, in).data[0], static_cast<float>(1.0 / std::sqrt(double(1e-2f))));
    s.eps = 1e-5f;
    EXPECT_FLOAT_EQ(reference_forward(s, w, in).data[0], static_cast<float>(1.0 / std::sqrt(double(1e-5f))));
}

// ---------------------------------------------------------------------------------------------
// Activations

const std::vector<float> kPoints = {-7.0f, -3.5f, -3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 1.0f, 2.5f, 3.0f, 6.0f, 7.0f};

// The layer's output for kPoints through a 1x1 identity conv and `act`.
std::vector<float> activate(Activation act, float alpha = 0.01f) {
    LayerSpec s = conv(1, 1, 1, static_cast<int>(kPoints.size()), 1, 1, 0, 1, act);
    s.alpha = alpha;
    RawWeights w;
    w.conv_weight = {1};
    return reference_forward(s, w, tensor({1, 1, 1, static_cast<int64_t>(kPoints.size())}, kPoints)).data;
}

void expect_activation(Activation act, double (*formula)(double), float alpha = 0.01f) {
    std::vector<float> got = activate(act, alpha);
    ASSERT_EQ(got.size(), kPoints.size());
    for (size_t i = 0; i < kPoints.size(); ++i) {
        EXPECT_NEAR(got[i], formula(kPoints[i]), 1e-6) << activation_name(act) << " at " << kPoints[i];
    }
}

TEST(Reference, ActivationReluFamily) {
    expect_activation(Activation::Identity, [](double x) { return x; });
    expect_activation(Activation::Relu, [](double x) { return x > 0 ? x : 0.0; });
    expect_activation(Activation::Relu6, [](double x) { return x < 0 ? 0.0 : (x > 6 ? 6.0 : x); });
    std::vector<float> r6 = activate(Activation::Relu6);
    EXPECT_EQ(r6.back(), 6.0f);  // relu6(7)
    EXPECT_EQ(r6.front(), 0.0f);
}

TEST(Reference, ActivationLeakyUsesAlpha) {
    expect_activation(Activation::Leaky, [](double x) { return x >= 0 ? x : 0.01 * x; });
    std::vector<float> a = activate(Activation::Leaky, 0.2f);
    EXPECT_FLOAT_EQ(a[0], -7.0f * 0.2f);
    EXPECT_FLOAT_EQ(a[3], -0.2f);
    EXPECT_EQ(a[7], 1.0f);
}

TEST(Reference, ActivationSigmoidSiluTanh) {
    expect_activation(Activation::Sigmoid, [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
    expect_activation(Activation::Silu, [](double x) { return x / (1.0 + std::exp(-x)); });
    expect_activation(Activation::Tanh, [](double x) { return std::tanh(x); });
    EXPECT_FLOAT_EQ(activate(Activation::Sigmoid)[5], 0.5f);
    EXPECT_NEAR(activate(Activation::Silu)[7], 0.7310585786300049, 1e-7);
    EXPECT_NEAR(activate(Activation::Tanh)[7], 0.7615941559557649, 1e-7);
}

TEST(Reference, ActivationGeluBothForms) {
    expect_activation(Activation::Gelu, [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); });
    expect_activation(Activation::GeluTanh, [](double x) {
        return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.141592653589793) * (x + 0.044715 * x * x * x)));
    });
    // Values printed by PyTorch (float64): F.gelu(1.0), F.gelu(1.0, approximate='tanh').
    EXPECT_NEAR(activate(Activation::Gelu)[7], 0.8413447460685429, 1e-7);
    EXPECT_NEAR(activate(Activation::GeluTanh)[7], 0.8411919906082768, 1e-7);
    EXPECT_NEAR(activate(Activation::Gelu)[3], -0.15865525393145707, 1e-7);
}

TEST(Reference, ActivationHardswish) {
    expect_activation(Activation::Hardswish, [](double x) { return x <= -3 ? 0.0 : (x >= 3 ? x : x * (x + 3) / 6); });
    std::vector<float> h = activate(Activation::Hardswish);
    EXPECT_EQ(h[2], 0.0f);   // -3
    EXPECT_EQ(h[9], 3.0f);   // 3
    EXPECT_FLOAT_EQ(h[7], 2.0f / 3.0f);
    EXPECT_FLOAT_EQ(h[4], -0.25f * 2.75f / 6.0f);
}

// ---------------------------------------------------------------------------------------------
// Layouts, batching, dwconv, folding

TEST(Reference, NchwAndNhwcAgree) {
    for (LayerKind kind : {LayerKind::Conv, LayerKind::DepthwisePointwise}) {
        LayerSpec s = kind == LayerKind::Conv ? conv(4, 6, 5, 7, 3, 2, 1, 2, Activation::Silu, true)
                                              : dwconv(4, 6, 5, 7, 3, 2, 1, Activation::Relu6, true, Activation::Hardswish, true);
        s.n = 2;
        RawWeights w = random_raw_weights(s, 3);
        Tensor in = random_input(s, 4);
        Tensor out = reference_forward(s, w, in);
        LayerSpec t = s;
        t.layout = Layout::NHWC;
        EXPECT_EQ(t.input_shape(), (std::vector<int64_t>{2, 5, 7, 4}));
        Tensor out_nhwc = reference_forward(t, w, nchw_to_nhwc(in));
        EXPECT_EQ(out_nhwc.shape, (std::vector<int64_t>{2, 3, 4, 6}));
        Tensor expect = nchw_to_nhwc(out);
        EXPECT_EQ(out_nhwc.data, expect.data);
        // random_input follows the spec's layout shape
        EXPECT_EQ(random_input(t, 4).shape, t.input_shape());
    }
}

TEST(Reference, BatchElementsAreIndependent) {
    LayerSpec s = conv(3, 4, 4, 4, 3, 1, 1, 1, Activation::Relu, true);
    s.n = 3;
    RawWeights w = random_raw_weights(s, 9);
    Tensor in = random_input(s, 10);
    Tensor out = reference_forward(s, w, in);
    LayerSpec one = s;
    one.n = 1;
    const size_t in_per = 3 * 16, out_per = 4 * 16;
    for (int b = 0; b < 3; ++b) {
        Tensor slice({1, 3, 4, 4});
        std::copy(in.data.begin() + b * in_per, in.data.begin() + (b + 1) * in_per, slice.data.begin());
        Tensor o = reference_forward(one, w, slice);
        EXPECT_TRUE(std::equal(o.data.begin(), o.data.end(), out.data.begin() + b * out_per)) << b;
    }
}

// dwconv = conv(g=c1) -> [dw_bn] -> dw_act, then conv 1x1 -> [bn] -> act.
void check_dwconv_is_two_convs(bool dw_bn, bool bn, Activation dw_act, Activation act, int s, int p) {
    LayerSpec d = dwconv(4, 6, 7, 6, 3, s, p, dw_act, dw_bn, act, bn);
    d.eps = 1e-3f;
    RawWeights w = random_raw_weights(d, 21);
    Tensor in = random_input(d, 22);
    Tensor out = reference_forward(d, w, in);

    LayerSpec a = conv(4, 4, 7, 6, 3, s, p, 4, dw_act, dw_bn);
    a.eps = d.eps;
    RawWeights wa;
    wa.conv_weight = w.conv_weight;
    wa.bn = w.dw_bn;
    Tensor mid = reference_forward(a, wa, in);

    LayerSpec b = conv(4, 6, a.out_h(), a.out_w(), 1, 1, 0, 1, act, bn);
    b.eps = d.eps;
    RawWeights wb;
    wb.conv_weight = w.pointwise_weight;
    wb.bn = w.bn;
    Tensor two = reference_forward(b, wb, mid);

    ASSERT_EQ(two.shape, out.shape);
    ASSERT_EQ(out.shape, d.output_shape());
    // mid is rounded to float32 between the two calls; the fused reference keeps double.
    EXPECT_LE(max_abs_diff(out, two), 1e-5 * std::max(1.0, max_abs(out)));
    EXPECT_GT(max_abs(out), 0.0);
}

TEST(Reference, DwconvEqualsDepthwiseThenPointwise) {
    check_dwconv_is_two_convs(true, true, Activation::Relu, Activation::Relu, 1, 1);
    check_dwconv_is_two_convs(false, false, Activation::Identity, Activation::Relu, 1, 1);  // the seed's DWConv
    check_dwconv_is_two_convs(true, false, Activation::Relu6, Activation::Silu, 2, 1);
    check_dwconv_is_two_convs(false, true, Activation::Gelu, Activation::Tanh, 2, 0);
}

TEST(Reference, DwconvPaddingAppliesToDepthwiseOnly) {
    // k=1, p=1 on the depthwise: output grows to (h+2) x (w+2), border = act(pointwise(dw_act(0))).
    LayerSpec d = dwconv(1, 1, 2, 2, 1, 1, 1, Activation::Identity, false, Activation::Identity, false);
    RawWeights w;
    w.conv_weight = {2.0f};
    w.pointwise_weight = {3.0f};
    Tensor out = reference_forward(d, w, tensor({1, 1, 2, 2}, {1, 2, 3, 4}));
    EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 1, 4, 4}));
    EXPECT_EQ(out.data, (std::vector<float>{0, 0, 0, 0, 0, 6, 12, 0, 0, 18, 24, 0, 0, 0, 0, 0}));
}

TEST(Reference, FoldedWeightsGiveTheSameResult) {
    // conv with folded weights + bias (computed here by plain loops) == the unfolded reference.
    LayerSpec s = conv(4, 6, 5, 5, 3, 1, 1, 2, Activation::Identity, true);
    RawWeights raw = random_raw_weights(s, 13);
    FoldedWeights f = fold_batchnorm(s, raw);
    Tensor in = random_input(s, 14);
    Tensor ref = reference_forward(s, raw, in);
    Tensor mine(s.output_shape());
    const int cin_g = 2, cout_g = 3;
    for (int o = 0; o < 6; ++o)
        for (int y = 0; y < 5; ++y)
            for (int x = 0; x < 5; ++x) {
                double acc = f.bias[o];
                for (int i = 0; i < cin_g; ++i)
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            const int iy = y + ky - 1, ix = x + kx - 1;
                            if (iy < 0 || iy >= 5 || ix < 0 || ix >= 5) continue;
                            acc += double(f.weight[((o * cin_g + i) * 3 + ky) * 3 + kx]) * at(in, 0, (o / cout_g) * cin_g + i, iy, ix);
                        }
                mine.data[(o * 5 + y) * 5 + x] = static_cast<float>(acc);
            }
    double err = 0, limit = 0;
    EXPECT_TRUE(within_tolerance(ref, mine, &err, &limit)) << err << " > " << limit;
    EXPECT_LT(err, 1e-5);
}

TEST(Reference, OutputBlockedPackingPutsABlocksChannelsSideBySide) {
    // conv c2=5 in blocks of 2: [3 blocks][c1/g * k * k][2], the sixth channel zero.
    LayerSpec s = conv(6, 5, 4, 4, 3, 1, 1, 1);
    FoldedWeights f;
    const size_t inner = 6 * 3 * 3;
    for (size_t o = 0; o < 5; ++o)
        for (size_t i = 0; i < inner; ++i) f.weight.push_back(float(o * 1000 + i + 1));
    f.bias.assign(5, 0.0f);
    const PackedWeights p = pack_weights(s, f, WeightLayout::output_blocked(2));
    EXPECT_EQ(weight_layout_name(p.layout), "output_blocked2");
    ASSERT_EQ(p.weight.size(), 3 * inner * 2);
    EXPECT_EQ(weight_extents(s, p.layout), (std::vector<int>{2, 9, 6, 3}));
    for (size_t o = 0; o < 6; ++o)
        for (size_t i = 0; i < inner; ++i) {
            const float want = o < 5 ? float(o * 1000 + i + 1) : 0.0f;
            ASSERT_EQ(p.weight[((o / 2) * inner + i) * 2 + o % 2], want) << "channel " << o << " element " << i;
        }
    // A block of one channel is PyTorch's order.
    EXPECT_EQ(WeightLayout::output_blocked(1), WeightLayout::PyTorch);

    // dwconv: the pointwise weight is blocked ([c2/B][c1][B]), the depthwise weight is not.
    LayerSpec d = parse_layer_spec("dwconv c1=3 c2=4 h=5 w=5 k=3");
    FoldedWeights fd = fold_batchnorm(d, random_raw_weights(d, 3));
    const PackedWeights pd = pack_weights(d, fd, WeightLayout::output_blocked(3));
    EXPECT_EQ(std::vector<float>(pd.weight.begin(), pd.weight.end()), fd.weight);
    // Packed weights start on a cache line, so that a kernel's whole-vector loads of them do not
    // straddle two.
    for (const AlignedFloats *v : {&p.weight, &pd.weight, &pd.pw_weight, &pd.bias})
        EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data()) % 64, 0u);
    ASSERT_EQ(pd.pw_weight.size(), size_t(2 * 3 * 3));
    EXPECT_EQ(pw_weight_extents(d, pd.layout), (std::vector<int>{9, 2}));
    for (int o = 0; o < 6; ++o)
        for (int i = 0; i < 3; ++i) EXPECT_EQ(pd.pw_weight[((o / 3) * 3 + i) * 3 + o % 3], o < 4 ? fd.pw_weight[o * 3 + i] : 0.0f);

    // Weights of the wrong size are refused, not read past their end.
    f.weight.pop_back();
    EXPECT_THROW(pack_weights(s, f, WeightLayout::output_blocked(2)), Error);
}

// ---------------------------------------------------------------------------------------------
// Errors and helpers

TEST(Reference, RejectsWrongInputShape) {
    LayerSpec s = conv(3, 4, 5, 5, 3, 1, 1, 1);
    RawWeights w = random_raw_weights(s, 1);
    try {
        reference_forward(s, w, Tensor({1, 3, 5, 6}));
        FAIL() << "no error";
    } catch (const Error &e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("[1, 3, 5, 6]"), std::string::npos) << m;
        EXPECT_NE(m.find("[1, 3, 5, 5]"), std::string::npos) << m;
    }
    LayerSpec t = s;
    t.layout = Layout::NHWC;
    EXPECT_THROW(reference_forward(t, w, Tensor({1, 3, 5, 5})), Error);  // NCHW data for an NHWC spec
    Tensor bad({1, 3, 5, 5});
    bad.data.pop_back();
    EXPECT_THROW(reference_forward(s, w, bad), Error);
}

TEST(Reference, RejectsWrongWeightsAndInvalidSpec) {
    LayerSpec s = conv(4, 4, 5, 5, 3, 1, 1, 2, Activation::Relu, true);
    RawWeights w = random_raw_weights(s, 1);
    Tensor in = random_input(s, 2);
    RawWeights short_w = w;
    short_w.conv_weight.resize(10);
    EXPECT_THROW(reference_forward(s, short_w, in), Error);
    RawWeights no_bn = w;
    no_bn.bn = {};
    EXPECT_THROW(reference_forward(s, no_bn, in), Error);
    LayerSpec bad = s;
    bad.g = 3;  // 4 % 3 != 0
    EXPECT_THROW(reference_forward(bad, w, in), Error);
}

TEST(Reference, MaxAbsDiffAndTolerance) {
    Tensor a = tensor({2, 2}, {1, -2, 3, 4});
    Tensor b = tensor({2, 2}, {1, -2.5f, 3, 4.25f});
    EXPECT_DOUBLE_EQ(max_abs_diff(a, b), 0.5);
    EXPECT_DOUBLE_EQ(max_abs(a), 4.0);
    EXPECT_DOUBLE_EQ(max_abs(Tensor({0})), 0.0);
    EXPECT_THROW(max_abs_diff(a, tensor({4}, {1, -2, 3, 4})), Error);
    double err = -1, limit = -1;
    EXPECT_FALSE(within_tolerance(a, b, &err, &limit));
    EXPECT_DOUBLE_EQ(err, 0.5);
    EXPECT_DOUBLE_EQ(limit, 4e-4);  // 1e-4 * max(1, 4)
    Tensor c = a;
    c.data[3] += 3e-4f;
    EXPECT_TRUE(within_tolerance(a, c));
    // Small values: the limit is 1e-4 absolute.
    Tensor s1 = tensor({1}, {0.001f}), s2 = tensor({1}, {0.00105f});
    EXPECT_TRUE(within_tolerance(s1, s2, nullptr, &limit));
    EXPECT_DOUBLE_EQ(limit, 1e-4);
    EXPECT_FALSE(within_tolerance(s1, tensor({1}, {0.0012f})));
}

TEST(Reference, NaNIsNeverWithinTolerance) {
    Tensor a = tensor({3}, {1, 2, 3});
    Tensor b = a;
    b.data[1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(max_abs_diff(a, b)));
    EXPECT_FALSE(within_tolerance(a, b));
    EXPECT_FALSE(within_tolerance(b, a));
    Tensor inf = a;
    inf.data[0] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(within_tolerance(a, inf));
}

TEST(Reference, RandomInputIsDeterministicAndInRange) {
    LayerSpec s = conv(3, 4, 9, 11, 3, 1, 1, 1);
    s.n = 2;
    Tensor a = random_input(s, 7), b = random_input(s, 7), c = random_input(s, 8);
    EXPECT_EQ(a.shape, s.input_shape());
    EXPECT_EQ(a.data, b.data);
    EXPECT_NE(a.data, c.data);
    float lo = 1, hi = -1;
    double sum = 0;
    for (float v : a.data) {
        EXPECT_GE(v, -1.0f);
        EXPECT_LT(v, 1.0f);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
    }
    EXPECT_LT(lo, -0.9f);
    EXPECT_GT(hi, 0.9f);
    EXPECT_LT(std::fabs(sum / a.data.size()), 0.1);
    // Pinned: mt19937 is fully specified, and the mapping is -1 + 2 * (bits >> 8) / 2^24.
    std::mt19937 gen(7);
    EXPECT_EQ(a.data[0], static_cast<float>(-1.0 + 2.0 * (gen() >> 8) / 16777216.0));
}

// ---------------------------------------------------------------------------------------------
// PyTorch as the oracle (skipped where /usr/bin/python3 has no torch)

const char *torch_act(Activation a) {
    switch (a) {
        case Activation::Identity: return "identity";
        case Activation::Relu: return "relu";
        case Activation::Relu6: return "relu6";
        case Activation::Leaky: return "leaky";
        case Activation::Silu: return "silu";
        case Activation::Gelu: return "gelu";
        case Activation::GeluTanh: return "gelu_tanh";
        case Activation::Hardswish: return "hardswish";
        case Activation::Sigmoid: return "sigmoid";
        case Activation::Tanh: return "tanh";
    }
    return "?";
}

const char *kTorchScript = R"PY(
import json, struct, sys
import numpy as np
import torch
import torch.nn.functional as F
torch.set_grad_enabled(False)

def load_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        a, e = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(data[a:e], dtype='<f4').reshape(v['shape']).astype(np.float64))
    return out

def act(name, x, alpha):
    return {
        'identity': lambda: x, 'relu': lambda: F.relu(x), 'relu6': lambda: F.relu6(x),
        'leaky': lambda: F.leaky_relu(x, alpha), 'silu': lambda: F.silu(x), 'gelu': lambda: F.gelu(x),
        'gelu_tanh': lambda: F.gelu(x, approximate='tanh'), 'hardswish': lambda: F.hardswish(x),
        'sigmoid': lambda: torch.sigmoid(x), 'tanh': lambda: torch.tanh(x)}[name]()

def bn(x, w, m, eps):
    return F.batch_norm(x, w[m + '.running_mean'], w[m + '.running_var'], w[m + '.weight'], w[m + '.bias'],
                        training=False, eps=eps)

d = sys.argv[1]
for line in open(d + '/cases.txt'):
    f = line.split()
    name, kind = f[0], f[1]
    c1, c2, k, s, p, g = map(int, f[2:8])
    a, alpha, use_bn, dw_a, dw_bn, eps, layout = f[8], float(f[9]), f[10] == '1', f[11], f[12] == '1', float(f[13]), f[14]
    w = load_st(d + '/' + name + '.safetensors')
    x = torch.from_numpy(np.load(d + '/' + name + '_in.npy').astype(np.float64))
    if layout == 'nhwc':
        x = x.permute(0, 3, 1, 2)
    if kind == 'conv':
        y = F.conv2d(x, w['conv.weight'], None, s, p, 1, g)
        if use_bn:
            y = bn(y, w, 'bn', eps)
        y = act(a, y, alpha)
    else:
        y = F.conv2d(x, w['depthwise.weight'], None, s, p, 1, c1)
        if dw_bn:
            y = bn(y, w, 'dw_bn', eps)
        y = act(dw_a, y, alpha)
        y = F.conv2d(y, w['pointwise.weight'])
        if use_bn:
            y = bn(y, w, 'bn', eps)
        y = act(a, y, alpha)
    if layout == 'nhwc':
        y = y.permute(0, 2, 3, 1)
    np.save(d + '/' + name + '_out.npy', np.ascontiguousarray(y.numpy().astype(np.float32)))
)PY";

TEST(Reference, MatchesPyTorch) {
    if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no torch";
    std::string tmpl = (fs::temp_directory_path() / "convgen_test_ref_XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    const std::string dir = buf.data();

    std::vector<LayerSpec> specs;
    specs.push_back(conv(4, 6, 9, 8, 3, 2, 1, 2, Activation::Silu, true));
    specs.push_back(conv(6, 6, 5, 5, 3, 1, 1, 6, Activation::Leaky, true));
    specs.back().alpha = 0.1f;
    specs.push_back(conv(3, 8, 7, 7, 5, 1, 2, 1, Activation::GeluTanh, false));
    specs.back().layout = Layout::NHWC;
    specs.push_back(conv(6, 4, 6, 6, 1, 1, 0, 2, Activation::Hardswish, true));
    specs.back().n = 2;
    specs.push_back(dwconv(4, 8, 8, 8, 3, 2, 1, Activation::Relu6, true, Activation::Gelu, true));
    specs.push_back(dwconv(5, 3, 6, 7, 3, 1, 1, Activation::Identity, false, Activation::Relu, false));
    specs.push_back(dwconv(4, 4, 6, 6, 5, 1, 2, Activation::Sigmoid, true, Activation::Tanh, true));
    specs.back().layout = Layout::NHWC;
    specs.back().eps = 1e-3f;

    std::string cases;
    std::vector<Tensor> expected;
    for (size_t i = 0; i < specs.size(); ++i) {
        const LayerSpec &s = specs[i];
        const std::string name = "case" + std::to_string(i);
        RawWeights w = random_raw_weights(s, 100 + i);
        Tensor in = random_input(s, 200 + i);
        expected.push_back(reference_forward(s, w, in));
        write_npy(dir + "/" + name + "_in.npy", in);
        auto vec = [](std::vector<int64_t> shape, const std::vector<float> &v) {
            Tensor t(std::move(shape));
            t.data = v;
            return t;
        };
        std::vector<std::pair<std::string, Tensor>> sd;
        auto add_bn = [&](const std::string &m, const BatchNormParams &b, int64_t ch) {
            sd.push_back({m + ".weight", vec({ch}, b.weight)});
            sd.push_back({m + ".bias", vec({ch}, b.bias)});
            sd.push_back({m + ".running_mean", vec({ch}, b.running_mean)});
            sd.push_back({m + ".running_var", vec({ch}, b.running_var)});
        };
        if (s.kind == LayerKind::Conv) {
            sd.push_back({"conv.weight", vec({s.c2, s.c1 / s.g, s.k, s.k}, w.conv_weight)});
            if (s.bn) add_bn("bn", w.bn, s.c2);
        } else {
            sd.push_back({"depthwise.weight", vec({s.c1, 1, s.k, s.k}, w.conv_weight)});
            sd.push_back({"pointwise.weight", vec({s.c2, s.c1, 1, 1}, w.pointwise_weight)});
            if (s.dw_bn) add_bn("dw_bn", w.dw_bn, s.c1);
            if (s.bn) add_bn("bn", w.bn, s.c2);
        }
        write_safetensors(dir + "/" + name + ".safetensors", sd);
        // The loader must give back exactly what was written.
        RawWeights back = load_raw_weights(s, SafeTensorsFile::read(dir + "/" + name + ".safetensors"), "");
        EXPECT_EQ(back.conv_weight, w.conv_weight);
        char line[512];
        std::snprintf(line, sizeof line, "%s %s %d %d %d %d %d %d %s %.9g %d %s %d %.9g %s\n", name.c_str(),
                      s.kind == LayerKind::Conv ? "conv" : "dwconv", s.c1, s.c2, s.k, s.s, s.p, s.g, torch_act(s.act),
                      static_cast<double>(s.alpha), s.bn ? 1 : 0, torch_act(s.dw_act), s.dw_bn ? 1 : 0,
                      static_cast<double>(s.eps), s.layout == Layout::NHWC ? "nhwc" : "nchw");
        cases += line;
    }
    write_file_bytes(dir + "/cases.txt", cases.data(), cases.size());
    write_file_bytes(dir + "/oracle.py", kTorchScript, std::strlen(kTorchScript));
    ASSERT_EQ(std::system(("/usr/bin/python3 " + dir + "/oracle.py " + dir).c_str()), 0);
    for (size_t i = 0; i < specs.size(); ++i) {
        Tensor torch_out = read_npy(dir + "/case" + std::to_string(i) + "_out.npy");
        ASSERT_EQ(torch_out.shape, expected[i].shape) << i;
        double err = 0, limit = 0;
        EXPECT_TRUE(within_tolerance(torch_out, expected[i], &err, &limit)) << "case " << i << ": " << err;
        EXPECT_LT(err, 1e-6) << "case " << i << " (" << specs[i].to_string() << ")";
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
}

}  // namespace
