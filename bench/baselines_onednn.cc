#include "bench/baselines_onednn.h"

#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

namespace convgen_bench {

using convgen::Activation;
using convgen::FoldedWeights;
using convgen::LayerSpec;
using convgen::Tensor;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

int onednn_set_num_threads(int threads) {
    omp_set_dynamic(0);
    omp_set_num_threads(threads);
    return omp_get_max_threads();
}

namespace {

// The activation as one eltwise post-op (PyTorch's definitions; oneDNN's match them).
void append_activation(dnnl::post_ops &ops, Activation act, float alpha) {
    using alg = dnnl::algorithm;
    switch (act) {
    case Activation::Identity: return;  // nothing to fuse
    case Activation::Relu: ops.append_eltwise(1.f, alg::eltwise_relu, 0.f, 0.f); return;
    case Activation::Relu6: ops.append_eltwise(1.f, alg::eltwise_clip, 0.f, 6.f); return;
    case Activation::Leaky: ops.append_eltwise(1.f, alg::eltwise_relu, alpha, 0.f); return;
    case Activation::Silu: ops.append_eltwise(1.f, alg::eltwise_swish, 1.f, 0.f); return;
    case Activation::Gelu: ops.append_eltwise(1.f, alg::eltwise_gelu_erf, 0.f, 0.f); return;
    case Activation::GeluTanh: ops.append_eltwise(1.f, alg::eltwise_gelu_tanh, 0.f, 0.f); return;
    case Activation::Hardswish: ops.append_eltwise(1.f, alg::eltwise_hardswish, 0.f, 0.f); return;
    case Activation::Sigmoid: ops.append_eltwise(1.f, alg::eltwise_logistic, 0.f, 0.f); return;
    case Activation::Tanh: ops.append_eltwise(1.f, alg::eltwise_tanh, 0.f, 0.f); return;
    }
    throw Unsupported("oneDNN: unknown activation");
}

// One convolution primitive with its weights (and bias) already in the layout it chose.
struct ConvStage {
    dnnl::convolution_forward::primitive_desc pd;
    dnnl::convolution_forward prim;
    dnnl::memory weights, bias;  // bias empty when the stage has none
    bool has_bias = false;
};

// Builds a conv stage. src_md may be a concrete layout (the previous stage's dst) or any.
ConvStage make_stage(const dnnl::engine &eng, dnnl::stream &strm, const dnnl::memory::desc &src_md, int n, int cin,
                     int cout, int groups, int k, int s, int p, int oh, int ow, const float *weight, const float *bias,
                     Activation act, float alpha) {
    ConvStage st;
    const bool grouped = groups > 1;
    dnnl::memory::dims wdims = grouped ? dnnl::memory::dims{groups, cout / groups, cin / groups, k, k}
                                       : dnnl::memory::dims{cout, cin, k, k};
    dnnl::memory::desc w_any(wdims, dt::f32, tag::any);
    dnnl::memory::desc b_md({cout}, dt::f32, tag::x);
    dnnl::memory::desc dst_any({n, cout, oh, ow}, dt::f32, tag::any);
    st.has_bias = bias != nullptr;
    auto d = st.has_bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                           dnnl::algorithm::convolution_direct, src_md, w_any, b_md,
                                                           dst_any, {s, s}, {p, p}, {p, p})
                         : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                           dnnl::algorithm::convolution_direct, src_md, w_any, dst_any,
                                                           {s, s}, {p, p}, {p, p});
    dnnl::post_ops ops;
    append_activation(ops, act, alpha);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    st.pd = dnnl::convolution_forward::primitive_desc(d, attr, eng);
    st.prim = dnnl::convolution_forward(st.pd);

    // Weights: PyTorch's [cout][cin/g][k][k] is oihw (goihw grouped); reorder once into the
    // primitive's layout.
    dnnl::memory user_w({wdims, dt::f32, grouped ? tag::goihw : tag::oihw}, eng, const_cast<float *>(weight));
    st.weights = dnnl::memory(st.pd.weights_desc(), eng);
    dnnl::reorder(user_w, st.weights).execute(strm, user_w, st.weights);
    if (st.has_bias) {
        st.bias = dnnl::memory(b_md, eng);
        std::copy(bias, bias + cout, static_cast<float *>(st.bias.get_data_handle()));
    }
    strm.wait();
    return st;
}

class OneDnnBaseline : public Baseline {
public:
    OneDnnBaseline(const LayerSpec &spec, const FoldedWeights &w, const Tensor &input)
        : spec_(spec), eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
        const bool nhwc = spec.layout == convgen::Layout::NHWC;
        user_tag_ = nhwc ? tag::nhwc : tag::nchw;
        const int oh = spec.out_h(), ow = spec.out_w();
        dnnl::memory::desc src_any({spec.n, spec.c1, spec.h, spec.w}, dt::f32, tag::any);
        if (spec.kind == convgen::LayerKind::Conv) {
            stages_.push_back(make_stage(eng_, strm_, src_any, spec.n, spec.c1, spec.c2, spec.g, spec.k, spec.s,
                                         spec.p, oh, ow, w.weight.data(), spec.bn ? w.bias.data() : nullptr,
                                         spec.act, spec.alpha));
        } else {
            // Depthwise: groups = c1, weights [c1][1][1][k][k]; then pointwise 1x1 taking the
            // depthwise primitive's own dst layout (no reorder between them).
            stages_.push_back(make_stage(eng_, strm_, src_any, spec.n, spec.c1, spec.c1, spec.c1, spec.k, spec.s,
                                         spec.p, oh, ow, w.weight.data(), spec.dw_bn ? w.bias.data() : nullptr,
                                         spec.dw_act, spec.alpha));
            stages_.push_back(make_stage(eng_, strm_, stages_[0].pd.dst_desc(), spec.n, spec.c1, spec.c2, 1, 1, 1, 0,
                                         oh, ow, w.pw_weight.data(), spec.bn ? w.pw_bias.data() : nullptr, spec.act,
                                         spec.alpha));
        }
        // Input: reorder the user's tensor into the first primitive's layout, once.
        dnnl::memory user_src({{spec.n, spec.c1, spec.h, spec.w}, dt::f32, user_tag_}, eng_,
                              const_cast<float *>(input.data.data()));
        src_ = dnnl::memory(stages_[0].pd.src_desc(), eng_);
        dnnl::reorder(user_src, src_).execute(strm_, user_src, src_);
        for (size_t i = 0; i < stages_.size(); ++i) {
            dsts_.push_back(dnnl::memory(stages_[i].pd.dst_desc(), eng_));
            if (i + 1 < stages_.size() && stages_[i + 1].pd.src_desc() != stages_[i].pd.dst_desc()) {
                throw std::runtime_error("oneDNN: the pointwise primitive did not accept the depthwise output layout");
            }
        }
        strm_.wait();
        for (size_t i = 0; i < stages_.size(); ++i) {
            std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, i == 0 ? src_ : dsts_[i - 1]},
                                                      {DNNL_ARG_WEIGHTS, stages_[i].weights},
                                                      {DNNL_ARG_DST, dsts_[i]}};
            if (stages_[i].has_bias) args[DNNL_ARG_BIAS] = stages_[i].bias;
            args_.push_back(std::move(args));
        }
    }

    void run() override {
        for (size_t i = 0; i < stages_.size(); ++i) stages_[i].prim.execute(strm_, args_[i]);
        strm_.wait();
    }

    Tensor output() override {
        Tensor out(spec_.output_shape());
        dnnl::memory user_dst({{spec_.n, spec_.c2, spec_.out_h(), spec_.out_w()}, dt::f32, user_tag_}, eng_,
                              out.data.data());
        dnnl::reorder(dsts_.back(), user_dst).execute(strm_, dsts_.back(), user_dst);
        strm_.wait();
        return out;
    }

    std::string describe() const override {
        std::string s;
        for (size_t i = 0; i < stages_.size(); ++i) {
            if (i) s += " + ";
            if (stages_.size() > 1) s += i == 0 ? "dw:" : "pw:";
            s += stages_[i].pd.impl_info_str();
        }
        return s;
    }

    bool activation_fused() const override { return true; }

private:
    LayerSpec spec_;
    dnnl::engine eng_;
    dnnl::stream strm_;
    tag user_tag_ = tag::nchw;
    std::vector<ConvStage> stages_;
    dnnl::memory src_;
    std::vector<dnnl::memory> dsts_;
    std::vector<std::unordered_map<int, dnnl::memory>> args_;
};

}  // namespace

std::unique_ptr<Baseline> make_onednn_baseline(const LayerSpec &spec, const FoldedWeights &weights,
                                               const Tensor &input) {
    return std::make_unique<OneDnnBaseline>(spec, weights, input);
}

}  // namespace convgen_bench
