// Numerics: NaN and +-Inf in inputs and weights, zero-variance BatchNorm channels, huge values and
// denormal inputs. PyTorch's semantics are what the double-precision reference computes, so every
// check compares convgen with reference_forward element by element: NaN exactly where the reference
// is NaN, the same infinity where it is infinite, and finite values within the project's tolerance
// (taken over the finite part of the expected output) everywhere else.
//
// What PyTorch gives (reasoned from its definitions; the reference implements the same ones):
// 0 * NaN = NaN and 0 * Inf = NaN, so a NaN input poisons every output that reads it, whatever the
// weight; relu/relu6/leaky(NaN) = NaN (torch.relu propagates NaN); relu(+Inf) = +Inf, relu6(+Inf) = 6,
// sigmoid(+-Inf) = 1/0, tanh(+-Inf) = +-1, silu/gelu/gelu_tanh/hardswish(-Inf) = NaN (-Inf * 0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/jit.h"
#include "runtime/reference.h"

namespace convgen {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::string value_name(float v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "pinf" : "ninf";
    std::ostringstream os;
    os << v;
    return os.str();
}

Tensor run_kernel(const LayerSpec &spec, const RawWeights &raw, const Tensor &input, std::string *schedule = nullptr) {
    const CompiledKernel compiled = jit_compile(spec);
    if (schedule) *schedule = compiled.kernel->info().schedule;
    const PackedWeights packed = compiled.kernel->pack(fold_batchnorm(spec, raw));
    return compiled.kernel->run(input, packed);
}

// NaN where expected is NaN, the same infinity where expected is infinite, finite values within
// 1e-4 * max(1, max |finite expected|) elsewhere.
::testing::AssertionResult same_special_values(const Tensor &expected, const Tensor &actual) {
    if (expected.shape != actual.shape) {
        return ::testing::AssertionFailure() << "shapes differ: " << shape_to_string(expected.shape) << " vs "
                                             << shape_to_string(actual.shape);
    }
    double max_finite = 0;
    for (float e : expected.data)
        if (std::isfinite(e)) max_finite = std::max(max_finite, std::fabs(double(e)));
    const double limit = 1e-4 * std::max(1.0, max_finite);
    int64_t nan_missing = 0, nan_extra = 0, inf_wrong = 0, finite_wrong = 0;
    std::ostringstream first;
    int shown = 0;
    for (size_t i = 0; i < expected.data.size(); ++i) {
        const float e = expected.data[i], a = actual.data[i];
        bool bad = false;
        if (std::isnan(e)) {
            if (!std::isnan(a)) ++nan_missing, bad = true;
        } else if (std::isnan(a)) {
            ++nan_extra, bad = true;
        } else if (std::isinf(e) || std::isinf(a)) {
            if (e != a) ++inf_wrong, bad = true;
        } else if (std::fabs(double(e) - double(a)) > limit) {
            ++finite_wrong, bad = true;
        }
        if (bad && shown < 8) {
            first << "\n  [" << i << "] expected " << e << " got " << a;
            ++shown;
        }
    }
    if (nan_missing + nan_extra + inf_wrong + finite_wrong == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "of " << expected.data.size() << " values: " << nan_missing
                                         << " NaN in the reference but not in convgen, " << nan_extra
                                         << " NaN in convgen but not in the reference, " << inf_wrong
                                         << " wrong infinities, " << finite_wrong << " finite values beyond " << limit
                                         << "; first:" << first.str();
}

int64_t count_if(const Tensor &t, bool (*pred)(float)) {
    int64_t n = 0;
    for (float v : t.data) n += pred(v) ? 1 : 0;
    return n;
}
bool is_nan(float v) { return std::isnan(v); }
bool is_inf(float v) { return std::isinf(v); }

// Flat index of input element (n, c, y, x) in the spec's layout.
size_t input_index(const LayerSpec &s, int n, int c, int y, int x) {
    if (s.layout == Layout::NCHW) return static_cast<size_t>(((int64_t(n) * s.c1 + c) * s.h + y) * s.w + x);
    return static_cast<size_t>(((int64_t(n) * s.h + y) * s.w + x) * s.c1 + c);
}

// Layers of each kind and layout; the activation is appended (dwconv: both stages).
const char *kSpecialShapes[] = {
    "conv n=2 c1=5 c2=7 h=11 w=13 k=3",                 // dense, NCHW
    "conv c1=12 c2=18 h=9 w=15 k=3 g=3 layout=nhwc",     // grouped, NHWC
    "conv c1=10 c2=10 h=12 w=11 k=3 s=2 g=10",           // depthwise through conv, strided
    "dwconv c1=6 c2=9 h=10 w=12 k=3 layout=nhwc",        // fused dw -> pw
};
const char *kSpecialShapeNames[] = {"dense", "grouped_nhwc", "depthwise_s2", "dwconv_nhwc"};

LayerSpec special_spec(int shape, Activation act) {
    std::string s = kSpecialShapes[shape];
    s += std::string(" act=") + activation_name(act);
    if (std::string(kSpecialShapes[shape]).rfind("dwconv", 0) == 0) s += std::string(" dw_act=") + activation_name(act);
    if (act == Activation::Leaky) s += " alpha=0.1";
    return parse_layer_spec(s);
}

// ---- NaN / +Inf / -Inf in the input, every activation, every kind of layer.

struct SpecialInputCase {
    Activation act;
    int shape;
    float value;
};

class SpecialInput : public ::testing::TestWithParam<SpecialInputCase> {};

TEST_P(SpecialInput, PropagatesLikeReference) {
    const SpecialInputCase &c = GetParam();
    const LayerSpec spec = special_spec(c.shape, c.act);
    const RawWeights raw = random_raw_weights(spec, 11);
    Tensor input = random_input(spec, 12);
    for (float &v : input.data) v *= 3.0f;
    // Two poisoned elements, far enough apart that no output reads both (no Inf - Inf), one of them
    // on the border (read through the padding).
    input.data[input_index(spec, 0, 1 % spec.c1, 1, 2)] = c.value;
    input.data[input_index(spec, spec.n - 1, spec.c1 - 1, spec.h - 1, spec.w - 1)] = c.value;
    const Tensor expected = reference_forward(spec, raw, input);
    if (std::isnan(c.value)) {
        ASSERT_GT(count_if(expected, is_nan), 0) << "the reference lost the NaN";
    }
    std::string schedule;
    const Tensor actual = run_kernel(spec, raw, input, &schedule);
    EXPECT_TRUE(same_special_values(expected, actual)) << spec.to_string() << " schedule " << schedule;
}

std::vector<SpecialInputCase> special_input_cases() {
    std::vector<SpecialInputCase> cases;
    for (Activation act : all_activations())
        for (int shape = 0; shape < 4; ++shape)
            for (float v : {kNaN, kInf, -kInf}) cases.push_back({act, shape, v});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(All, SpecialInput, ::testing::ValuesIn(special_input_cases()),
                         [](const ::testing::TestParamInfo<SpecialInputCase> &info) {
                             return std::string(activation_name(info.param.act)) + "_" + kSpecialShapeNames[info.param.shape] +
                                    "_" + value_name(info.param.value);
                         });

// ---- +-Inf through positive weights and no BN: the pre-activation is exactly +-Inf, so the
// output there is act(+-Inf) as PyTorch defines it (checked against apply_activation directly).

class InfPositiveWeights : public ::testing::TestWithParam<std::tuple<Activation, float>> {};

TEST_P(InfPositiveWeights, GivesActivationOfInf) {
    const Activation act = std::get<0>(GetParam());
    const float value = std::get<1>(GetParam());
    LayerSpec spec = parse_layer_spec(std::string("conv c1=3 c2=4 h=7 w=9 k=3 bn=0 act=") + activation_name(act) +
                                      (act == Activation::Leaky ? " alpha=0.1" : ""));
    RawWeights raw = random_raw_weights(spec, 21);
    for (float &w : raw.conv_weight) w = std::fabs(w) + 0.01f;
    Tensor input = random_input(spec, 22);
    input.data[input_index(spec, 0, 1, 3, 4)] = value;  // read by outputs y 2..4, x 3..5 of every channel
    const Tensor expected = reference_forward(spec, raw, input);
    const Tensor actual = run_kernel(spec, raw, input);
    const double want = apply_activation(act, double(value), double(spec.alpha));
    for (int co = 0; co < spec.c2; ++co) {
        const size_t i = static_cast<size_t>((co * spec.out_h() + 3) * spec.out_w() + 4);
        if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(expected.data[i])) << "reference " << expected.data[i];
            EXPECT_TRUE(std::isnan(actual.data[i])) << "channel " << co << ": convgen gives " << actual.data[i]
                                                    << ", PyTorch gives nan for " << activation_name(act) << "("
                                                    << value << ")";
        } else {
            EXPECT_EQ(double(expected.data[i]), double(float(want))) << "reference";
            const double got = actual.data[i], ref = float(want);
            EXPECT_TRUE(std::isinf(ref) ? got == ref : std::fabs(got - ref) <= 1e-6)
                << "channel " << co << ": convgen gives " << actual.data[i] << ", PyTorch gives " << want << " for "
                << activation_name(act) << "(" << value << ")";
        }
    }
    EXPECT_TRUE(same_special_values(expected, actual)) << spec.to_string();
}

INSTANTIATE_TEST_SUITE_P(All, InfPositiveWeights,
                         ::testing::Combine(::testing::ValuesIn(all_activations()), ::testing::Values(kInf, -kInf)),
                         [](const ::testing::TestParamInfo<std::tuple<Activation, float>> &info) {
                             return std::string(activation_name(std::get<0>(info.param))) + "_" +
                                    value_name(std::get<1>(info.param));
                         });

// ---- NaN / Inf in the weights (conv weight, depthwise weight, pointwise weight), with and
// without padding: PyTorch multiplies the zero padding by the weight too (0 * NaN = NaN), but the
// reference is the oracle here, so convgen is compared with it.

struct SpecialWeightCase {
    const char *spec;
    int which;  // 0: conv / depthwise weight, 1: pointwise weight
    float value;
};

class SpecialWeight : public ::testing::TestWithParam<SpecialWeightCase> {};

TEST_P(SpecialWeight, PropagatesLikeReference) {
    const SpecialWeightCase &c = GetParam();
    const LayerSpec spec = parse_layer_spec(c.spec);
    RawWeights raw = random_raw_weights(spec, 31);
    // The first tap (ky = kx = 0) of output channel 1 (conv) / input channel 1 (depthwise), or one
    // pointwise weight.
    std::vector<float> &w = c.which == 0 ? raw.conv_weight : raw.pointwise_weight;
    const size_t per_channel = c.which == 0 ? w.size() / static_cast<size_t>(spec.kind == LayerKind::Conv ? spec.c2 : spec.c1) : 1;
    w[std::min(w.size() - 1, per_channel * 1)] = c.value;
    Tensor input = random_input(spec, 32);
    const Tensor expected = reference_forward(spec, raw, input);
    // The special weight must reach the output, except through a saturating activation (sigmoid
    // maps +-Inf to 1 or 0): there the finite values must still match.
    if (spec.act != Activation::Sigmoid) {
        ASSERT_GT(count_if(expected, is_nan) + count_if(expected, is_inf), 0);
    }
    std::string schedule;
    const Tensor actual = run_kernel(spec, raw, input, &schedule);
    EXPECT_TRUE(same_special_values(expected, actual)) << spec.to_string() << " schedule " << schedule;
}

INSTANTIATE_TEST_SUITE_P(
    All, SpecialWeight,
    ::testing::Values(SpecialWeightCase{"conv c1=4 c2=6 h=8 w=9 k=3 p=0 act=identity", 0, kNaN},
                      SpecialWeightCase{"conv c1=4 c2=6 h=8 w=9 k=3 p=0 act=relu", 0, kInf},
                      SpecialWeightCase{"conv c1=4 c2=6 h=8 w=9 k=3 p=0 act=sigmoid layout=nhwc", 0, -kInf},
                      SpecialWeightCase{"conv c1=4 c2=6 h=8 w=9 k=3 p=1 act=identity", 0, kNaN},
                      SpecialWeightCase{"conv c1=4 c2=6 h=8 w=9 k=3 p=1 act=relu layout=nhwc", 0, kInf},
                      SpecialWeightCase{"conv c1=6 c2=6 h=8 w=9 k=3 p=1 g=6 act=relu6", 0, kNaN},
                      SpecialWeightCase{"dwconv c1=5 c2=7 h=8 w=9 k=3 p=0 act=identity dw_act=relu", 0, kNaN},
                      SpecialWeightCase{"dwconv c1=5 c2=7 h=8 w=9 k=3 p=1 act=identity dw_act=relu", 0, kNaN},
                      SpecialWeightCase{"dwconv c1=5 c2=7 h=8 w=9 k=3 act=tanh dw_act=identity layout=nhwc", 1, kNaN},
                      SpecialWeightCase{"dwconv c1=5 c2=7 h=8 w=9 k=3 act=relu dw_act=identity", 1, kInf}),
    [](const ::testing::TestParamInfo<SpecialWeightCase> &info) { return "case" + std::to_string(info.index); });

// ---- BatchNorm channels with zero running variance: scale = gamma / sqrt(eps), still finite.

TEST(ZeroVarianceBatchNorm, MatchesReference) {
    for (const char *text : {"conv c1=5 c2=8 h=9 w=11 k=3 act=identity", "conv c1=5 c2=8 h=9 w=11 k=3 eps=0.001 act=silu layout=nhwc",
                             "conv c1=8 c2=8 h=9 w=11 k=3 g=8 act=relu6",
                             "dwconv c1=6 c2=7 h=9 w=10 k=3 act=identity dw_act=identity",
                             "dwconv c1=6 c2=7 h=9 w=10 k=3 eps=0.01 act=relu dw_act=tanh layout=nhwc"}) {
        const LayerSpec spec = parse_layer_spec(text);
        RawWeights raw = random_raw_weights(spec, 41);
        for (size_t c = 0; c < raw.bn.running_var.size(); c += 2) raw.bn.running_var[c] = 0.0f;
        for (size_t c = 1; c < raw.dw_bn.running_var.size(); c += 2) raw.dw_bn.running_var[c] = 0.0f;
        if (!raw.bn.running_var.empty()) raw.bn.running_var.back() = 0.0f;
        const Tensor input = random_input(spec, 42);
        const Tensor expected = reference_forward(spec, raw, input);
        const Tensor actual = run_kernel(spec, raw, input);
        ASSERT_EQ(count_if(expected, is_nan) + count_if(expected, is_inf), 0) << text;
        double err = 0, limit = 0;
        EXPECT_TRUE(within_tolerance(expected, actual, &err, &limit)) << text << ": max_abs_err " << err << " > " << limit;
    }
}

// ---- Accuracy of the activations built on exp.

// The exponential-based activations over their whole range, element by element against double
// precision: within 8 ulp of the exact value (the project's tolerance, 1e-4 of the largest output,
// would let an exp with five-digit accuracy through). Inputs step by 1/256 over [-100, 100]
// (skipped where both the exact value and convgen's are below 2^-100) plus the normal floats
// between 1e-30 and 1 of both signs, through a 1x1 conv with weight 1 in both layouts (the NCHW
// and NHWC kernels vectorise differently).
TEST(ActivationAccuracy, ExpBasedActivationsWithin8UlpOverTheirRange) {
    std::vector<float> xs;
    for (int i = -25600; i <= 25600; ++i) xs.push_back(i / 256.0f);
    for (float v = 1e-30f; v < 1.0f; v *= 1.37f) {
        xs.push_back(v);
        xs.push_back(-v);
    }
    const int w = static_cast<int>(xs.size());
    for (const char *act : {"sigmoid", "silu"}) {
        for (const char *layout : {"nchw", "nhwc"}) {
            const std::string text = std::string("conv c1=1 c2=1 h=1 w=") + std::to_string(w) + " k=1 p=0 bn=0 act=" + act + " layout=" + layout;
            const LayerSpec spec = parse_layer_spec(text);
            RawWeights raw;
            raw.conv_weight = {1.0f};
            Tensor input(spec.input_shape());
            input.data = xs;
            const Tensor out = run_kernel(spec, raw, input);
            int bad = 0;
            double worst_ulp = 0;
            for (int i = 0; i < w; ++i) {
                const double x = xs[i], sig = 1.0 / (1.0 + std::exp(-x));
                const double exact = std::string(act) == "sigmoid" ? sig : x * sig;
                const double ulp = std::ldexp(1.0, std::max(std::ilogb(std::max(std::fabs(exact), 1e-300)), -126) - 23);
                const double err = std::fabs(double(out.data[i]) - exact);
                if (std::fabs(exact) < 0x1p-100 && std::fabs(out.data[i]) < 0x1p-100f) continue;
                worst_ulp = std::max(worst_ulp, err / ulp);
                if (err > 8 * ulp && bad++ < 5) ADD_FAILURE() << text << ": x = " << x << " gives " << out.data[i] << ", exact " << exact;
            }
            EXPECT_EQ(bad, 0) << text << ": worst " << worst_ulp << " ulp";
            std::printf("%s %s: worst %.2f ulp over %d inputs\n", act, layout, worst_ulp, w);
        }
    }
}

// ---- Huge values: 1e30 inputs (finite in float after the conv) match; 1e30 weights times 1e30
// inputs overflow float (and double-then-float in the reference) but must not crash or hang.

TEST(HugeValues, InputsOf1e30MatchReference) {
    for (const char *text : {"conv n=2 c1=5 c2=7 h=11 w=13 k=3 act=identity", "conv c1=12 c2=18 h=9 w=15 k=3 g=3 layout=nhwc act=sigmoid",
                             "dwconv c1=6 c2=9 h=10 w=12 k=3 act=relu dw_act=tanh", "conv c1=5 c2=7 h=11 w=13 k=3 act=leaky alpha=0.1"}) {
        const LayerSpec spec = parse_layer_spec(text);
        const RawWeights raw = random_raw_weights(spec, 51);
        Tensor input = random_input(spec, 52);
        for (float &v : input.data) v *= 1e30f;
        const Tensor expected = reference_forward(spec, raw, input);
        const Tensor actual = run_kernel(spec, raw, input);
        EXPECT_TRUE(same_special_values(expected, actual)) << text;
    }
}

TEST(HugeValues, OverflowDoesNotCrash) {
    const LayerSpec spec = parse_layer_spec("conv c1=8 c2=8 h=9 w=9 k=3 act=gelu_tanh");
    RawWeights raw = random_raw_weights(spec, 61);
    for (float &w : raw.conv_weight) w *= 1e30f;
    Tensor input = random_input(spec, 62);
    for (float &v : input.data) v *= 1e30f;
    Tensor actual;
    ASSERT_NO_THROW(actual = run_kernel(spec, raw, input));
    EXPECT_EQ(actual.shape, spec.output_shape());
}

// ---- Denormal inputs (1e-40 is below FLT_MIN = 1.18e-38).

TEST(Denormals, InputsMatchReference) {
    for (const char *text : {"conv c1=5 c2=7 h=11 w=13 k=3 act=silu", "conv c1=12 c2=18 h=9 w=15 k=3 g=3 layout=nhwc",
                             "dwconv c1=6 c2=9 h=10 w=12 k=3 act=relu6 dw_act=identity"}) {
        const LayerSpec spec = parse_layer_spec(text);
        const RawWeights raw = random_raw_weights(spec, 71);
        Tensor input = random_input(spec, 72);
        for (float &v : input.data) v *= 1e-40f;
        ASSERT_EQ(std::fpclassify(input.data[0]), FP_SUBNORMAL);
        const Tensor expected = reference_forward(spec, raw, input);
        const Tensor actual = run_kernel(spec, raw, input);
        double err = 0, limit = 0;
        EXPECT_TRUE(within_tolerance(expected, actual, &err, &limit)) << text << ": max_abs_err " << err << " > " << limit;
    }
}

// Without BN and with identity activation the outputs are themselves ~1e-40: PyTorch (which does not
// flush denormals by default) keeps them, so convgen's results must be close relative to their size.
TEST(Denormals, DenormalOutputsArePreserved) {
    const LayerSpec spec = parse_layer_spec("conv c1=5 c2=7 h=11 w=13 k=3 act=identity bn=0");
    const RawWeights raw = random_raw_weights(spec, 81);
    Tensor input = random_input(spec, 82);
    for (float &v : input.data) v *= 1e-40f;
    const Tensor expected = reference_forward(spec, raw, input);
    const Tensor actual = run_kernel(spec, raw, input);
    ASSERT_GT(max_abs(expected), 0.0);
    // Float denormals have an absolute resolution of 2^-149 = 1.4e-45; a sum of 45 rounded products
    // loses at most a few dozen of those.
    const double err = max_abs_diff(expected, actual);
    EXPECT_LE(err, 1e-3 * max_abs(expected)) << "max |expected| " << max_abs(expected) << ", max |convgen| "
                                             << max_abs(actual) << ", max_abs_err " << err
                                             << " (convgen flushes denormals to zero?)";
}

}  // namespace
}  // namespace convgen
