#include "bench/baselines_xnnpack.h"

#include <pthreadpool.h>
#include <xnnpack.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

namespace convgen_bench {

using convgen::Activation;
using convgen::FoldedWeights;
using convgen::LayerSpec;
using convgen::Tensor;

namespace {

void check(xnn_status st, const char *what) {
    if (st != xnn_status_success) {
        throw std::runtime_error(std::string("XNNPACK: ") + what + " failed (status " + std::to_string(int(st)) + ")");
    }
}

void init_xnnpack() {
    static std::once_flag once;
    static xnn_status status = xnn_status_success;
    std::call_once(once, [] { status = xnn_initialize(nullptr); });
    check(status, "xnn_initialize");
}

struct OpDeleter {
    void operator()(xnn_operator_t op) const {
        if (op) xnn_delete_operator(op);
    }
};
using Op = std::unique_ptr<xnn_operator, OpDeleter>;

const float kInf = std::numeric_limits<float>::infinity();

// The clamp XNNPACK fuses into the convolution; false when the activation needs its own op.
bool fused_clamp(Activation act, float *lo, float *hi) {
    switch (act) {
    case Activation::Identity: *lo = -kInf; *hi = kInf; return true;
    case Activation::Relu: *lo = 0.f; *hi = kInf; return true;
    case Activation::Relu6: *lo = 0.f; *hi = 6.f; return true;
    default: *lo = -kInf; *hi = kInf; return false;
    }
}

class XnnpackBaseline : public Baseline {
public:
    XnnpackBaseline(const LayerSpec &spec, const FoldedWeights &w, const Tensor &input, int threads) : spec_(spec) {
        std::vector<Activation> acts{spec.act};
        if (spec.kind == convgen::LayerKind::DepthwisePointwise) acts.push_back(spec.dw_act);
        for (Activation a : acts) {
            if (a == Activation::Gelu || a == Activation::GeluTanh || a == Activation::Tanh) {
                throw Unsupported(std::string("n/a: XNNPACK (2022-02) has no ") + convgen::activation_name(a) +
                                  " operator, fused or separate");
            }
        }
        init_xnnpack();
        pool_.reset(pthreadpool_create(static_cast<size_t>(threads)));
        if (!pool_.get()) throw std::runtime_error("pthreadpool_create failed");

        const int n = spec.n, oh = spec.out_h(), ow = spec.out_w();
        nhwc_input_ = spec.layout == convgen::Layout::NHWC;
        // Input in NHWC, prepared once (untimed).
        in_.resize(input.data.size() + 16);  // XNNPACK may read a little past the end (XNN_EXTRA_BYTES)
        if (nhwc_input_) {
            std::copy(input.data.begin(), input.data.end(), in_.begin());
        } else {
            nchw_to_nhwc(input.data.data(), in_.data(), n, spec.c1, spec.h, spec.w);
        }
        if (spec.kind == convgen::LayerKind::Conv) {
            const float *cur = add_conv(in_.data(), spec.c1, spec.c2, spec.g, spec.k, spec.s, spec.p, spec.h, spec.w,
                                        w.weight.data(), w.bias.data(), spec.act, spec.alpha, "conv");
            out_ = cur;
        } else {
            const float *mid = add_conv(in_.data(), spec.c1, spec.c1, spec.c1, spec.k, spec.s, spec.p, spec.h, spec.w,
                                        w.weight.data(), w.bias.data(), spec.dw_act, spec.alpha, "dw");
            out_ = add_conv(mid, spec.c1, spec.c2, 1, 1, 1, 0, oh, ow, w.pw_weight.data(), w.pw_bias.data(), spec.act,
                            spec.alpha, "pw");
        }
    }

    void run() override {
        for (auto &op : ops_) check(xnn_run_operator(op.get(), pool_.get()), "xnn_run_operator");
    }

    Tensor output() override {
        Tensor out(spec_.output_shape());
        if (nhwc_input_) {
            std::copy(out_, out_ + out.data.size(), out.data.data());
        } else {
            nhwc_to_nchw(out_, out.data.data(), spec_.n, spec_.c2, spec_.out_h(), spec_.out_w());
        }
        return out;
    }

    std::string describe() const override { return description_; }
    bool activation_fused() const override { return fused_; }

private:
    float *new_buffer(size_t size) {
        buffers_.emplace_back(size + 16);  // XNNPACK may read a little past the end (XNN_EXTRA_BYTES)
        return buffers_.back().data();
    }

    // A convolution (groups, cin/g -> cout/g per group) on an NHWC [n, h, w, cin] tensor, followed
    // by its activation (fused as a clamp, or as separate ops). Returns the stage's NHWC output.
    const float *add_conv(const float *in, int cin, int cout, int groups, int k, int s, int p, int h, int w,
                          const float *weight, const float *bias, Activation act, float alpha, const char *label) {
        const int n = spec_.n;
        const int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
        const int cig = cin / groups, cog = cout / groups;
        // PyTorch's [cout][cin/g][k][k] -> XNNPACK's [groups][cout/g][k][k][cin/g] (OHWI per group).
        std::vector<float> ohwi(static_cast<size_t>(cout) * k * k * cig);
        for (int o = 0; o < cout; ++o)
            for (int i = 0; i < cig; ++i)
                for (int ky = 0; ky < k; ++ky)
                    for (int kx = 0; kx < k; ++kx)
                        ohwi[((size_t(o) * k + ky) * k + kx) * cig + i] = weight[((size_t(o) * cig + i) * k + ky) * k + kx];
        float lo, hi;
        const bool fused = fused_clamp(act, &lo, &hi);
        xnn_operator_t raw = nullptr;
        check(xnn_create_convolution2d_nhwc_f32(p, p, p, p, k, k, s, s, 1, 1, groups, cig, cog, cin, cout, ohwi.data(),
                                                bias, lo, hi, 0, &raw),
              "xnn_create_convolution2d_nhwc_f32");
        ops_.emplace_back(raw);
        const size_t out_size = size_t(n) * oh * ow * cout;
        float *conv_out = new_buffer(out_size);
        check(xnn_setup_convolution2d_nhwc_f32(raw, n, h, w, in, conv_out, pool_.get()), "xnn_setup_convolution2d_nhwc_f32");
        if (!description_.empty()) description_ += " + ";
        description_ += std::string(label) + ":convolution2d_nhwc_f32(g=" + std::to_string(groups) + ")";
        if (fused) {
            if (act != Activation::Identity) description_ += "+clamp";
            return conv_out;
        }
        fused_ = false;
        const size_t pixels = size_t(n) * oh * ow;
        float *act_out = new_buffer(out_size);
        raw = nullptr;
        switch (act) {
        case Activation::Leaky:
            check(xnn_create_leaky_relu_nc_f32(cout, cout, cout, alpha, 0, &raw), "xnn_create_leaky_relu_nc_f32");
            ops_.emplace_back(raw);
            check(xnn_setup_leaky_relu_nc_f32(raw, pixels, conv_out, act_out, pool_.get()), "xnn_setup_leaky_relu_nc_f32");
            description_ += " then leaky_relu_nc_f32 (unfused)";
            break;
        case Activation::Sigmoid:
            check(xnn_create_sigmoid_nc_f32(cout, cout, cout, 0, &raw), "xnn_create_sigmoid_nc_f32");
            ops_.emplace_back(raw);
            check(xnn_setup_sigmoid_nc_f32(raw, pixels, conv_out, act_out, pool_.get()), "xnn_setup_sigmoid_nc_f32");
            description_ += " then sigmoid_nc_f32 (unfused)";
            break;
        case Activation::Hardswish:
            check(xnn_create_hardswish_nc_f32(cout, cout, cout, 0, &raw), "xnn_create_hardswish_nc_f32");
            ops_.emplace_back(raw);
            check(xnn_setup_hardswish_nc_f32(raw, pixels, conv_out, act_out, pool_.get()), "xnn_setup_hardswish_nc_f32");
            description_ += " then hardswish_nc_f32 (unfused)";
            break;
        case Activation::Silu: {
            float *sig = new_buffer(out_size);
            check(xnn_create_sigmoid_nc_f32(cout, cout, cout, 0, &raw), "xnn_create_sigmoid_nc_f32");
            ops_.emplace_back(raw);
            check(xnn_setup_sigmoid_nc_f32(raw, pixels, conv_out, sig, pool_.get()), "xnn_setup_sigmoid_nc_f32");
            raw = nullptr;
            check(xnn_create_multiply_nd_f32(-kInf, kInf, 0, &raw), "xnn_create_multiply_nd_f32");
            ops_.emplace_back(raw);
            const size_t shape[1] = {out_size};
            check(xnn_setup_multiply_nd_f32(raw, 1, shape, 1, shape, conv_out, sig, act_out, pool_.get()),
                  "xnn_setup_multiply_nd_f32");
            description_ += " then sigmoid_nc_f32 + multiply_nd_f32 (silu, unfused)";
            break;
        }
        default: throw Unsupported(std::string("n/a: XNNPACK has no ") + convgen::activation_name(act) + " operator");
        }
        return act_out;
    }

    struct PoolDeleter {
        void operator()(pthreadpool_t p) const { pthreadpool_destroy(p); }
    };

    LayerSpec spec_;
    std::unique_ptr<pthreadpool, PoolDeleter> pool_;  // declared before ops_: destroyed after them
    bool nhwc_input_ = false;
    bool fused_ = true;
    std::vector<float> in_;
    std::vector<std::vector<float>> buffers_;
    std::vector<Op> ops_;
    const float *out_ = nullptr;
    std::string description_;
};

}  // namespace

std::unique_ptr<Baseline> make_xnnpack_baseline(const LayerSpec &spec, const FoldedWeights &weights,
                                                const Tensor &input, int threads) {
    return std::make_unique<XnnpackBaseline>(spec, weights, input, threads);
}

}  // namespace convgen_bench
