#include "runtime/registry.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <sstream>

#include "runtime/errors.h"
#include "runtime/memory_budget.h"

namespace convgen {

namespace {

struct Registry {
    std::mutex mutex;
    std::vector<AotVariant> variants;
    std::vector<int (*)(int)> thread_setters;
};

// Function-local: registration runs from other objects' static initialisers.
Registry &registry() {
    static Registry r;
    return r;
}

std::atomic<JitProvider> g_jit_provider{nullptr};

bool verbose() {
    const char *v = std::getenv("CONVGEN_VERBOSE");
    return v && *v && std::string(v) != "0";
}

std::string cap_text(std::optional<IsaLevel> cap) {
    return cap ? std::string("CONVGEN_MAX_ISA=") + isa_level_name(*cap) : "CONVGEN_MAX_ISA unset";
}

std::string host_text() {
    const HostCpu &cpu = host_cpu();
    std::string features;
    for (const auto &f : cpu.features) features += (features.empty() ? "" : " ") + f;
    return cpu_arch_name(cpu.arch) + (cpu.model.empty() ? "" : " " + cpu.model) + " [" + features + "]";
}

std::shared_ptr<const Kernel> make_aot_kernel(const AotVariant &v) {
    KernelInfo info{parse_layer_spec(v.spec), v.target, v.schedule, "aot", v.weight_layout};
    info.spec.name = v.name;
    return std::make_shared<const Kernel>(v.entry, std::move(info), nullptr);
}

}  // namespace

bool register_aot_kernels(const char *library, const AotKernelRecord *records, size_t count, int (*set_num_threads)(int)) {
    std::vector<AotVariant> added;
    for (size_t i = 0; i < count; ++i) {
        AotVariant v;
        v.library = library;
        v.name = records[i].name;
        v.spec = records[i].spec;
        v.target = records[i].target;
        v.schedule = records[i].schedule;
        v.schedule_source = records[i].schedule_source;
        v.weight_layout = records[i].weight_layout;
        v.entry = records[i].entry;
        // Unparseable records cannot come from convgen_generator; keep them, marked unusable.
        try {
            const TargetRequirements req = target_requirements(v.target);
            v.level = req.level;
            v.not_runnable = why_not_runnable(req, host_cpu());
        } catch (const Error &e) {
            v.not_runnable = e.what();
        }
        added.push_back(std::move(v));
    }
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto &v : added) {
        bool duplicate = false;  // the same library linked twice (e.g. into two shared objects)
        for (const auto &old : r.variants) duplicate |= old.spec == v.spec && old.target == v.target;
        if (!duplicate) r.variants.push_back(std::move(v));
    }
    if (set_num_threads) r.thread_setters.push_back(set_num_threads);
    return true;
}

std::vector<AotVariant> aot_variants(const LayerSpec &spec) {
    const std::string key = spec.to_string();
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::vector<AotVariant> out;
    for (const auto &v : r.variants) {
        if (v.spec == key) out.push_back(v);
    }
    return out;
}

std::vector<LayerSpec> aot_specs() {
    std::vector<std::pair<std::string, std::string>> specs;  // (normalised spec, name)
    {
        Registry &r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        for (const auto &v : r.variants) {
            bool seen = false;
            for (const auto &s : specs) seen |= s.first == v.spec;
            if (!seen) specs.emplace_back(v.spec, v.name);
        }
    }
    std::vector<LayerSpec> out;
    for (const auto &[text, name] : specs) {
        out.push_back(parse_layer_spec(text));
        out.back().name = name;
    }
    return out;
}

VariantChoice choose_variant(const std::vector<AotVariant> &variants, std::optional<IsaLevel> cap) {
    VariantChoice choice;
    std::string skipped;
    for (size_t i = 0; i < variants.size(); ++i) {
        const AotVariant &v = variants[i];
        std::string why = v.not_runnable;
        if (why.empty() && cap && v.level > *cap) why = std::string("above ") + cap_text(cap);
        if (!why.empty()) {
            skipped += "; skipped " + v.target + " (" + why + ")";
            continue;
        }
        if (choice.index < 0 || v.level > variants[choice.index].level) choice.index = static_cast<int>(i);
    }
    if (choice.index >= 0) {
        const AotVariant &v = variants[choice.index];
        choice.explanation = std::string("AOT variant ") + v.target + " (ISA " + isa_level_name(v.level) + ", from library " +
                             v.library + "): the highest level this host runs, " + cap_text(cap) + skipped;
    } else {
        choice.explanation = "no usable AOT variant (" + std::to_string(variants.size()) + " registered" + skipped + ")";
    }
    return choice;
}

std::optional<IsaLevel> max_isa_from_env() {
    const char *v = std::getenv("CONVGEN_MAX_ISA");
    if (!v || !*v) return std::nullopt;
    return parse_isa_level(v);
}

void set_jit_provider(JitProvider provider) { g_jit_provider = provider; }

bool jit_available() { return g_jit_provider.load() != nullptr; }

std::shared_ptr<const Kernel> load_kernel(const LayerSpec &spec) {
    validate(spec);
    check_memory_budget(spec);
    const std::vector<AotVariant> variants = aot_variants(spec);
    const VariantChoice choice = choose_variant(variants, max_isa_from_env());
    if (choice.index >= 0) {
        if (verbose()) std::cerr << "convgen: " << spec.to_string() << ": " << choice.explanation << "\n";
        return make_aot_kernel(variants[choice.index]);
    }
    if (JitProvider jit = g_jit_provider.load()) {
        if (verbose()) std::cerr << "convgen: " << spec.to_string() << ": JIT (" << choice.explanation << ")\n";
        return jit(spec);
    }
    throw Error("no kernel for '" + spec.to_string() + "': " + choice.explanation +
                "; add the layer to the app's convgen_add_kernels(... LAYERS ...) list, or link convgen_jit to compile it at run time");
}

std::shared_ptr<const Kernel> load_aot_variant(const LayerSpec &spec, const std::string &target) {
    validate(spec);
    for (const auto &v : aot_variants(spec)) {
        if (v.target != target) continue;
        if (!v.not_runnable.empty()) throw Error("AOT variant " + target + " of '" + spec.to_string() + "' cannot run here: " + v.not_runnable);
        return make_aot_kernel(v);
    }
    throw Error("no AOT variant " + target + " is registered for '" + spec.to_string() + "'");
}

std::string explain_kernel_choice(const LayerSpec &spec) {
    validate(spec);
    const std::vector<AotVariant> variants = aot_variants(spec);
    const std::optional<IsaLevel> cap = max_isa_from_env();
    const VariantChoice choice = choose_variant(variants, cap);
    std::ostringstream os;
    os << "spec:     " << spec.to_string() << "\n";
    os << "host:     " << host_text() << "\n";
    os << "cap:      " << cap_text(cap) << "\n";
    for (const auto &v : variants) {
        os << "variant:  " << v.target << " (" << isa_level_name(v.level) << ", " << v.library << ") "
           << (v.not_runnable.empty() ? "runnable" : "not runnable: " + v.not_runnable) << "\n";
        os << "          schedule " << v.schedule << " (" << v.schedule_source << "), weights " << weight_layout_name(v.weight_layout) << "\n";
    }
    if (choice.index >= 0) {
        os << "chosen:   " << choice.explanation << "\n";
    } else if (jit_available()) {
        os << "chosen:   JIT (" << choice.explanation << ")\n";
    } else {
        os << "chosen:   nothing: " << choice.explanation << " and the JIT is not linked\n";
    }
    return os.str();
}

void set_aot_num_threads(int threads) {
    if (threads < 0) throw Error("thread count must be >= 0 (got " + std::to_string(threads) + ")");
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto setter : r.thread_setters) setter(threads);
}

}  // namespace convgen
