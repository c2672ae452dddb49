// Host CPU detection and matching of Halide target strings against it, without libHalide (an
// AOT-only app links no LLVM): x86 via cpuid/xgetbv, ARM64 via getauxval(AT_HWCAP).
#pragma once

#include <set>
#include <string>
#include <vector>

namespace convgen {

enum class CpuArch { X86_64, ARM64, Other };

struct HostCpu {
    CpuArch arch = CpuArch::Other;
    std::set<std::string> features;  // lower-case names: sse41 avx avx2 fma f16c avx512f ... / asimd asimddp ...
    std::string model;               // e.g. "AMD EPYC 7B13 (family 25 model 1)"; empty when unknown
    // AVX-512 FMAs run as two 256-bit halves (see splits_wide_fma below).
    bool splits_wide_fma = false;

    bool has(const std::string &f) const { return features.count(f) != 0; }
};

// Whether a CPU runs 512-bit FMAs as two 256-bit halves, so that 8-lane vectors reach the same
// FLOP rate as 16-lane ones: AMD family 25 with AVX-512 (Zen 4; 12 independent FMA chains measured
// 116.4 GFLOP/s a core with ymm and with zmm). Zen 5 (family 26) and Intel's server parts do twice
// the work per 512-bit FMA; Intel parts with a single 512-bit unit are not told apart here.
bool splits_wide_fma(const std::string &cpuid_vendor, unsigned family, bool avx512f);

const HostCpu &host_cpu();  // detected once
HostCpu detect_host_cpu();
std::string cpu_arch_name(CpuArch a);

// The ISA levels convgen builds variants for, lowest first. CONVGEN_MAX_ISA names one of them.
enum class IsaLevel { Baseline = 0, SSE41 = 1, AVX2 = 2, AVX512 = 3, NEON = 4 };
const char *isa_level_name(IsaLevel level);
// Parses a CONVGEN_MAX_ISA value (avx512 | avx2 | sse41 | baseline | neon); throws convgen::Error.
IsaLevel parse_isa_level(const std::string &text);

// What a Halide target string (e.g. "x86-64-linux-avx-avx2-f16c-fma-sse41") needs from a CPU.
struct TargetRequirements {
    CpuArch arch = CpuArch::Other;
    std::string os;
    std::vector<std::string> cpu_features;  // host feature names, as in HostCpu::features
    std::vector<std::string> unknown;       // target features convgen cannot check (never runnable)
    IsaLevel level = IsaLevel::Baseline;
};
// Throws convgen::Error for text that is not arch-bits-os[-features].
TargetRequirements target_requirements(const std::string &target);

// Empty when `cpu` can run code built for `target`; otherwise why not ("lacks avx512f, avx512bw").
std::string why_not_runnable(const TargetRequirements &target, const HostCpu &cpu);

}  // namespace convgen
