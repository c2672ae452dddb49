// Layer spec parsing, normalisation and validation.
#include <gtest/gtest.h>

#include <string>

#include "dsl/layer_spec.h"
#include "runtime/errors.h"

namespace convgen {
namespace {

TEST(Spec, DefaultsFollowTheSuiteFormat) {
    LayerSpec s = parse_layer_spec("conv c1=64 c2=128 h=56 w=56 k=3");
    EXPECT_EQ(s.kind, LayerKind::Conv);
    EXPECT_EQ(s.n, 1);
    EXPECT_EQ(s.s, 1);
    EXPECT_EQ(s.p, 1);  // autopad k//2
    EXPECT_EQ(s.g, 1);
    EXPECT_EQ(s.act, Activation::Relu);
    EXPECT_TRUE(s.bn);
    EXPECT_FLOAT_EQ(s.eps, 1e-5f);
    EXPECT_EQ(s.layout, Layout::NCHW);
}

TEST(Spec, DwconvDefaultsDwActToAct) {
    LayerSpec s = parse_layer_spec("dwconv c1=32 c2=64 h=112 w=112 k=3 act=silu");
    EXPECT_EQ(s.kind, LayerKind::DepthwisePointwise);
    EXPECT_EQ(s.dw_act, Activation::Silu);
    EXPECT_TRUE(s.dw_bn);
    LayerSpec t = parse_layer_spec("dwconv c1=32 c2=64 h=112 w=112 k=3 act=silu dw_act=identity dw_bn=0");
    EXPECT_EQ(t.dw_act, Activation::Identity);
    EXPECT_FALSE(t.dw_bn);
}

TEST(Spec, AutopadUsesKernelSize) {
    EXPECT_EQ(parse_layer_spec("conv c1=1 c2=1 h=9 w=9 k=5").p, 2);
    EXPECT_EQ(parse_layer_spec("conv c1=1 c2=1 h=9 w=9 k=4").p, 2);
    EXPECT_EQ(parse_layer_spec("conv c1=1 c2=1 h=9 w=9 k=1").p, 0);
    EXPECT_EQ(parse_layer_spec("conv c1=1 c2=1 h=9 w=9 k=3 p=0").p, 0);
}

TEST(Spec, OutputSizeMatchesPyTorch) {
    LayerSpec s = parse_layer_spec("conv c1=256 c2=256 h=56 w=56 k=3 s=2 g=32");
    EXPECT_EQ(s.out_h(), 28);
    EXPECT_EQ(s.out_w(), 28);
    LayerSpec t = parse_layer_spec("conv c1=4 c2=4 h=10 w=7 k=4 s=3 p=1");
    EXPECT_EQ(t.out_h(), (10 + 2 - 4) / 3 + 1);
    EXPECT_EQ(t.out_w(), (7 + 2 - 4) / 3 + 1);
}

TEST(Spec, ShapesFollowLayout) {
    LayerSpec s = parse_layer_spec("conv n=2 c1=3 c2=8 h=5 w=7 k=3 s=2");
    EXPECT_EQ(s.input_shape(), (std::vector<int64_t>{2, 3, 5, 7}));
    EXPECT_EQ(s.output_shape(), (std::vector<int64_t>{2, 8, 3, 4}));
    LayerSpec t = parse_layer_spec("conv n=2 c1=3 c2=8 h=5 w=7 k=3 s=2 layout=nhwc");
    EXPECT_EQ(t.input_shape(), (std::vector<int64_t>{2, 5, 7, 3}));
    EXPECT_EQ(t.output_shape(), (std::vector<int64_t>{2, 3, 4, 8}));
}

TEST(Spec, MacsFollowDesignFormula) {
    LayerSpec c = parse_layer_spec("conv c1=128 c2=128 h=56 w=56 k=3 g=32");
    EXPECT_EQ(c.macs(), int64_t(128) * 56 * 56 * 4 * 9);
    LayerSpec d = parse_layer_spec("dwconv c1=32 c2=64 h=112 w=112 k=3");
    EXPECT_EQ(d.macs(), int64_t(32) * 112 * 112 * 9 + int64_t(64) * 112 * 112 * 32);
    EXPECT_DOUBLE_EQ(d.flops(), 2.0 * d.macs());
}

TEST(Spec, NormalisedFormRoundTrips) {
    for (const char *text : {"conv c1=64 c2=64 h=56 w=56 k=3", "conv n=8 c1=128 c2=128 h=28 w=28 k=3 g=32 layout=nhwc",
                             "dwconv c1=96 c2=192 h=40 w=40 k=3 act=relu bn=0 dw_bn=0 dw_act=identity",
                             "conv c1=512 c2=512 h=14 w=14 k=3 g=8 act=leaky alpha=0.2 eps=0.001",
                             "dwconv c1=8 c2=8 h=9 w=9 k=5 act=gelu dw_act=leaky alpha=0.125"}) {
        LayerSpec s = parse_layer_spec(text);
        LayerSpec t = parse_layer_spec(s.to_string());
        EXPECT_EQ(s.to_string(), t.to_string()) << text;
        EXPECT_EQ(s, t);
    }
}

TEST(Spec, NormalisedFormIgnoresNameAndKeyOrder) {
    LayerSpec a = parse_layer_spec("conv name=a c1=64 c2=64 h=56 w=56 k=3 act=relu");
    LayerSpec b = parse_layer_spec("conv   k=3 w=56 h=56  c2=64 c1=64 name=b p=1 s=1 g=1 bn=1");
    EXPECT_EQ(a.to_string(), b.to_string());
    EXPECT_NE(a.to_string_with_name(), b.to_string_with_name());
    EXPECT_EQ(a.to_string(), "conv n=1 c1=64 c2=64 h=56 w=56 k=3 s=1 p=1 g=1 act=relu bn=1 eps=1e-05 layout=nchw");
}

TEST(Spec, NormalisedFormDistinguishesEveryField) {
    const std::string base = "conv c1=8 c2=8 h=8 w=8 k=3";
    const std::string b = parse_layer_spec(base).to_string();
    for (const char *extra : {" n=2", " s=2", " p=0", " g=2", " act=silu", " bn=0", " eps=0.001", " layout=nhwc"}) {
        EXPECT_NE(parse_layer_spec(base + extra).to_string(), b) << extra;
    }
    EXPECT_NE(parse_layer_spec("conv c1=8 c2=8 h=8 w=8 k=3 act=leaky").to_string(),
              parse_layer_spec("conv c1=8 c2=8 h=8 w=8 k=3 act=leaky alpha=0.1").to_string());
}

TEST(Spec, DepthwiseConvIsRecognised) {
    EXPECT_TRUE(parse_layer_spec("conv c1=144 c2=144 h=56 w=56 k=3 g=144").is_depthwise_conv());
    EXPECT_FALSE(parse_layer_spec("conv c1=144 c2=144 h=56 w=56 k=3 g=72").is_depthwise_conv());
}

TEST(Spec, EveryActivationParses) {
    for (Activation a : all_activations()) {
        LayerSpec s = parse_layer_spec(std::string("conv c1=1 c2=1 h=3 w=3 k=3 act=") + activation_name(a));
        EXPECT_EQ(s.act, a);
    }
    EXPECT_EQ(all_activations().size(), 10u);
}

TEST(Spec, ActivationDefinitionsMatchPyTorchFormulas) {
    EXPECT_DOUBLE_EQ(apply_activation(Activation::Relu, -2, 0), 0);
    EXPECT_DOUBLE_EQ(apply_activation(Activation::Relu6, 7, 0), 6);
    EXPECT_DOUBLE_EQ(apply_activation(Activation::Leaky, -2, 0.01), -0.02);
    EXPECT_NEAR(apply_activation(Activation::Silu, 1, 0), 0.7310585786300049, 1e-12);
    EXPECT_NEAR(apply_activation(Activation::Gelu, 1, 0), 0.8413447460685429, 1e-12);
    EXPECT_NEAR(apply_activation(Activation::GeluTanh, 1, 0), 0.8411919906082768, 1e-12);
    EXPECT_NEAR(apply_activation(Activation::Hardswish, 1, 0), 0.6666666666666666, 1e-12);
    EXPECT_DOUBLE_EQ(apply_activation(Activation::Hardswish, -4, 0), 0);
    EXPECT_NEAR(apply_activation(Activation::Sigmoid, 0, 0), 0.5, 1e-12);
    EXPECT_NEAR(apply_activation(Activation::Tanh, 0.5, 0), 0.46211715726000974, 1e-12);
    EXPECT_DOUBLE_EQ(apply_activation(Activation::Identity, -3.5, 0), -3.5);
}

TEST(Spec, SuiteTextSkipsCommentsAndBlankLines) {
    auto specs = parse_suite_text("# comment\n\nconv name=a c1=4 c2=4 h=4 w=4 k=3  # trailing\n  \ndwconv name=b c1=4 c2=8 h=4 w=4 k=3\n",
                                  "<test>");
    ASSERT_EQ(specs.size(), 2u);
    EXPECT_EQ(specs[0].name, "a");
    EXPECT_EQ(specs[1].name, "b");
}

TEST(Spec, SuiteErrorsNameTheLine) {
    try {
        parse_suite_text("conv c1=4 c2=4 h=4 w=4 k=3\nconv c1=4 c2=4 h=4 w=4 k=3 act=nope\n", "suite.txt");
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("suite.txt:2"), std::string::npos) << e.what();
    }
    EXPECT_THROW(parse_suite_text("# only comments\n", "empty.txt"), Error);
    EXPECT_THROW(parse_suite_file("/nonexistent/suite.txt"), Error);
}

TEST(Spec, PublicSuiteParses) {
    auto specs = parse_suite_file(CONVGEN_SOURCE_DIR "/bench/layers.txt");
    EXPECT_EQ(specs.size(), 18u);
    for (const auto &s : specs) EXPECT_FALSE(s.name.empty());
}

// ---- Every invalid spec is rejected with a message naming the field.

struct BadSpec {
    const char *text;
    const char *needle;  // must appear in the message
};

class SpecErrors : public ::testing::TestWithParam<BadSpec> {};

TEST_P(SpecErrors, RejectedWithMessageNamingTheProblem) {
    try {
        parse_layer_spec(GetParam().text);
        FAIL() << "accepted: " << GetParam().text;
    } catch (const Error &e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(GetParam().needle), std::string::npos) << "message: " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    }
}

INSTANTIATE_TEST_SUITE_P(
    All, SpecErrors,
    ::testing::Values(BadSpec{"", "empty"}, BadSpec{"   ", "empty"}, BadSpec{"conv3d c1=1 c2=1 h=1 w=1 k=1", "conv3d"},
                      BadSpec{"conv c1=1 c2=1 h=1 w=1 k=1 foo=3", "foo"}, BadSpec{"conv c1=1 c1=2 c2=1 h=1 w=1 k=1", "'c1' is given twice"},
                      BadSpec{"conv c1=6x4 c2=1 h=1 w=1 k=1", "c1"}, BadSpec{"conv c1= c2=1 h=1 w=1 k=1", "c1"},
                      BadSpec{"conv c1=1.5 c2=1 h=1 w=1 k=1", "c1"}, BadSpec{"conv c1=0 c2=1 h=1 w=1 k=1", "c1"},
                      BadSpec{"conv c1=-4 c2=1 h=1 w=1 k=1", "c1"}, BadSpec{"conv c1=99999999999 c2=1 h=1 w=1 k=1", "c1"},
                      BadSpec{"conv c1=6 c2=8 h=4 w=4 k=3 g=4", "g"}, BadSpec{"conv c1=8 c2=6 h=4 w=4 k=3 g=4", "c2=6"},
                      BadSpec{"conv c1=1 c2=1 h=2 w=2 k=5 p=0", "output size"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 act=swish", "swish"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 layout=nchwc", "layout"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 bn=2", "bn"},
                      BadSpec{"conv c2=1 h=4 w=4 k=3", "'c1' is missing"}, BadSpec{"conv c1=1 c2=1 h=4 w=4", "'k' is missing"},
                      BadSpec{"conv c1=65536 c2=1 h=65536 w=65536 k=1", "32-bit"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 act=leaky alpha=abc", "alpha"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 alpha=0.2", "alpha"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 eps=0", "eps"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 eps=-1", "eps"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k", "'k'"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 =3", "'=3'"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 dtype=f16", "dtype"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 dw_act=relu", "dw_act"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 dw_bn=1", "dw_bn"},
                      BadSpec{"dwconv c1=4 c2=4 h=4 w=4 k=3 g=4", "'g'"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 s=0", "'s'"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 p=-1", "'p'"}, BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 eps=nan", "eps"},
                      BadSpec{"conv c1=1 c2=1 h=4 w=4 k=3 eps=1e999", "eps"}, BadSpec{"conv c1=1 c2=1 h=400 w=400 k=99", "k"},
                      BadSpec{"conv name= c1=1 c2=1 h=4 w=4 k=3", "name"},
                      BadSpec{"dwconv n=4096 c1=4096 c2=4096 h=256 w=256 k=3", "32-bit"},
                      BadSpec{"conv c1=1 c2=1 h=2147483647 w=2147483647 k=1 p=1073741824", "p"}));

}  // namespace
}  // namespace convgen
