#include "runtime/cpu.h"

#include <fstream>
#include <map>
#include <sstream>

#include "runtime/errors.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace convgen {

namespace {

#if defined(__x86_64__)
uint64_t xgetbv0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}

void detect_x86(HostCpu &cpu) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    // Display family and model as Linux's /proc/cpuinfo prints them: the extended fields count
    // only for family 15 (family) and families 6 and 15+ (model).
    const unsigned base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
    const unsigned family = base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family;
    const unsigned model_number = (base_family == 6 || base_family == 0xf) ? base_model | (((a >> 16) & 0xf) << 4) : base_model;
    const bool sse41 = c & bit_SSE4_1, fma = c & bit_FMA, f16c = c & bit_F16C, avx = c & bit_AVX;
    const bool osxsave = c & bit_OSXSAVE;
    if (sse41) cpu.features.insert("sse41");
    // AVX state must be enabled by the OS (XCR0 bits 1-2), not just present in the CPU.
    const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    const bool os_avx = (xcr0 & 0x6) == 0x6;
    const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;
    if (avx && os_avx) {
        cpu.features.insert("avx");
        if (fma) cpu.features.insert("fma");
        if (f16c) cpu.features.insert("f16c");
    }
    if (__get_cpuid_max(0, nullptr) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        const unsigned max_subleaf = a;
        if (os_avx && (b & bit_AVX2)) cpu.features.insert("avx2");
        if (os_avx512) {
            const std::pair<unsigned, const char *> avx512[] = {
                {bit_AVX512F, "avx512f"}, {bit_AVX512CD, "avx512cd"}, {bit_AVX512BW, "avx512bw"},
                {bit_AVX512DQ, "avx512dq"}, {bit_AVX512VL, "avx512vl"}};
            for (auto [bit, name] : avx512) {
                if (b & bit) cpu.features.insert(name);
            }
            // What code for avx512_cannonlake (IFMA, VBMI) and avx512_sapphirerapids (AVX-VNNI
            // and AVX512-BF16, leaf 7 subleaf 1) may use. Halide 14's host target asks for
            // AVX512-VNNI instead of AVX-VNNI and so gives sapphirerapids to a Zen 4, whose
            // kernels then die on a VEX vpdpwssd: the JIT's host target drops it (jit_host_target).
            if (b & bit_AVX512IFMA) cpu.features.insert("avx512ifma");
            if (c & bit_AVX512VBMI) cpu.features.insert("avx512vbmi");
            if (max_subleaf >= 1) {
                __cpuid_count(7, 1, a, b, c, d);
                if (a & (1u << 4)) cpu.features.insert("avxvnni");
                if (a & (1u << 5)) cpu.features.insert("avx512bf16");
            }
        }
    }
    unsigned vendor[3] = {};
    __get_cpuid(0, &a, &vendor[0], &vendor[2], &vendor[1]);
    cpu.splits_wide_fma = splits_wide_fma(std::string(reinterpret_cast<const char *>(vendor), 12), family, cpu.has("avx512f"));
    // Brand string (cpuid leaves 0x80000002..4), e.g. "AMD EPYC 7B13 64-Core Processor".
    if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000004) {
        char brand[49] = {};
        for (unsigned leaf = 0; leaf < 3; ++leaf) {
            __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
            unsigned regs[4] = {a, b, c, d};
            for (int r = 0; r < 4; ++r) {
                for (int i = 0; i < 4; ++i) brand[leaf * 16 + r * 4 + i] = char((regs[r] >> (8 * i)) & 0xff);
            }
        }
        std::string model(brand);
        const auto first = model.find_first_not_of(' '), last = model.find_last_not_of(' ');
        cpu.model = first == std::string::npos ? "" : model.substr(first, last - first + 1);
    }
    // VMs often hide the brand string's model number ("AMD EPYC" for Zen 3, 4 and 5 alike): the
    // family and model tell CPUs apart whose tuned schedules differ.
    cpu.model += (cpu.model.empty() ? "" : " ") + ("(family " + std::to_string(family) + " model " +
                                                    std::to_string(model_number) + ")");
}
#endif

#if defined(__aarch64__)
void detect_arm64(HostCpu &cpu) {
    const unsigned long hwcap = getauxval(AT_HWCAP);
    // Bit numbers from the kernel's uapi asm/hwcap.h (stable ABI).
    const std::pair<unsigned long, const char *> bits[] = {
        {1ul << 1, "asimd"}, {1ul << 9, "asimdhp"}, {1ul << 20, "asimddp"}, {1ul << 22, "sve"}};
    for (auto [bit, name] : bits) {
        if (hwcap & bit) cpu.features.insert(name);
    }
    std::ifstream info("/proc/cpuinfo");
    std::string line;
    while (std::getline(info, line)) {
        if (line.rfind("CPU part", 0) == 0) {
            cpu.model = "ARM64 (" + line + ")";
            break;
        }
    }
}
#endif

struct FeatureNeed {
    CpuArch arch;
    std::vector<const char *> needs;  // host features
    IsaLevel level;
};

// Halide 14 target feature -> host CPU features it needs. Features that do not change the
// instructions (jit, no_runtime, strict_float, ...) need nothing.
const std::map<std::string, FeatureNeed> &feature_table() {
    // Each AVX-512 level needs the one below it plus its own extensions.
    using Features = std::vector<const char *>;
    const auto plus = [](Features base, const Features &more) {
        base.insert(base.end(), more.begin(), more.end());
        return base;
    };
    static const Features skylake = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"};
    static const Features cannonlake = plus(skylake, {"avx512ifma", "avx512vbmi"});
    static const std::map<std::string, FeatureNeed> table = {
        {"sse41", {CpuArch::X86_64, {"sse41"}, IsaLevel::SSE41}},
        {"avx", {CpuArch::X86_64, {"avx"}, IsaLevel::SSE41}},
        {"avx2", {CpuArch::X86_64, {"avx2"}, IsaLevel::AVX2}},
        {"fma", {CpuArch::X86_64, {"fma"}, IsaLevel::AVX2}},
        {"f16c", {CpuArch::X86_64, {"f16c"}, IsaLevel::SSE41}},
        {"avx512", {CpuArch::X86_64, {"avx512f", "avx512cd"}, IsaLevel::AVX512}},
        {"avx512_skylake", {CpuArch::X86_64, skylake, IsaLevel::AVX512}},
        {"avx512_cannonlake", {CpuArch::X86_64, cannonlake, IsaLevel::AVX512}},
        {"avx512_sapphirerapids", {CpuArch::X86_64, plus(cannonlake, {"avxvnni", "avx512bf16"}), IsaLevel::AVX512}},
        {"arm_dot_prod", {CpuArch::ARM64, {"asimddp"}, IsaLevel::NEON}},
        {"arm_fp16", {CpuArch::ARM64, {"asimdhp"}, IsaLevel::NEON}},
        {"sve", {CpuArch::ARM64, {"sve"}, IsaLevel::NEON}},
    };
    return table;
}

bool feature_needs_nothing(const std::string &f) {
    static const std::set<std::string> neutral = {"jit", "no_runtime", "no_asserts", "no_bounds_query", "strict_float",
                                                  "large_buffers", "trace_loads", "trace_stores", "trace_realizations",
                                                  "trace_pipeline", "debug", "profile", "user_context",
                                                  "embed_bitcode", "disable_llvm_loop_opt", "enable_llvm_loop_opt"};
    return neutral.count(f) != 0;
}

}  // namespace

std::string cpu_arch_name(CpuArch a) {
    switch (a) {
    case CpuArch::X86_64: return "x86-64";
    case CpuArch::ARM64: return "arm-64";
    case CpuArch::Other: return "other";
    }
    return "other";
}

HostCpu detect_host_cpu() {
    HostCpu cpu;
#if defined(__x86_64__)
    cpu.arch = CpuArch::X86_64;
    detect_x86(cpu);
#elif defined(__aarch64__)
    cpu.arch = CpuArch::ARM64;
    detect_arm64(cpu);
#endif
    return cpu;
}

bool splits_wide_fma(const std::string &cpuid_vendor, unsigned family, bool avx512f) {
    return cpuid_vendor == "AuthenticAMD" && family == 25 && avx512f;
}

const HostCpu &host_cpu() {
    static const HostCpu cpu = detect_host_cpu();
    return cpu;
}

const char *isa_level_name(IsaLevel level) {
    switch (level) {
    case IsaLevel::Baseline: return "baseline";
    case IsaLevel::SSE41: return "sse41";
    case IsaLevel::AVX2: return "avx2";
    case IsaLevel::AVX512: return "avx512";
    case IsaLevel::NEON: return "neon";
    }
    return "?";
}

IsaLevel parse_isa_level(const std::string &text) {
    for (IsaLevel l : {IsaLevel::Baseline, IsaLevel::SSE41, IsaLevel::AVX2, IsaLevel::AVX512, IsaLevel::NEON}) {
        if (text == isa_level_name(l)) return l;
    }
    throw Error("CONVGEN_MAX_ISA='" + text + "' is not one of avx512, avx2, sse41, baseline, neon");
}

TargetRequirements target_requirements(const std::string &target) {
    std::vector<std::string> parts;
    std::istringstream is(target);
    for (std::string p; std::getline(is, p, '-');) parts.push_back(p);
    if (parts.size() < 3) throw Error("'" + target + "' is not a Halide target string (arch-bits-os[-features])");
    TargetRequirements req;
    if (parts[0] == "x86" && parts[1] == "64") {
        req.arch = CpuArch::X86_64;
    } else if (parts[0] == "arm" && parts[1] == "64") {
        req.arch = CpuArch::ARM64;
        req.level = IsaLevel::NEON;  // Advanced SIMD is part of every ARMv8-A CPU
    } else {
        req.arch = CpuArch::Other;
    }
    req.os = parts[2];
    for (size_t i = 3; i < parts.size(); ++i) {
        // Halide feature names contain '_' but never '-', except avx512 variants spelled avx512_x.
        const std::string &f = parts[i];
        auto it = feature_table().find(f);
        if (it != feature_table().end()) {
            if (it->second.arch != req.arch) {
                req.unknown.push_back(f);
                continue;
            }
            for (const char *need : it->second.needs) req.cpu_features.push_back(need);
            if (it->second.level > req.level) req.level = it->second.level;
        } else if (!feature_needs_nothing(f)) {
            req.unknown.push_back(f);
        }
    }
    return req;
}

std::string why_not_runnable(const TargetRequirements &target, const HostCpu &cpu) {
    if (target.arch != cpu.arch) return "built for " + cpu_arch_name(target.arch) + ", host is " + cpu_arch_name(cpu.arch);
    if (target.os != "linux") return "built for OS '" + target.os + "'";
    std::string missing;
    std::set<std::string> seen;
    for (const auto &f : target.cpu_features) {
        if (!cpu.has(f) && seen.insert(f).second) missing += (missing.empty() ? "" : ", ") + f;
    }
    if (!missing.empty()) return "host lacks " + missing;
    if (!target.unknown.empty()) {
        std::string u;
        for (const auto &f : target.unknown) u += (u.empty() ? "" : ", ") + f;
        return "needs target features convgen cannot check on this host (" + u + ")";
    }
    return "";
}

}  // namespace convgen
