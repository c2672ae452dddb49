#include "dsl/layer_spec.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "runtime/errors.h"
#include "runtime/tensor.h"

namespace convgen {

namespace {

struct ActivationName {
    Activation act;
    const char *name;
};

const ActivationName kActivationNames[] = {
    {Activation::Identity, "identity"}, {Activation::Relu, "relu"},         {Activation::Relu6, "relu6"},
    {Activation::Leaky, "leaky"},       {Activation::Silu, "silu"},         {Activation::Gelu, "gelu"},
    {Activation::GeluTanh, "gelu_tanh"}, {Activation::Hardswish, "hardswish"}, {Activation::Sigmoid, "sigmoid"},
    {Activation::Tanh, "tanh"},
};

std::string activation_list() {
    std::string s;
    for (const auto &a : kActivationNames) {
        if (!s.empty()) s += ", ";
        s += a.name;
    }
    return s;
}

// Decimal integers only: no sign games, no trailing junk, no silent truncation.
int parse_int_field(const std::string &key, const std::string &value) {
    if (value.empty()) throw Error("spec field '" + key + "' has an empty value");
    size_t i = 0;
    bool negative = false;
    if (value[0] == '-' || value[0] == '+') {
        negative = value[0] == '-';
        i = 1;
    }
    if (i == value.size()) throw Error("spec field '" + key + "': '" + value + "' is not an integer");
    int64_t v = 0;
    for (; i < value.size(); ++i) {
        char c = value[i];
        if (c < '0' || c > '9') throw Error("spec field '" + key + "': '" + value + "' is not an integer");
        v = v * 10 + (c - '0');
        if (v > std::numeric_limits<int32_t>::max()) {
            throw Error("spec field '" + key + "': " + value + " is out of range (must fit in 32 bits)");
        }
    }
    return static_cast<int>(negative ? -v : v);
}

float parse_float_field(const std::string &key, const std::string &value) {
    if (value.empty()) throw Error("spec field '" + key + "' has an empty value");
    errno = 0;
    char *end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    if (end != value.c_str() + value.size() || errno == ERANGE) {
        throw Error("spec field '" + key + "': '" + value + "' is not a number");
    }
    if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
        throw Error("spec field '" + key + "': '" + value + "' is not a finite float32 number");
    }
    return static_cast<float>(v);
}

bool parse_bool_field(const std::string &key, const std::string &value) {
    if (value == "1") return true;
    if (value == "0") return false;
    throw Error("spec field '" + key + "': '" + value + "' must be 0 or 1");
}

Activation parse_activation_field(const std::string &key, const std::string &value) {
    Activation a;
    if (!parse_activation(value, &a)) {
        throw Error("spec field '" + key + "': unknown activation '" + value + "' (known: " + activation_list() + ")");
    }
    return a;
}

// Shortest decimal text that reads back as the same float ("1e-05", not "9.99999975e-06").
std::string format_float(float v) {
    char buf[64];
    for (int precision = 1; precision <= 9; ++precision) {
        std::snprintf(buf, sizeof(buf), "%.*g", precision, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) break;
    }
    return buf;
}

std::vector<std::string> split_whitespace(const std::string &text) {
    std::vector<std::string> out;
    std::istringstream is(text);
    std::string tok;
    while (is >> tok) out.push_back(tok);
    return out;
}

}  // namespace

const char *activation_name(Activation a) {
    for (const auto &n : kActivationNames)
        if (n.act == a) return n.name;
    return "?";
}

bool parse_activation(const std::string &name, Activation *out) {
    for (const auto &n : kActivationNames) {
        if (name == n.name) {
            *out = n.act;
            return true;
        }
    }
    return false;
}

const std::vector<Activation> &all_activations() {
    static const std::vector<Activation> all = [] {
        std::vector<Activation> v;
        for (const auto &n : kActivationNames) v.push_back(n.act);
        return v;
    }();
    return all;
}

const char *layout_name(Layout l) { return l == Layout::NCHW ? "nchw" : "nhwc"; }
const char *kind_name(LayerKind k) { return k == LayerKind::Conv ? "conv" : "dwconv"; }

double apply_activation(Activation a, double x, double alpha) {
    switch (a) {
    case Activation::Identity: return x;
    // NaN propagates through relu and relu6, as in PyTorch.
    case Activation::Relu: return x < 0 ? 0.0 : x;
    case Activation::Relu6: return x < 0 ? 0.0 : (x > 6 ? 6.0 : x);
    case Activation::Leaky: return x >= 0 ? x : x * alpha;
    case Activation::Silu: return x / (1.0 + std::exp(-x));
    case Activation::Gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::GeluTanh: {
        const double c = std::sqrt(2.0 / M_PI);
        return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    }
    case Activation::Hardswish: return x * std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0;
    case Activation::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Activation::Tanh: return std::tanh(x);
    }
    return x;
}

std::vector<int64_t> LayerSpec::input_shape() const {
    if (layout == Layout::NCHW) return {n, c1, h, w};
    return {n, h, w, c1};
}

std::vector<int64_t> LayerSpec::output_shape() const {
    if (layout == Layout::NCHW) return {n, c2, out_h(), out_w()};
    return {n, out_h(), out_w(), c2};
}

int64_t LayerSpec::macs() const {
    const int64_t pixels = int64_t(n) * out_h() * out_w();
    if (kind == LayerKind::Conv) return pixels * c2 * (c1 / g) * k * k;
    return pixels * c1 * k * k + pixels * c2 * c1;
}

std::string LayerSpec::to_string() const {
    std::ostringstream os;
    os << kind_name(kind) << " n=" << n << " c1=" << c1 << " c2=" << c2 << " h=" << h << " w=" << w << " k=" << k
       << " s=" << s << " p=" << p;
    if (kind == LayerKind::Conv) os << " g=" << g;
    os << " act=" << activation_name(act);
    const bool uses_alpha = act == Activation::Leaky || (kind == LayerKind::DepthwisePointwise && dw_act == Activation::Leaky);
    if (uses_alpha) os << " alpha=" << format_float(alpha);
    os << " bn=" << (bn ? 1 : 0);
    if (kind == LayerKind::DepthwisePointwise) os << " dw_act=" << activation_name(dw_act) << " dw_bn=" << (dw_bn ? 1 : 0);
    if (bn || (kind == LayerKind::DepthwisePointwise && dw_bn)) os << " eps=" << format_float(eps);
    os << " layout=" << layout_name(layout);
    return os.str();
}

std::string LayerSpec::to_string_with_name() const {
    std::string s = to_string();
    if (name.empty()) return s;
    const size_t sp = s.find(' ');
    return s.substr(0, sp) + " name=" + name + s.substr(sp);
}

void validate(const LayerSpec &spec) {
    auto require_positive = [](const char *field, int v) {
        if (v < 1) throw Error(std::string("spec field '") + field + "' must be >= 1 (got " + std::to_string(v) + ")");
    };
    require_positive("n", spec.n);
    require_positive("c1", spec.c1);
    require_positive("c2", spec.c2);
    require_positive("h", spec.h);
    require_positive("w", spec.w);
    require_positive("k", spec.k);
    require_positive("s", spec.s);
    require_positive("g", spec.g);
    if (spec.p < 0) throw Error("spec field 'p' must be >= 0 (got " + std::to_string(spec.p) + ")");
    // 64-bit: k is only range-checked below, and k * 4 overflows int for k near INT32_MAX (fuzz_spec).
    if (spec.p >= int64_t(spec.k) * 4 + 64) {
        throw Error("spec field 'p': padding " + std::to_string(spec.p) + " is absurd for k=" + std::to_string(spec.k));
    }
    if (spec.k > 64) throw Error("spec field 'k': kernel size " + std::to_string(spec.k) + " is above the supported 64");
    if (spec.kind == LayerKind::Conv) {
        if (spec.c1 % spec.g != 0) {
            throw Error("spec field 'g': c1=" + std::to_string(spec.c1) + " is not divisible by g=" + std::to_string(spec.g));
        }
        if (spec.c2 % spec.g != 0) {
            throw Error("spec field 'g': c2=" + std::to_string(spec.c2) + " is not divisible by g=" + std::to_string(spec.g));
        }
    }
    if (!(spec.eps > 0.0f) || !std::isfinite(spec.eps)) throw Error("spec field 'eps' must be a positive number");
    if (!std::isfinite(spec.alpha)) throw Error("spec field 'alpha' must be finite");
    // Padded sizes in 64-bit so that huge h/p cannot overflow before the check.
    const int64_t padded_h = int64_t(spec.h) + 2 * int64_t(spec.p);
    const int64_t padded_w = int64_t(spec.w) + 2 * int64_t(spec.p);
    if (padded_h < spec.k || padded_w < spec.k) {
        throw Error("spec: output size below 1: kernel k=" + std::to_string(spec.k) + " is larger than the padded input " +
                    std::to_string(padded_h) + "x" + std::to_string(padded_w) + " (h+2p x w+2p)");
    }
    // Halide indexes buffers with 32-bit integers: every tensor (and its byte size) must fit.
    const int64_t limit = std::numeric_limits<int32_t>::max();
    auto check_elements = [&](const char *what, std::vector<int64_t> dims) {
        __int128 count = 1;
        for (int64_t d : dims) count *= d;
        if (count * 4 > limit) {
            std::ostringstream os;
            os << "spec: " << what << " tensor " << shape_to_string(dims) << " overflows 32-bit indexing (" << (int64_t)(count > limit ? limit : count)
               << (count > limit ? "+" : "") << " elements; at most " << limit / 4 << " allowed)";
            throw Error(os.str());
        }
    };
    check_elements("input", spec.input_shape());
    check_elements("output", spec.output_shape());
    if (spec.kind == LayerKind::Conv) {
        check_elements("weight", {spec.c2, spec.c1 / spec.g, spec.k, spec.k});
    } else {
        check_elements("depthwise output", {spec.n, spec.c1, spec.out_h(), spec.out_w()});
        check_elements("pointwise weight", {spec.c2, spec.c1});
    }
}

LayerSpec parse_layer_spec(const std::string &text) {
    const std::vector<std::string> tokens = split_whitespace(text);
    if (tokens.empty()) throw Error("spec is empty: expected 'conv ...' or 'dwconv ...'");
    LayerSpec spec;
    if (tokens[0] == "conv") {
        spec.kind = LayerKind::Conv;
    } else if (tokens[0] == "dwconv") {
        spec.kind = LayerKind::DepthwisePointwise;
    } else {
        throw Error("spec: unknown layer kind '" + tokens[0] + "' (expected conv or dwconv)");
    }
    const bool is_dw = spec.kind == LayerKind::DepthwisePointwise;

    std::set<std::string> seen;
    bool has_p = false, has_dw_act = false;
    for (size_t i = 1; i < tokens.size(); ++i) {
        const std::string &tok = tokens[i];
        const size_t eq = tok.find('=');
        if (eq == std::string::npos || eq == 0) throw Error("spec: '" + tok + "' is not of the form key=value");
        const std::string key = tok.substr(0, eq);
        const std::string value = tok.substr(eq + 1);
        if (!seen.insert(key).second) throw Error("spec field '" + key + "' is given twice");
        if (key == "name") {
            if (value.empty()) throw Error("spec field 'name' has an empty value");
            spec.name = value;
        } else if (key == "n") {
            spec.n = parse_int_field(key, value);
        } else if (key == "c1") {
            spec.c1 = parse_int_field(key, value);
        } else if (key == "c2") {
            spec.c2 = parse_int_field(key, value);
        } else if (key == "h") {
            spec.h = parse_int_field(key, value);
        } else if (key == "w") {
            spec.w = parse_int_field(key, value);
        } else if (key == "k") {
            spec.k = parse_int_field(key, value);
        } else if (key == "s") {
            spec.s = parse_int_field(key, value);
        } else if (key == "p") {
            spec.p = parse_int_field(key, value);
            has_p = true;
        } else if (key == "g") {
            if (is_dw) throw Error("spec field 'g' applies only to conv (dwconv's depthwise stage always has g=c1)");
            spec.g = parse_int_field(key, value);
        } else if (key == "act") {
            spec.act = parse_activation_field(key, value);
        } else if (key == "alpha") {
            spec.alpha = parse_float_field(key, value);
        } else if (key == "bn") {
            spec.bn = parse_bool_field(key, value);
        } else if (key == "dw_act") {
            if (!is_dw) throw Error("spec field 'dw_act' applies only to dwconv");
            spec.dw_act = parse_activation_field(key, value);
            has_dw_act = true;
        } else if (key == "dw_bn") {
            if (!is_dw) throw Error("spec field 'dw_bn' applies only to dwconv");
            spec.dw_bn = parse_bool_field(key, value);
        } else if (key == "eps") {
            spec.eps = parse_float_field(key, value);
            if (!(spec.eps > 0.0f)) throw Error("spec field 'eps' must be > 0 (got " + value + ")");
        } else if (key == "layout") {
            if (value == "nchw") {
                spec.layout = Layout::NCHW;
            } else if (value == "nhwc") {
                spec.layout = Layout::NHWC;
            } else {
                throw Error("spec field 'layout': unknown layout '" + value + "' (expected nchw or nhwc)");
            }
        } else if (key == "dtype") {
            if (value != "f32") throw Error("spec field 'dtype': '" + value + "' is not supported (only f32)");
        } else {
            throw Error("spec: unknown key '" + key + "'");
        }
    }
    for (const char *required : {"c1", "c2", "h", "w", "k"}) {
        if (!seen.count(required)) throw Error(std::string("spec field '") + required + "' is missing");
    }
    if (!has_p) spec.p = spec.k / 2;  // the seed's autopad
    if (!has_dw_act) spec.dw_act = spec.act;
    const bool uses_alpha = spec.act == Activation::Leaky || (is_dw && spec.dw_act == Activation::Leaky);
    if (seen.count("alpha") && !uses_alpha) throw Error("spec field 'alpha' applies only to act=leaky (or dw_act=leaky)");
    validate(spec);
    return spec;
}

std::vector<LayerSpec> parse_suite_text(const std::string &text, const std::string &origin) {
    std::vector<LayerSpec> specs;
    std::istringstream is(text);
    std::string line;
    int line_no = 0;
    while (std::getline(is, line)) {
        ++line_no;
        const size_t hash = line.find('#');
        if (hash != std::string::npos) line = line.substr(0, hash);
        if (split_whitespace(line).empty()) continue;
        try {
            specs.push_back(parse_layer_spec(line));
        } catch (const Error &e) {
            throw Error(origin + ":" + std::to_string(line_no) + ": " + e.what());
        }
    }
    if (specs.empty()) throw Error(origin + ": no layer specs found");
    return specs;
}

std::vector<LayerSpec> parse_suite_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error("cannot open suite file '" + path + "'");
    std::ostringstream ss;
    ss << f.rdbuf();
    return parse_suite_text(ss.str(), path);
}

}  // namespace convgen
