// The reference: direct loops in double, following PyTorch's Conv2d / BatchNorm2d (eval) /
// activation definitions literally. Deliberately simple; speed does not matter here.
#include "runtime/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "runtime/errors.h"
#include "runtime/memory_budget.h"

namespace convgen {

namespace {

// An NCHW tensor of doubles.
struct Buf {
    int64_t n = 0, c = 0, h = 0, w = 0;
    std::vector<double> v;

    Buf(int64_t n_, int64_t c_, int64_t h_, int64_t w_) : n(n_), c(c_), h(h_), w(w_), v(static_cast<size_t>(n_ * c_ * h_ * w_), 0.0) {}
    double &at(int64_t in, int64_t ic, int64_t y, int64_t x) { return v[static_cast<size_t>(((in * c + ic) * h + y) * w + x)]; }
    double at(int64_t in, int64_t ic, int64_t y, int64_t x) const { return v[static_cast<size_t>(((in * c + ic) * h + y) * w + x)]; }
};

Buf to_nchw(const Tensor &t, int64_t n, int64_t c, int64_t h, int64_t w, Layout layout) {
    Buf b(n, c, h, w);
    for (int64_t in = 0; in < n; ++in)
        for (int64_t ic = 0; ic < c; ++ic)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t x = 0; x < w; ++x) {
                    const int64_t idx = layout == Layout::NCHW ? ((in * c + ic) * h + y) * w + x : ((in * h + y) * w + x) * c + ic;
                    b.at(in, ic, y, x) = t.data[static_cast<size_t>(idx)];
                }
    return b;
}

Tensor from_nchw(const Buf &b, Layout layout) {
    Tensor t(layout == Layout::NCHW ? std::vector<int64_t>{b.n, b.c, b.h, b.w} : std::vector<int64_t>{b.n, b.h, b.w, b.c});
    for (int64_t in = 0; in < b.n; ++in)
        for (int64_t ic = 0; ic < b.c; ++ic)
            for (int64_t y = 0; y < b.h; ++y)
                for (int64_t x = 0; x < b.w; ++x) {
                    const int64_t idx = layout == Layout::NCHW ? ((in * b.c + ic) * b.h + y) * b.w + x
                                                               : ((in * b.h + y) * b.w + x) * b.c + ic;
                    t.data[static_cast<size_t>(idx)] = static_cast<float>(b.at(in, ic, y, x));
                }
    return t;
}

// torch.nn.functional.conv2d(in, weight, bias=None, stride=s, padding=p, groups=groups) with
// weight [cout][cin/groups][k][k].
Buf conv2d(const Buf &in, const std::vector<float> &weight, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups) {
    const int64_t oh = (in.h + 2 * p - k) / s + 1, ow = (in.w + 2 * p - k) / s + 1;
    const int64_t cin_g = in.c / groups, cout_g = cout / groups;
    Buf out(in.n, cout, oh, ow);
    for (int64_t n = 0; n < in.n; ++n)
        for (int64_t oc = 0; oc < cout; ++oc) {
            const int64_t g = oc / cout_g;
            for (int64_t oy = 0; oy < oh; ++oy)
                for (int64_t ox = 0; ox < ow; ++ox) {
                    double acc = 0.0;
                    for (int64_t icg = 0; icg < cin_g; ++icg) {
                        const int64_t ic = g * cin_g + icg;
                        for (int64_t ky = 0; ky < k; ++ky) {
                            const int64_t iy = oy * s - p + ky;
                            for (int64_t kx = 0; kx < k; ++kx) {
                                const int64_t ix = ox * s - p + kx;
                                const double wv = weight[static_cast<size_t>(((oc * cin_g + icg) * k + ky) * k + kx)];
                                // Padding taps multiply a zero, as PyTorch does: a NaN or Inf weight
                                // makes them NaN (0 * NaN), so they are not skipped.
                                const bool inside = iy >= 0 && iy < in.h && ix >= 0 && ix < in.w;
                                acc += wv * (inside ? in.at(n, ic, iy, ix) : 0.0);
                            }
                        }
                    }
                    out.at(n, oc, oy, ox) = acc;
                }
        }
    return out;
}

// BatchNorm2d in eval mode: (x - mean) / sqrt(var + eps) * gamma + beta.
void batchnorm(Buf &b, const BatchNormParams &bn, double eps) {
    for (int64_t n = 0; n < b.n; ++n)
        for (int64_t c = 0; c < b.c; ++c) {
            const double mean = bn.running_mean[c], var = bn.running_var[c], gamma = bn.weight[c], beta = bn.bias[c];
            const double inv_std = 1.0 / std::sqrt(var + eps);
            for (int64_t y = 0; y < b.h; ++y)
                for (int64_t x = 0; x < b.w; ++x) {
                    double &v = b.at(n, c, y, x);
                    v = (v - mean) * inv_std * gamma + beta;
                }
        }
}

void activate(Buf &b, Activation act, double alpha) {
    for (double &v : b.v) v = apply_activation(act, v, alpha);
}

void check_same_shape(const Tensor &a, const Tensor &b, const char *what) {
    if (a.shape != b.shape) {
        throw Error(std::string(what) + ": shapes differ: " + shape_to_string(a.shape) + " vs " + shape_to_string(b.shape));
    }
    if (a.data.size() != b.data.size()) throw Error(std::string(what) + ": tensors hold different numbers of values");
}

}  // namespace

Tensor reference_forward(const LayerSpec &spec, const RawWeights &weights, const Tensor &input) {
    validate(spec);
    check_memory_budget(spec);
    check_raw_weights(spec, weights);
    if (input.shape != spec.input_shape()) {
        throw Error("reference: input has shape " + shape_to_string(input.shape) + ", expected " +
                    shape_to_string(spec.input_shape()) + " (" + layout_name(spec.layout) + ")");
    }
    if (static_cast<int64_t>(input.data.size()) != Tensor::element_count(input.shape)) {
        throw Error("reference: input holds " + std::to_string(input.data.size()) + " values but its shape " +
                    shape_to_string(input.shape) + " needs " + std::to_string(Tensor::element_count(input.shape)));
    }
    const double eps = static_cast<double>(spec.eps);
    const double alpha = static_cast<double>(spec.alpha);
    Buf x = to_nchw(input, spec.n, spec.c1, spec.h, spec.w, spec.layout);
    Buf y(0, 0, 0, 0);
    if (spec.kind == LayerKind::Conv) {
        y = conv2d(x, weights.conv_weight, spec.c2, spec.k, spec.s, spec.p, spec.g);
        if (spec.bn) batchnorm(y, weights.bn, eps);
        activate(y, spec.act, alpha);
    } else {
        Buf d = conv2d(x, weights.conv_weight, spec.c1, spec.k, spec.s, spec.p, spec.c1);
        if (spec.dw_bn) batchnorm(d, weights.dw_bn, eps);
        activate(d, spec.dw_act, alpha);
        y = conv2d(d, weights.pointwise_weight, spec.c2, 1, 1, 0, 1);
        if (spec.bn) batchnorm(y, weights.bn, eps);
        activate(y, spec.act, alpha);
    }
    Tensor out = from_nchw(y, spec.layout);
    if (out.shape != spec.output_shape()) {
        throw Error("reference: computed shape " + shape_to_string(out.shape) + " differs from the spec's output shape " +
                    shape_to_string(spec.output_shape()));
    }
    return out;
}

double max_abs_diff(const Tensor &a, const Tensor &b) {
    check_same_shape(a, b, "max_abs_diff");
    double m = 0.0;
    for (size_t i = 0; i < a.data.size(); ++i) {
        const double d = std::fabs(static_cast<double>(a.data[i]) - static_cast<double>(b.data[i]));
        if (std::isnan(d)) return std::numeric_limits<double>::quiet_NaN();  // NaN anywhere is never "close"
        m = std::max(m, d);
    }
    return m;
}

double max_abs(const Tensor &t) {
    double m = 0.0;
    for (float f : t.data) {
        const double v = std::fabs(static_cast<double>(f));
        if (std::isnan(v)) return std::numeric_limits<double>::quiet_NaN();
        m = std::max(m, v);
    }
    return m;
}

bool within_tolerance(const Tensor &expected, const Tensor &actual, double *max_err, double *limit) {
    const double err = max_abs_diff(expected, actual);
    const double lim = 1e-4 * std::max(1.0, max_abs(expected));
    if (max_err) *max_err = err;
    if (limit) *limit = lim;
    return err <= lim;  // false when either is NaN
}

Tensor random_input(const LayerSpec &spec, unsigned seed) {
    validate(spec);
    check_memory_budget(spec);
    std::mt19937 gen(seed);
    Tensor t(spec.input_shape());
    // 24 random bits per value: -1 + 2u is exact in float and never reaches 1.
    for (float &v : t.data) v = static_cast<float>(-1.0 + 2.0 * (static_cast<double>(gen() >> 8) * (1.0 / 16777216.0)));
    return t;
}

}  // namespace convgen
