// convgen_generator: Halide Generators for convgen's two layer types, specialised per spec (every
// size a compile-time constant), plus the step that writes an AOT kernel library's registration
// source. The CMake helper convgen_add_kernels (cmake/ConvgenKernels.cmake) drives it:
//
//   convgen_generator -g convgen_conv -f NAME -o DIR -e object target=T "spec=conv c1:64 ..." ["schedule=vec:8 ..."]
//   convgen_generator -g convgen_dwconv ...                      (the same for dwconv specs)
//   convgen_generator -r NAME_runtime -o DIR -e object target=T  (the library's one Halide runtime)
//   convgen_generator --registry MANIFEST OUT.cc LIBRARY         (the registration source)
//
// A MANIFEST line is `function<TAB>target<TAB>spec<TAB>schedule database` (database empty: the heuristic).
// Both paths resolve the schedule with resolve_schedule(), so the registry records exactly the
// parameters the kernel was generated with.
#include <Halide.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "dsl/algorithms.h"
#include "dsl/layer_spec.h"
#include "runtime/errors.h"
#include "schedules/default_schedules.h"
#include "schedules/schedule_db.h"
#include "schedules/schedule_params.h"

namespace convgen {
namespace {

// GenGen splits each generator argument at '=' and rejects more than one, so spec and schedule
// text is passed with ':' for '=' ("spec=conv c1:64 c2:64 ..."); both spellings are accepted.
std::string from_generator_param(std::string text) {
    for (char &ch : text) {
        if (ch == ':') ch = '=';
    }
    return text;
}

// An explicit schedule wins; else the schedule database's record for this spec and target (or its
// nearest tuned neighbour, see schedules/schedule_db.h); else the heuristic. AOT kernels run at
// any thread count: records measured closest to one thread are preferred.
ScheduleLookup resolve_schedule(const LayerSpec &spec, const std::string &schedule_text, const std::string &schedule_db,
                                const Halide::Target &target) {
    if (!schedule_text.empty()) {
        ScheduleLookup given;
        given.params = ScheduleParams::parse(from_generator_param(schedule_text));
        given.source = ScheduleSource::Given;
        return given;
    }
    const std::string target_text = target.without_feature(Halide::Target::NoRuntime).to_string();
    if (schedule_db.empty()) return lookup_schedule(nullptr, "", spec, target_text, isa_family_of(target), 1);
    const ScheduleDb db = ScheduleDb::load(schedule_db);
    return lookup_schedule(&db, schedule_db, spec, target_text, isa_family_of(target), 1);
}

LayerSpec parse_spec_param(const std::string &text, LayerKind expected, const char *generator) {
    if (text.empty()) throw Error(std::string(generator) + ": the generator parameter spec=\"...\" is required");
    LayerSpec spec = parse_layer_spec(from_generator_param(text));
    if (spec.kind != expected) {
        throw Error(std::string(generator) + ": spec '" + spec.to_string() + "' is not a " +
                    (expected == LayerKind::Conv ? "conv" : "dwconv") + " layer");
    }
    return spec;
}

// What both generators share: the generator params, the output, and turning the spec into the
// algorithm (generate) and the schedule (schedule). Derived classes declare their Inputs, in the
// kernel argument order of dsl/algorithms.h.
template <typename Derived>
class LayerGenerator : public Halide::Generator<Derived> {
public:
    Halide::GeneratorParam<std::string> spec{"spec", ""};
    Halide::GeneratorParam<std::string> schedule_params{"schedule", ""};  // ScheduleParams text; empty: see resolve_schedule
    Halide::GeneratorParam<std::string> schedule_db{"schedule_db", ""};    // schedule database path, or empty

    Halide::GeneratorOutput<Halide::Buffer<float>> output{"output", 4};

    void schedule() { apply_schedule(alg_, params_, this->get_target()); }

protected:
    // A bad spec throws convgen::Error out of the generator; main() prints it as one line.
    void define(LayerKind kind, const char *generator, const AlgorithmInputs &inputs) {
        const LayerSpec s = parse_spec_param(spec, kind, generator);
        params_ = resolve_schedule(s, schedule_params, schedule_db, this->get_target()).params;
        alg_ = define_algorithm(s, weight_layout_for(s, params_), inputs, output_transpose_for(s, params_));
        output = alg_.output;
    }

private:
    LayerAlgorithm alg_;
    ScheduleParams params_;
};

// conv: input, weight, bias -> output.
class ConvGenerator : public LayerGenerator<ConvGenerator> {
public:
    Input<Buffer<float>> input{"input", 4};
    Input<Buffer<float>> weight{"weight", 4};
    Input<Buffer<float>> bias{"bias", 1};

    void generate() {
        AlgorithmInputs in;
        in.input = input;
        in.weight = weight;
        in.bias = bias;
        define(LayerKind::Conv, "convgen_conv", in);
    }
};

// dwconv: input, dw_weight, dw_bias, pw_weight, pw_bias -> output, depthwise fused into pointwise.
class DepthwisePointwiseGenerator : public LayerGenerator<DepthwisePointwiseGenerator> {
public:
    Input<Buffer<float>> input{"input", 4};
    Input<Buffer<float>> dw_weight{"dw_weight", 3};
    Input<Buffer<float>> dw_bias{"dw_bias", 1};
    Input<Buffer<float>> pw_weight{"pw_weight", 2};
    Input<Buffer<float>> pw_bias{"pw_bias", 1};

    void generate() {
        AlgorithmInputs in;
        in.input = input;
        in.weight = dw_weight;
        in.bias = dw_bias;
        in.pw_weight = pw_weight;
        in.pw_bias = pw_bias;
        define(LayerKind::DepthwisePointwise, "convgen_dwconv", in);
    }
};

std::vector<std::string> split_tabs(const std::string &line) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream is(line);
    while (std::getline(is, field, '\t')) fields.push_back(field);
    if (!line.empty() && line.back() == '\t') fields.push_back("");
    return fields;
}

bool is_c_identifier(const std::string &s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    for (char ch : s) {
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') return false;
    }
    return true;
}

std::string c_string(const std::string &s) {
    std::string out = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch;
    }
    return out + "\"";
}

// A C++ expression for `l` in the generated registration source.
std::string weight_layout_cpp(const WeightLayout &l) {
    switch (l.order) {
    case WeightLayout::Order::PyTorch: return "convgen::WeightLayout::PyTorch";
    case WeightLayout::Order::ChannelsInnermost: return "convgen::WeightLayout::ChannelsInnermost";
    case WeightLayout::Order::OutputBlocked: return "convgen::WeightLayout::output_blocked(" + std::to_string(l.block) + ")";
    }
    throw Error("unknown weight layout");
}

int write_registry(const std::string &manifest_path, const std::string &out_path, const std::string &library) {
    if (!is_c_identifier(library)) throw Error("library name '" + library + "' is not a C identifier");
    std::ifstream manifest(manifest_path);
    if (!manifest) throw Error("cannot read manifest '" + manifest_path + "'");
    std::ostringstream decls, records;
    std::string line;
    int count = 0, line_no = 0;
    while (std::getline(manifest, line)) {
        ++line_no;
        if (line.empty()) continue;
        const std::vector<std::string> f = split_tabs(line);
        const std::string where = manifest_path + ":" + std::to_string(line_no);
        if (f.size() != 4) throw Error(where + ": expected 4 tab-separated fields, got " + std::to_string(f.size()));
        if (!is_c_identifier(f[0])) throw Error(where + ": function name '" + f[0] + "' is not a C identifier");
        if (!Halide::Target::validate_target_string(f[1])) throw Error(where + ": '" + f[1] + "' is not a Halide target");
        const Halide::Target target(f[1]);
        const LayerSpec spec = parse_layer_spec(f[2]);
        const ScheduleLookup lookup = resolve_schedule(spec, "", f[3], target);
        const ScheduleParams &params = lookup.params;
        const std::string source = std::string(schedule_source_name(lookup.source)) + (lookup.detail.empty() ? "" : ": " + lookup.detail);
        const WeightLayout layout = weight_layout_for(spec, params);
        decls << "extern \"C\" int " << f[0] << "_argv(void **args);\n";
        records << "    {" << c_string(spec.name) << ", " << c_string(spec.to_string()) << ",\n     " << c_string(target.to_string())
                << ",\n     " << c_string(params.to_string()) << ",\n     " << c_string(source) << ",\n     "
                << weight_layout_cpp(layout)
                << ", " << f[0] << "_argv},\n";
        ++count;
    }
    if (count == 0) throw Error("manifest '" + manifest_path + "' lists no kernels");
    std::ostringstream os;
    os << "// Generated by convgen_generator --registry from " << manifest_path << "; do not edit.\n"
       << "// Registers this library's " << count << " AOT kernels with the convgen runtime at start-up.\n"
       << "#include <HalideRuntime.h>\n\n#include \"runtime/kernel_allocator.h\"\n#include \"runtime/registry.h\"\n\n"
       << decls.str() << "\nnamespace {\n\nconst convgen::AotKernelRecord kKernels[] = {\n"
       << records.str() << "};\n\n"
       << "const bool kRegistered = convgen::register_aot_kernels(\"" << library << "\", kKernels, "
       << count << ", &halide_set_num_threads);\n\n"
       << "// The kernels' scratch buffers come from convgen's allocator (runtime/kernel_allocator.h).\n"
       << "const bool kAllocatorSet = (halide_set_custom_malloc(&convgen::kernel_malloc), halide_set_custom_free(&convgen::kernel_free), true);\n\n"
       << "}  // namespace\n\n"
       << "// The library's link anchor: consumers link with -Wl,--undefined=<this> so the static\n"
       << "// linker keeps this object (and through it every kernel) although nothing calls them by name.\n"
       << "extern \"C\" int convgen_kernels_" << library << "_anchor() { return kRegistered && kAllocatorSet ? " << count << " : 0; }\n";
    const std::string tmp = out_path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << os.str();
        if (!out) throw Error("cannot write '" + tmp + "'");
    }
    if (std::rename(tmp.c_str(), out_path.c_str()) != 0) throw Error("cannot rename '" + tmp + "' to '" + out_path + "'");
    return 0;
}

}  // namespace
}  // namespace convgen

HALIDE_REGISTER_GENERATOR(convgen::ConvGenerator, convgen_conv)
HALIDE_REGISTER_GENERATOR(convgen::DepthwisePointwiseGenerator, convgen_dwconv)

int main(int argc, char **argv) {
    if (argc >= 2 && std::string(argv[1]) == "--registry") {
        if (argc != 5) {
            std::cerr << "usage: convgen_generator --registry MANIFEST OUT.cc LIBRARY\n";
            return 2;
        }
        try {
            return convgen::write_registry(argv[2], argv[3], argv[4]);
        } catch (const std::exception &e) {
            std::cerr << "convgen_generator: error: " << e.what() << "\n";
            return 2;
        }
    }
    try {
        return Halide::Internal::generate_filter_main(argc, argv, std::cerr);
    } catch (const std::exception &e) {
        std::cerr << "convgen_generator: error: " << e.what() << "\n";
        return 2;
    }
}
