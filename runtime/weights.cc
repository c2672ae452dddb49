#include "runtime/weights.h"

#include <cmath>
#include <cstdint>
#include <random>

#include "runtime/errors.h"
#include "runtime/memory_budget.h"

namespace convgen {

namespace {

std::string quote_name(const std::string &name) { return "'" + printable(name, 120) + "'"; }

// One expected tensor: its state_dict name (without the prefix) and PyTorch shape.
struct Expected {
    std::string name;
    std::vector<int64_t> shape;
};

const char *const kBnFields[4] = {"weight", "bias", "running_mean", "running_var"};

std::vector<float> *bn_field(BatchNormParams &bn, int i) {
    switch (i) {
        case 0: return &bn.weight;
        case 1: return &bn.bias;
        case 2: return &bn.running_mean;
        default: return &bn.running_var;
    }
}
const std::vector<float> *bn_field(const BatchNormParams &bn, int i) { return bn_field(const_cast<BatchNormParams &>(bn), i); }

std::vector<int64_t> conv_weight_shape(const LayerSpec &spec) {
    if (spec.kind == LayerKind::Conv) return {spec.c2, spec.c1 / spec.g, spec.k, spec.k};
    return {spec.c1, 1, spec.k, spec.k};
}

int64_t product(const std::vector<int64_t> &shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// Why a tensor may be missing: suggest the prefix under which `base` does exist, if any.
std::string prefix_hint(const SafeTensorsFile &file, const std::string &base, const std::string &prefix) {
    std::vector<std::string> candidates;
    const std::string suffix = "." + base;
    for (const std::string &n : file.names()) {
        if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
            candidates.push_back(n.substr(0, n.size() - base.size()));
        }
    }
    std::string hint = prefix.empty() ? "no --prefix was given; check --prefix"
                                      : "check --prefix (it is " + quote_name(prefix) + ")";
    if (!candidates.empty()) {
        hint += "; " + quote_name(base) + " exists under the prefix";
        hint += candidates.size() == 1 ? " " : "es ";
        for (size_t i = 0; i < candidates.size() && i < 4; ++i) hint += (i ? ", " : "") + quote_name(candidates[i]);
        if (candidates.size() > 4) hint += ", ...";
    } else {
        std::vector<std::string> names = file.names();
        hint += "; the file has " + std::to_string(names.size()) + (names.size() == 1 ? " tensor" : " tensors");
        for (size_t i = 0; i < names.size() && i < 6; ++i) hint += (i ? ", " : ": ") + quote_name(names[i]);
        if (names.size() > 6) hint += ", ...";
    }
    return hint;
}

std::vector<float> load_tensor(const LayerSpec &spec, const SafeTensorsFile &file, const std::string &prefix,
                               const Expected &e) {
    const std::string name = prefix + e.name;
    if (!file.has(name)) {
        throw Error(file.origin() + ": missing tensor " + quote_name(name) + " (" + prefix_hint(file, e.name, prefix) + ")");
    }
    const SafeTensorInfo &info = file.info(name);
    if (info.shape != e.shape) {
        throw Error(file.origin() + ": tensor " + quote_name(name) + " has shape " + shape_to_string(info.shape) + ", expected " +
                    shape_to_string(e.shape) + " for layer '" + spec.to_string() + "'");
    }
    return file.read_f32(name);
}

void check_size(const std::string &what, const std::vector<float> &v, int64_t expected) {
    if (static_cast<int64_t>(v.size()) != expected) {
        throw Error("weights: " + what + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(expected));
    }
}

void check_bn(const std::string &module, const BatchNormParams &bn, int64_t channels) {
    for (int i = 0; i < 4; ++i) check_size(module + "." + kBnFields[i], *bn_field(bn, i), channels);
}

// scale and bias of an eval-mode BatchNorm, in double; (1, 0) when there is none.
void bn_scale_bias(const std::string &module, const BatchNormParams &bn, bool present, int64_t channels, double eps,
                   std::vector<double> *scale, std::vector<double> *bias) {
    scale->assign(static_cast<size_t>(channels), 1.0);
    bias->assign(static_cast<size_t>(channels), 0.0);
    if (!present) return;
    for (int64_t c = 0; c < channels; ++c) {
        const double var = bn.running_var[c];
        const double denom = var + eps;
        if (!(denom > 0.0)) {
            throw Error("weights: " + module + ".running_var[" + std::to_string(c) + "] + eps = " + std::to_string(denom) +
                        " is not positive; BatchNorm cannot be folded");
        }
        const double s = static_cast<double>(bn.weight[c]) / std::sqrt(denom);
        (*scale)[c] = s;
        (*bias)[c] = static_cast<double>(bn.bias[c]) - static_cast<double>(bn.running_mean[c]) * s;
    }
}

// Uniform in [lo, hi) from 24 random bits: portable, unlike std::uniform_real_distribution.
float uniform(std::mt19937 &gen, double lo, double hi) {
    const double u = static_cast<double>(gen() >> 8) * (1.0 / 16777216.0);
    return static_cast<float>(lo + (hi - lo) * u);
}

std::vector<float> uniform_vector(std::mt19937 &gen, int64_t count, double lo, double hi) {
    std::vector<float> v(static_cast<size_t>(count));
    for (float &x : v) x = uniform(gen, lo, hi);
    return v;
}

BatchNormParams random_bn(std::mt19937 &gen, int64_t channels) {
    BatchNormParams bn;
    bn.weight = uniform_vector(gen, channels, 0.5, 1.5);
    bn.bias = uniform_vector(gen, channels, -0.5, 0.5);
    bn.running_mean = uniform_vector(gen, channels, -0.5, 0.5);
    bn.running_var = uniform_vector(gen, channels, 0.5, 1.5);
    return bn;
}

}  // namespace

RawWeights load_raw_weights(const LayerSpec &spec, const SafeTensorsFile &file, const std::string &prefix) {
    validate(spec);
    RawWeights raw;
    auto load_bn = [&](const std::string &module, int64_t channels, BatchNormParams *bn) {
        for (int i = 0; i < 4; ++i) {
            *bn_field(*bn, i) = load_tensor(spec, file, prefix, {module + "." + kBnFields[i], {channels}});
        }
    };
    if (spec.kind == LayerKind::Conv) {
        raw.conv_weight = load_tensor(spec, file, prefix, {"conv.weight", conv_weight_shape(spec)});
        if (spec.bn) load_bn("bn", spec.c2, &raw.bn);
    } else {
        raw.conv_weight = load_tensor(spec, file, prefix, {"depthwise.weight", conv_weight_shape(spec)});
        if (spec.dw_bn) load_bn("dw_bn", spec.c1, &raw.dw_bn);
        raw.pointwise_weight = load_tensor(spec, file, prefix, {"pointwise.weight", {spec.c2, spec.c1, 1, 1}});
        if (spec.bn) load_bn("bn", spec.c2, &raw.bn);
    }
    return raw;
}

void check_raw_weights(const LayerSpec &spec, const RawWeights &raw) {
    validate(spec);
    if (spec.kind == LayerKind::Conv) {
        check_size("conv.weight " + shape_to_string(conv_weight_shape(spec)), raw.conv_weight, product(conv_weight_shape(spec)));
        if (spec.bn) check_bn("bn", raw.bn, spec.c2);
    } else {
        check_size("depthwise.weight " + shape_to_string(conv_weight_shape(spec)), raw.conv_weight, product(conv_weight_shape(spec)));
        check_size("pointwise.weight " + shape_to_string({spec.c2, spec.c1, 1, 1}), raw.pointwise_weight,
                   int64_t(spec.c2) * spec.c1);
        if (spec.dw_bn) check_bn("dw_bn", raw.dw_bn, spec.c1);
        if (spec.bn) check_bn("bn", raw.bn, spec.c2);
    }
}

FoldedWeights fold_batchnorm(const LayerSpec &spec, const RawWeights &raw) {
    check_raw_weights(spec, raw);
    const double eps = static_cast<double>(spec.eps);
    FoldedWeights out;
    std::vector<double> scale, bias;

    // Folds per-output-channel `scale` into `w` laid out as [channels][per_channel].
    auto fold = [&](const std::vector<float> &w, int64_t channels, std::vector<float> *dst_w, std::vector<float> *dst_b) {
        const int64_t per_channel = static_cast<int64_t>(w.size()) / channels;
        dst_w->resize(w.size());
        dst_b->resize(static_cast<size_t>(channels));
        for (int64_t c = 0; c < channels; ++c) {
            for (int64_t i = 0; i < per_channel; ++i) {
                const size_t idx = static_cast<size_t>(c * per_channel + i);
                (*dst_w)[idx] = static_cast<float>(static_cast<double>(w[idx]) * scale[c]);
            }
            (*dst_b)[c] = static_cast<float>(bias[c]);
        }
    };

    if (spec.kind == LayerKind::Conv) {
        bn_scale_bias("bn", raw.bn, spec.bn, spec.c2, eps, &scale, &bias);
        fold(raw.conv_weight, spec.c2, &out.weight, &out.bias);
    } else {
        bn_scale_bias("dw_bn", raw.dw_bn, spec.dw_bn, spec.c1, eps, &scale, &bias);
        fold(raw.conv_weight, spec.c1, &out.weight, &out.bias);
        bn_scale_bias("bn", raw.bn, spec.bn, spec.c2, eps, &scale, &bias);
        fold(raw.pointwise_weight, spec.c2, &out.pw_weight, &out.pw_bias);
    }
    return out;
}

RawWeights random_raw_weights(const LayerSpec &spec, unsigned seed) {
    validate(spec);
    check_memory_budget(spec);
    std::mt19937 gen(seed);
    RawWeights raw;
    // PyTorch's default Conv2d init bound: 1 / sqrt(fan_in). Generation order: conv (or
    // depthwise) weight, pointwise weight, dw_bn, bn; each BN as weight, bias, mean, var.
    if (spec.kind == LayerKind::Conv) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(spec.c1 / spec.g) * spec.k * spec.k);
        raw.conv_weight = uniform_vector(gen, product(conv_weight_shape(spec)), -bound, bound);
        if (spec.bn) raw.bn = random_bn(gen, spec.c2);
    } else {
        const double dw_bound = 1.0 / std::sqrt(static_cast<double>(spec.k) * spec.k);
        raw.conv_weight = uniform_vector(gen, product(conv_weight_shape(spec)), -dw_bound, dw_bound);
        const double pw_bound = 1.0 / std::sqrt(static_cast<double>(spec.c1));
        raw.pointwise_weight = uniform_vector(gen, int64_t(spec.c2) * spec.c1, -pw_bound, pw_bound);
        if (spec.dw_bn) raw.dw_bn = random_bn(gen, spec.c1);
        if (spec.bn) raw.bn = random_bn(gen, spec.c2);
    }
    return raw;
}

PackedWeights pack_weights(const LayerSpec &spec, const FoldedWeights &folded, WeightLayout layout) {
    auto aligned = [](const std::vector<float> &v) { return AlignedFloats(v.begin(), v.end()); };
    PackedWeights packed;
    packed.layout = layout;
    packed.bias = aligned(folded.bias);
    packed.pw_bias = aligned(folded.pw_bias);
    if (layout == WeightLayout::PyTorch) {
        packed.weight = aligned(folded.weight);
        packed.pw_weight = aligned(folded.pw_weight);
        return packed;
    }
    if (layout.order == WeightLayout::Order::OutputBlocked) {
        // [c2][inner] -> [c2/B][inner][B], zeros for the channels past c2 in the last block.
        auto block_outer = [&](const std::vector<float> &src, size_t inner, const char *what) {
            if (src.size() != size_t(spec.c2) * inner) {
                throw Error(std::string("pack_weights: ") + what + " has " + std::to_string(src.size()) +
                            " elements, expected " + std::to_string(size_t(spec.c2) * inner));
            }
            const size_t b = size_t(layout.block);
            AlignedFloats dst(size_t(output_blocks(spec, layout)) * inner * b, 0.0f);
            for (size_t o = 0; o < size_t(spec.c2); ++o)
                for (size_t i = 0; i < inner; ++i) dst[((o / b) * inner + i) * b + o % b] = src[o * inner + i];
            return dst;
        };
        if (spec.kind == LayerKind::Conv) {
            packed.weight = block_outer(folded.weight, size_t(spec.c1 / spec.g) * spec.k * spec.k, "conv weight");
        } else {
            packed.weight = aligned(folded.weight);
            packed.pw_weight = block_outer(folded.pw_weight, size_t(spec.c1), "pointwise weight");
        }
        return packed;
    }
    // Moves the outermost (output channel) index innermost: [outer][inner] -> [inner][outer].
    auto transpose = [](const std::vector<float> &src, size_t outer, size_t inner) {
        if (src.size() != outer * inner) throw Error("pack_weights: weight has " + std::to_string(src.size()) +
                                                     " elements, expected " + std::to_string(outer * inner));
        AlignedFloats dst(src.size());
        for (size_t o = 0; o < outer; ++o)
            for (size_t i = 0; i < inner; ++i) dst[i * outer + o] = src[o * inner + i];
        return dst;
    };
    const size_t kk = size_t(spec.k) * spec.k;
    if (spec.kind == LayerKind::Conv) {
        // [c2][c1/g][k][k] -> [k][k][c1/g][c2]: ci-major within a tap first, then channels innermost.
        const size_t cig = size_t(spec.c1 / spec.g);
        std::vector<float> per_tap(folded.weight.size());  // [c2][k][k][cig]
        if (folded.weight.size() != size_t(spec.c2) * cig * kk) {
            throw Error("pack_weights: conv weight has " + std::to_string(folded.weight.size()) + " elements, expected " +
                        std::to_string(size_t(spec.c2) * cig * kk));
        }
        for (size_t o = 0; o < size_t(spec.c2); ++o)
            for (size_t i = 0; i < cig; ++i)
                for (size_t t = 0; t < kk; ++t) per_tap[(o * kk + t) * cig + i] = folded.weight[(o * cig + i) * kk + t];
        packed.weight = transpose(per_tap, spec.c2, kk * cig);
    } else {
        packed.weight = transpose(folded.weight, spec.c1, kk);
        packed.pw_weight = transpose(folded.pw_weight, spec.c2, spec.c1);
    }
    return packed;
}

}  // namespace convgen
