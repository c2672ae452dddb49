// The memory budget (runtime/memory_budget.h): sizes parse, layers over the budget are refused with
// a clear error by every entry point that would allocate or compile for them.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "runtime/memory_budget.h"
#include "runtime/reference.h"
#include "runtime/registry.h"

namespace convgen {
namespace {

std::string error_of(const std::function<void()> &f) {
    try {
        f();
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

// Restores the process budget after each test.
class MemoryBudget : public ::testing::Test {
protected:
    void SetUp() override { saved_ = memory_budget_bytes(); }
    void TearDown() override { set_memory_budget_bytes(saved_); }
    int64_t saved_ = 0;
};

TEST(ByteSize, Parses) {
    EXPECT_EQ(parse_byte_size("100", "x"), 100);
    EXPECT_EQ(parse_byte_size("64K", "x"), 64 * 1024);
    EXPECT_EQ(parse_byte_size("512M", "x"), 512LL << 20);
    EXPECT_EQ(parse_byte_size("8G", "x"), 8LL << 30);
    EXPECT_EQ(parse_byte_size("1.5GiB", "x"), 3LL << 29);
    EXPECT_EQ(parse_byte_size("2t", "x"), 2LL << 40);
    EXPECT_EQ(parse_byte_size("unlimited", "x"), 0);
    EXPECT_EQ(parse_byte_size("0", "x"), 0);
    for (const char *bad : {"", "G", "-1", "12 apples", "1e9", "1.2.3G", "99999999999999999999T", "0.1", "8Q"}) {
        EXPECT_NE(error_of([&] { parse_byte_size(bad, "CONVGEN_MEMORY_BUDGET"); }).find("is not a size"), std::string::npos)
            << "'" << bad << "'";
    }
}

TEST(ByteSize, Formats) {
    EXPECT_EQ(format_bytes(100), "100 B");
    EXPECT_EQ(format_bytes(1536), "1.5 KiB");
    EXPECT_EQ(format_bytes(8LL << 30), "8.0 GiB");
}

TEST(LayerTensorBytes, CountsInputOutputAndWeights) {
    const LayerSpec conv = parse_layer_spec("conv n=2 c1=4 c2=6 h=10 w=8 k=3 s=2 g=2");
    // input 2*4*10*8, output 2*6*5*4, weights 6*2*3*3 + 5*6 (bias and BN)
    EXPECT_EQ(layer_tensor_bytes(conv), 4 * (640 + 240 + 108 + 30));
    const LayerSpec dw = parse_layer_spec("dwconv c1=4 c2=8 h=5 w=5 k=3");
    // input 4*25, output 8*25 (the fused depthwise result is not counted), dw 4*9, pw 8*4, 5*(4+8)
    EXPECT_EQ(layer_tensor_bytes(dw), 4 * (100 + 200 + 36 + 32 + 60));
    // The largest valid tensors do not overflow.
    const LayerSpec huge = parse_layer_spec("conv c1=1 c2=1 h=23000 w=23000 k=1");
    EXPECT_EQ(layer_tensor_bytes(huge), 4 * (2LL * 23000 * 23000 + 1 + 5));
}

TEST_F(MemoryBudget, LayersOverItAreRefusedEverywhere) {
    const LayerSpec big = parse_layer_spec("conv c1=16 c2=16 h=64 w=64 k=3");  // 2 x 256 KiB activations
    const LayerSpec small = parse_layer_spec("conv c1=4 c2=4 h=8 w=8 k=3");
    set_memory_budget_bytes(256 << 10);
    const std::string want = "over the memory budget of 256.0 KiB";
    EXPECT_NE(error_of([&] { jit_compile(big); }).find(want), std::string::npos);
    EXPECT_NE(error_of([&] { load_kernel(big); }).find(want), std::string::npos);
    EXPECT_NE(error_of([&] { random_input(big, 1); }).find(want), std::string::npos);
    EXPECT_NE(error_of([&] { random_raw_weights(big, 1); }).find(want), std::string::npos);
    const std::string msg = error_of([&] { jit_compile(big); });
    EXPECT_NE(msg.find("needs 521.3 KiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CONVGEN_MEMORY_BUDGET"), std::string::npos) << msg;
    // Under the budget everything works and is right.
    const RawWeights raw = random_raw_weights(small, 1);
    const Tensor in = random_input(small, 2);
    const Tensor out = jit_compile(small).kernel->run(in, fold_batchnorm(small, raw));
    EXPECT_TRUE(within_tolerance(reference_forward(small, raw, in), out));
    // A kernel compiled before the budget shrank still refuses to allocate an output over it.
    set_memory_budget_bytes(0);
    const CompiledKernel k = jit_compile(big);
    const Tensor big_in = random_input(big, 3);
    const FoldedWeights w = fold_batchnorm(big, random_raw_weights(big, 4));
    set_memory_budget_bytes(256 << 10);
    EXPECT_NE(error_of([&] { k.kernel->run(big_in, w); }).find(want), std::string::npos);
    // 0 is unlimited.
    set_memory_budget_bytes(0);
    EXPECT_NO_THROW(k.kernel->run(big_in, w));
    EXPECT_NE(error_of([&] { set_memory_budget_bytes(-1); }).find(">= 0"), std::string::npos);
}

}  // namespace
}  // namespace convgen
