// The runtime's kernel registry and host-CPU matching (runtime/cpu.h, runtime/registry.h): target
// parsing, variant choice under CONVGEN_MAX_ISA, the JIT fallback and its absence. AOT kernels
// themselves are run by the aot.* tests (tests/aot), which link generated kernel libraries.
#include <gtest/gtest.h>

#include <Halide.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "runtime/reference.h"
#include "runtime/registry.h"

namespace convgen {
namespace {

HostCpu make_cpu(CpuArch arch, std::set<std::string> features) {
    HostCpu cpu;
    cpu.arch = arch;
    cpu.features = std::move(features);
    return cpu;
}

AotVariant make_variant(const std::string &target, const HostCpu &cpu) {
    AotVariant v;
    v.library = "test";
    v.target = target;
    const TargetRequirements req = target_requirements(target);
    v.level = req.level;
    v.not_runnable = why_not_runnable(req, cpu);
    return v;
}

const char *kAvx512 = "x86-64-linux-avx-avx2-f16c-fma-sse41-avx512-avx512_skylake";
const char *kAvx2 = "x86-64-linux-avx-avx2-f16c-fma-sse41";
const char *kSse41 = "x86-64-linux-sse41";

TEST(TargetRequirements, X86Levels) {
    EXPECT_EQ(target_requirements(kAvx512).level, IsaLevel::AVX512);
    EXPECT_EQ(target_requirements(kAvx2).level, IsaLevel::AVX2);
    EXPECT_EQ(target_requirements(kSse41).level, IsaLevel::SSE41);
    EXPECT_EQ(target_requirements("x86-64-linux").level, IsaLevel::Baseline);
    const TargetRequirements r = target_requirements(kAvx2);
    EXPECT_EQ(r.arch, CpuArch::X86_64);
    for (const char *f : {"avx", "avx2", "f16c", "fma", "sse41"}) {
        EXPECT_NE(std::find(r.cpu_features.begin(), r.cpu_features.end(), f), r.cpu_features.end()) << f;
    }
    EXPECT_TRUE(r.unknown.empty());
}

TEST(TargetRequirements, Arm64IsNeon) {
    const TargetRequirements r = target_requirements("arm-64-linux");
    EXPECT_EQ(r.arch, CpuArch::ARM64);
    EXPECT_EQ(r.level, IsaLevel::NEON);
    EXPECT_TRUE(r.cpu_features.empty());
    EXPECT_EQ(target_requirements("arm-64-linux-arm_dot_prod").cpu_features, std::vector<std::string>{"asimddp"});
}

TEST(TargetRequirements, NeutralAndUnknownFeatures) {
    EXPECT_TRUE(target_requirements("x86-64-linux-sse41-no_runtime-jit").unknown.empty());
    EXPECT_EQ(target_requirements("x86-64-linux-cuda").unknown, std::vector<std::string>{"cuda"});
    // An ARM feature on an x86 target cannot be checked: never runnable.
    EXPECT_EQ(target_requirements("x86-64-linux-sve").unknown, std::vector<std::string>{"sve"});
    EXPECT_THROW(target_requirements("x86"), Error);
    EXPECT_THROW(target_requirements(""), Error);
}

TEST(WhyNotRunnable, NamesWhatIsMissing) {
    const HostCpu avx2_host = make_cpu(CpuArch::X86_64, {"sse41", "avx", "avx2", "fma", "f16c"});
    EXPECT_EQ(why_not_runnable(target_requirements(kAvx2), avx2_host), "");
    EXPECT_EQ(why_not_runnable(target_requirements(kSse41), avx2_host), "");
    const std::string why = why_not_runnable(target_requirements(kAvx512), avx2_host);
    EXPECT_NE(why.find("avx512f"), std::string::npos) << why;
    EXPECT_NE(why.find("avx512bw"), std::string::npos) << why;
    EXPECT_NE(why_not_runnable(target_requirements("arm-64-linux"), avx2_host).find("arm-64"), std::string::npos);
    EXPECT_NE(why_not_runnable(target_requirements("x86-64-linux-cuda"), avx2_host).find("cuda"), std::string::npos);
    const HostCpu arm = make_cpu(CpuArch::ARM64, {"asimd"});
    EXPECT_EQ(why_not_runnable(target_requirements("arm-64-linux"), arm), "");
    EXPECT_NE(why_not_runnable(target_requirements("arm-64-linux-arm_dot_prod"), arm).find("asimddp"), std::string::npos);
    EXPECT_NE(why_not_runnable(target_requirements("x86-64-windows-sse41"), avx2_host).find("windows"), std::string::npos);
    // Halide's host target on a Sapphire Rapids Xeon names two more AVX-512 levels.
    const char *spr = "x86-64-linux-avx-avx2-avx512-avx512_cannonlake-avx512_sapphirerapids-avx512_skylake-f16c-fma-sse41";
    EXPECT_TRUE(target_requirements(spr).unknown.empty());
    EXPECT_EQ(target_requirements(spr).level, IsaLevel::AVX512);
    const HostCpu skylake = make_cpu(CpuArch::X86_64, {"sse41", "avx", "avx2", "fma", "f16c", "avx512f", "avx512cd",
                                                       "avx512bw", "avx512dq", "avx512vl"});
    EXPECT_EQ(why_not_runnable(target_requirements(kAvx512), skylake), "");
    const std::string why_spr = why_not_runnable(target_requirements(spr), skylake);
    for (const char *f : {"avx512ifma", "avx512vbmi", "avxvnni", "avx512bf16"}) EXPECT_NE(why_spr.find(f), std::string::npos) << why_spr;
    // A Zen 4 has AVX512-BF16 but no VEX AVX-VNNI, which Halide 14's sapphirerapids code uses.
    HostCpu zen4 = skylake;
    for (const char *f : {"avx512ifma", "avx512vbmi", "avx512bf16"}) zen4.features.insert(f);
    EXPECT_EQ(why_not_runnable(target_requirements(spr), zen4), "host lacks avxvnni");
}

TEST(ChooseVariant, HighestRunnableLevelUnderTheCap) {
    const HostCpu avx512_host =
        make_cpu(CpuArch::X86_64, {"sse41", "avx", "avx2", "fma", "f16c", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"});
    const std::vector<AotVariant> v = {make_variant(kAvx512, avx512_host), make_variant(kAvx2, avx512_host),
                                       make_variant(kSse41, avx512_host)};
    EXPECT_EQ(choose_variant(v, std::nullopt).index, 0);
    EXPECT_EQ(choose_variant(v, IsaLevel::AVX512).index, 0);
    EXPECT_EQ(choose_variant(v, IsaLevel::AVX2).index, 1);
    EXPECT_EQ(choose_variant(v, IsaLevel::SSE41).index, 2);
    const VariantChoice none = choose_variant(v, IsaLevel::Baseline);
    EXPECT_EQ(none.index, -1);
    EXPECT_NE(none.explanation.find("CONVGEN_MAX_ISA=baseline"), std::string::npos) << none.explanation;

    const HostCpu avx2_host = make_cpu(CpuArch::X86_64, {"sse41", "avx", "avx2", "fma", "f16c"});
    const std::vector<AotVariant> w = {make_variant(kSse41, avx2_host), make_variant(kAvx512, avx2_host),
                                       make_variant(kAvx2, avx2_host)};
    const VariantChoice c = choose_variant(w, std::nullopt);
    EXPECT_EQ(c.index, 2);
    EXPECT_NE(c.explanation.find("skipped " + std::string(kAvx512)), std::string::npos) << c.explanation;
    EXPECT_EQ(choose_variant({}, std::nullopt).index, -1);

    const HostCpu sse_host = make_cpu(CpuArch::X86_64, {"sse41"});
    EXPECT_EQ(choose_variant({make_variant(kAvx2, sse_host)}, std::nullopt).index, -1);
}

TEST(MaxIsa, ParsesAndRejects) {
    EXPECT_EQ(parse_isa_level("avx2"), IsaLevel::AVX2);
    EXPECT_EQ(parse_isa_level("sse41"), IsaLevel::SSE41);
    EXPECT_EQ(parse_isa_level("avx512"), IsaLevel::AVX512);
    try {
        parse_isa_level("AVX2x");
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("CONVGEN_MAX_ISA='AVX2x'"), std::string::npos) << e.what();
    }
    ::setenv("CONVGEN_MAX_ISA", "sse41", 1);
    EXPECT_EQ(max_isa_from_env(), IsaLevel::SSE41);
    ::setenv("CONVGEN_MAX_ISA", "", 1);
    EXPECT_EQ(max_isa_from_env(), std::nullopt);
    ::setenv("CONVGEN_MAX_ISA", "fast", 1);
    EXPECT_THROW(max_isa_from_env(), Error);
    ::unsetenv("CONVGEN_MAX_ISA");
}

// convgen's own cpuid detection must agree with Halide's on every feature both know.
TEST(HostCpu, AgreesWithHalide) {
    const Halide::Target host = Halide::get_host_target();
    const HostCpu &cpu = host_cpu();
    if (host.arch != Halide::Target::X86) GTEST_SKIP() << "x86 check";
    EXPECT_EQ(cpu.arch, CpuArch::X86_64);
    EXPECT_EQ(cpu.has("sse41"), host.has_feature(Halide::Target::SSE41));
    EXPECT_EQ(cpu.has("avx"), host.has_feature(Halide::Target::AVX));
    EXPECT_EQ(cpu.has("avx2"), host.has_feature(Halide::Target::AVX2));
    EXPECT_EQ(cpu.has("fma"), host.has_feature(Halide::Target::FMA));
    EXPECT_EQ(cpu.has("f16c"), host.has_feature(Halide::Target::F16C));
    EXPECT_EQ(cpu.has("avx512f") && cpu.has("avx512bw") && cpu.has("avx512vl") && cpu.has("avx512dq"),
              host.has_feature(Halide::Target::AVX512_Skylake));
    // The JIT's host target runs here: Halide's, less what convgen's check rejects (Halide 14's
    // sapphirerapids on a CPU without AVX-VNNI, whose kernels die on a VEX vpdpwssd).
    EXPECT_EQ(why_not_runnable(target_requirements(host_target_string()), cpu), "");
    if (why_not_runnable(target_requirements(host.to_string()), cpu).empty()) {
        EXPECT_EQ(host_target_string(), host.to_string());
    } else {
        EXPECT_EQ(host_target_string(), host.without_feature(Halide::Target::AVX512_SapphireRapids).to_string());
    }
}

// The CPU model that schedule records are keyed by names cpuid's family and model, as the kernel's
// /proc/cpuinfo prints them: VMs that show every EPYC as "AMD EPYC" still tell Zen 3, 4 and 5 apart.
TEST(HostCpu, ModelNamesFamilyAndModelAsProcCpuinfo) {
    if (host_cpu().arch != CpuArch::X86_64) GTEST_SKIP() << "x86 check";
    std::ifstream info("/proc/cpuinfo");
    if (!info) GTEST_SKIP() << "no /proc/cpuinfo";
    std::string line, family, model;
    const auto value = [](const std::string &l) {
        const auto colon = l.find(": ");
        return colon == std::string::npos ? std::string() : l.substr(colon + 2);
    };
    while (std::getline(info, line) && (family.empty() || model.empty())) {
        if (line.rfind("cpu family", 0) == 0) family = value(line);
        if (line.rfind("model\t", 0) == 0) model = value(line);
    }
    ASSERT_FALSE(family.empty());
    ASSERT_FALSE(model.empty());
    const std::string expected = "(family " + family + " model " + model + ")";
    const std::string &name = host_cpu().model;
    ASSERT_GE(name.size(), expected.size());
    EXPECT_EQ(name.substr(name.size() - expected.size()), expected) << name;
}

// Only Zen 4 (AMD family 25 with AVX-512) runs 512-bit FMAs as two halves; Zen 3 (family 25
// without AVX-512), Zen 5 and Intel do not. The host's flag follows the same rule.
TEST(HostCpu, SplitsWideFmaOnlyOnAmdFamily25WithAvx512) {
    EXPECT_TRUE(splits_wide_fma("AuthenticAMD", 25, true));
    EXPECT_FALSE(splits_wide_fma("AuthenticAMD", 25, false));
    EXPECT_FALSE(splits_wide_fma("AuthenticAMD", 26, true));
    EXPECT_FALSE(splits_wide_fma("GenuineIntel", 6, true));
    EXPECT_FALSE(splits_wide_fma("GenuineIntel", 25, true));
    if (!host_cpu().has("avx512f")) {
        EXPECT_FALSE(host_cpu().splits_wide_fma);
    }
    if (host_cpu().model.find("(family 26 ") != std::string::npos) {
        EXPECT_FALSE(host_cpu().splits_wide_fma);
    }
    if (host_cpu().model.find("(family 25 ") != std::string::npos && host_cpu().has("avx512f")) {
        EXPECT_TRUE(host_cpu().splits_wide_fma) << host_cpu().model;  // an AMD family 25 (Intel has family 6)
    }
}

TEST(LoadKernel, FallsBackToTheLinkedJit) {
    ASSERT_TRUE(jit_available());  // this test links convgen_jit
    const LayerSpec spec = parse_layer_spec("conv c1=6 c2=10 h=9 w=7 k=3 g=2 act=silu");
    EXPECT_TRUE(aot_variants(spec).empty());
    const auto kernel = load_kernel(spec);
    EXPECT_EQ(kernel->info().origin, "jit");
    const RawWeights raw = random_raw_weights(spec, 3);
    const Tensor input = random_input(spec, 4);
    double err = 0;
    EXPECT_TRUE(within_tolerance(reference_forward(spec, raw, input), kernel->run(input, fold_batchnorm(spec, raw)), &err))
        << err;
    EXPECT_NE(explain_kernel_choice(spec).find("chosen:   JIT"), std::string::npos) << explain_kernel_choice(spec);
}

TEST(LoadKernel, WithoutJitOrAotIsAClearError) {
    const LayerSpec spec = parse_layer_spec("dwconv c1=8 c2=16 h=5 w=5 k=3");
    set_jit_provider(nullptr);
    try {
        load_kernel(spec);
        ADD_FAILURE() << "no error";
    } catch (const Error &e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("no kernel for 'dwconv"), std::string::npos) << m;
        EXPECT_NE(m.find("convgen_add_kernels"), std::string::npos) << m;
    }
    EXPECT_NE(explain_kernel_choice(spec).find("the JIT is not linked"), std::string::npos);
    EXPECT_THROW(load_aot_variant(spec, kAvx2), Error);
    set_jit_provider([](const LayerSpec &s) { return jit_compile(s).kernel; });
    EXPECT_TRUE(jit_available());
    EXPECT_THROW(load_kernel(parse_layer_spec("conv c1=6 c2=4 h=5 w=5 k=3 g=4")), Error);  // invalid spec
}

}  // namespace
}  // namespace convgen
