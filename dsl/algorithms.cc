#include "dsl/algorithms.h"

#include <cmath>
#include <limits>
#include <string>

namespace convgen {

using namespace Halide;

namespace {

// exp(t) for t in [-87, 88] (normal float results), within a few ulp: t = k ln2 + r with k the
// nearest integer and |r| <= ln2/2, e^r by its Taylor polynomial to r^6 (remainder under 1.7e-7
// relative), 2^k added to the exponent bits. Halide 14's exp costs about twice the instructions
// on AVX-512 (its floor is split into two 256-bit vroundps, plus a rational approximation): silu
// took 0.10 of effnet_k5's 0.59 ms at 1 thread (0.49 ms with relu). Sigmoid and silu built on it
// stay within 4.3 ulp of double precision over their range (Halide's: 2.3; ActivationAccuracy).
Expr exp_in_normal_range(Expr t) {
    Expr k = cast<int>(t * 1.44269504f + 128.5f) - 128;  // round(t / ln 2): truncation of a positive number
    Expr kf = cast<float>(k);
    Expr r = (t - kf * 0.693145751953125f) - kf * 1.428606765330187e-06f;  // ln 2 in two parts (Cody-Waite)
    Expr p = 1.0f / 720;
    for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = p * r + c;
    return reinterpret(Float(32), reinterpret(Int(32), p) + k * (1 << 23));
}

// exp(t) that is exactly +inf above float's range and never sees an argument outside it (Halide's
// vectorised exp gave wrong finite values for huge arguments: sigmoid(-1e30) came out as 1).
// Below -87 it returns e^-87 (about 1.6e-38): every caller adds it to 1 or scales it by at most 1.
Expr exp_saturating(Expr t) {
    return select(t > 88.0f, std::numeric_limits<float>::infinity(), exp_in_normal_range(clamp(t, -87.0f, 88.0f)));
}

// PyTorch propagates NaN through every activation; Halide's max/min (x86 maxps/minps) and the
// clamp inside exp_saturating would replace it, so NaN is passed through explicitly. The test is
// on the bits: Halide compiles float code with fast-math flags, under which LLVM folds is_nan away.
Expr keep_nan(Expr v, Expr activated) {
    Expr magnitude = reinterpret(UInt(32), v) & Internal::make_const(UInt(32), 0x7fffffff);
    return select(magnitude > Internal::make_const(UInt(32), 0x7f800000), v, activated);
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, below float32 resolution near 1):
// Halide 14 has no erf intrinsic.
Expr erf_expr(Expr v) {
    Expr a = abs(v);
    Expr t = 1.0f / (1.0f + 0.3275911f * a);
    Expr poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    Expr e = 1.0f - poly * exp_saturating(-a * a);
    return select(v < 0.0f, -e, e);
}

// Every tensor is dense and its sizes are compile-time constants: telling Halide so lets it
// drop bounds checks and use aligned, unit-stride vector loads.
void constrain_dense(OutputImageParam p, const std::vector<int> &extents) {
    int stride = 1;
    for (size_t d = 0; d < extents.size(); ++d) {
        p.dim(d).set_bounds(0, extents[d]).set_stride(stride);
        stride *= extents[d];
    }
}

}  // namespace

Expr activation_expr(Activation act, Expr v, float alpha) {
    switch (act) {
    case Activation::Identity: return v;
    case Activation::Relu: {
        // Every float whose bits, read as int32, lie below -0x7fffff is negative and not NaN
        // (-0 to -inf); the rest are positive, zero or NaN of either sign, which relu keeps. One
        // integer compare that fast-math cannot fold, where keep_nan(v, max(v, 0)) costs four
        // instructions per vector (8% of a 4-channel-group conv's time went to its epilogue).
        return select(reinterpret(Int(32), v) < -0x7fffff, 0.0f, v);
    }
    case Activation::Relu6: return keep_nan(v, clamp(v, 0.0f, 6.0f));
    case Activation::Leaky: return select(v > 0.0f, v, v * alpha);
    case Activation::Silu: return keep_nan(v, v / (1.0f + exp_saturating(-v)));
    case Activation::Gelu: return 0.5f * v * (1.0f + erf_expr(v * float(M_SQRT1_2)));
    case Activation::GeluTanh: {
        const float c = std::sqrt(2.0f / float(M_PI));
        return 0.5f * v * (1.0f + tanh(c * (v + 0.044715f * v * v * v)));
    }
    case Activation::Hardswish: return v * clamp(v + 3.0f, 0.0f, 6.0f) / 6.0f;
    case Activation::Sigmoid: return keep_nan(v, 1.0f / (1.0f + exp_saturating(-v)));
    case Activation::Tanh: return tanh(v);
    }
    return v;
}

namespace {

// The output: the activation of the last accumulator, directly or through the transposed tiles
// (see OutputTranspose).
void define_output(LayerAlgorithm &a, const Func &last) {
    const LayerSpec &s = a.spec;
    const OutputTranspose &t = a.output_transpose;
    if (!t.on()) {
        a.def(a.output) = activation_expr(s.act, a.at(last, a.c, a.x, a.y, a.n), s.alpha);
        return;
    }
    const int P = t.pixels, V = t.lanes, N = P * V;
    if (s.layout != Layout::NCHW || P % 2 != 0 || s.out_w() % P != 0 || V < 2 || (V & (V - 1)) != 0 || s.c2 % V != 0) {
        throw Error("output transpose " + std::to_string(P) + "x" + std::to_string(V) + " does not fit " + s.to_string());
    }
    Var i = a.ti, xt = a.xt, ct = a.ct, y = a.y, n = a.n;
    Func tile("activated_tile");
    tile(i, xt, ct, y, n) = activation_expr(s.act, a.at(last, ct * V + i % V, xt * P + i / V, y, n), s.alpha);
    a.output_tiles.push_back(tile);
    // Each round moves the lowest bit of the channel index to the top of the tile index: after
    // log2(V) rounds element (pixel p, channel c) is at c * P + p.
    for (int round = 1, bits = V; bits > 1; ++round, bits /= 2) {
        Func next("deinterleaved" + std::to_string(round));
        next(i, xt, ct, y, n) = a.output_tiles.back()((i % (N / 2)) * 2 + i / (N / 2), xt, ct, y, n);
        a.output_tiles.push_back(next);
    }
    a.output(a.x, a.y, a.c, a.n) = a.output_tiles.back()((a.c % V) * P + a.x % P, a.x / P, a.c / V, a.y, a.n);
}

}  // namespace

std::vector<Var> LayerAlgorithm::storage_vars() const {
    if (spec.layout == Layout::NCHW) return {x, y, c, n};
    return {c, x, y, n};
}

Expr LayerAlgorithm::at(const Func &f, Expr c_, Expr x_, Expr y_, Expr n_) const {
    if (spec.layout == Layout::NCHW) return Func(f)(x_, y_, c_, n_);
    return Func(f)(c_, x_, y_, n_);
}

FuncRef LayerAlgorithm::def(Func &f) const {
    std::vector<Var> v = storage_vars();
    return f(v);
}

std::vector<Argument> LayerAlgorithm::arguments() const {
    if (spec.kind == LayerKind::Conv) return {input, weight, bias};
    return {input, weight, bias, pw_weight, pw_bias};
}

LayerAlgorithm define_algorithm(const LayerSpec &spec, WeightLayout weight_layout, const AlgorithmInputs &inputs,
                                OutputTranspose output_transpose) {
    LayerAlgorithm a;
    a.spec = spec;
    a.weight_layout = weight_layout;
    a.output_transpose = output_transpose;
    const bool co_inner = weight_layout == WeightLayout::ChannelsInnermost;
    const int oh = spec.out_h(), ow = spec.out_w();
    const bool nchw = spec.layout == Layout::NCHW;
    Var c = a.c, x = a.x, y = a.y, n = a.n;

    a.input = inputs.input.defined() ? inputs.input : ImageParam(Float(32), 4, "input");
    if (nchw) {
        constrain_dense(a.input, {spec.w, spec.h, spec.c1, spec.n});
    } else {
        constrain_dense(a.input, {spec.c1, spec.w, spec.h, spec.n});
    }

    // Zero padding, as PyTorch pads. The in-bounds test is tagged `likely`, so a loop over the
    // padded rows is partitioned and its steady state loads the input with no select or clamp (a
    // clamped vector index becomes a gather). Not BoundaryConditions::constant_exterior: with
    // constant bounds, Halide 14's simplifier and CSE move its likely tag off the clamp and the
    // loops are not partitioned (halide/Halide#7929); a batch-8 layer spent half its time there.
    Expr inside = x >= 0 && x < spec.w && y >= 0 && y < spec.h;
    Expr xc = clamp(x, 0, spec.w - 1), yc = clamp(y, 0, spec.h - 1);
    a.def(a.padded) = select(likely(inside), a.at(a.input, c, xc, yc, n), 0.0f);

    Var xq = a.xq, ph = a.ph;
    Expr staged_value = a.at(a.padded, c, xq * spec.s + ph, y, n);
    if (nchw) {
        a.staged(xq, ph, y, c, n) = staged_value;
    } else {
        a.staged(c, xq, ph, y, n) = staged_value;
    }
    // The zero-padded input at (c, x * s + kx - p, y * s + ky - p, n), read through `staged`.
    auto window = [&](Expr c_, Expr kx, Expr ky) {
        Expr shifted = kx - spec.p;  // Halide's / and % round towards -infinity for s > 0
        Expr xq_ = x + shifted / spec.s, ph_ = shifted % spec.s, y_ = y * spec.s + ky - spec.p;
        return nchw ? a.staged(xq_, ph_, y_, c_, n) : a.staged(c_, xq_, ph_, y_, n);
    };

    if (spec.kind == LayerKind::Conv) {
        const int cig = spec.c1 / spec.g, cog = spec.c2 / spec.g;
        a.r = RDom(0, spec.k, 0, spec.k, 0, cig, "r");
        a.weight = inputs.weight.defined() ? inputs.weight : ImageParam(Float(32), 4, "weight");
        constrain_dense(a.weight, weight_extents(spec, weight_layout));
        Expr w;
        switch (weight_layout.order) {
        case WeightLayout::Order::PyTorch: w = a.weight(a.r.x, a.r.y, a.r.z, c); break;
        case WeightLayout::Order::ChannelsInnermost: w = a.weight(c, a.r.z, a.r.x, a.r.y); break;
        case WeightLayout::Order::OutputBlocked: {
            const int b = weight_layout.block;
            w = a.weight(c % b, a.r.y * spec.k + a.r.x, a.r.z, c / b);
            break;
        }
        }
        a.bias = inputs.bias.defined() ? inputs.bias : ImageParam(Float(32), 1, "bias");
        constrain_dense(a.bias, {spec.c2});

        // The group's first input channel. Where the weights come in blocks of output channels that
        // never straddle two groups, the group is taken from the block's first channel: the same
        // value, but one a register tile cut at block boundaries (its channels unrolled) can see is
        // shared by all of its channels, so their input rows are one load instead of one each.
        Expr group = c / cog;
        if (weight_layout.order == WeightLayout::Order::OutputBlocked && cog % weight_layout.block == 0) {
            group = ((c / weight_layout.block) * weight_layout.block) / cog;
        }
        Expr in_c = group * cig + a.r.z;
        a.def(a.conv) = a.bias(c);
        a.def(a.conv) += w * window(in_c, a.r.x, a.r.y);
        define_output(a, a.conv);
    } else {
        a.weight = inputs.weight.defined() ? inputs.weight : ImageParam(Float(32), 3, "dw_weight");
        constrain_dense(a.weight, weight_extents(spec, weight_layout));
        a.bias = inputs.bias.defined() ? inputs.bias : ImageParam(Float(32), 1, "dw_bias");
        constrain_dense(a.bias, {spec.c1});
        a.pw_weight = inputs.pw_weight.defined() ? inputs.pw_weight : ImageParam(Float(32), 2, "pw_weight");
        constrain_dense(a.pw_weight, pw_weight_extents(spec, weight_layout));
        a.pw_bias = inputs.pw_bias.defined() ? inputs.pw_bias : ImageParam(Float(32), 1, "pw_bias");
        constrain_dense(a.pw_bias, {spec.c2});

        a.r = RDom(0, spec.k, 0, spec.k, "r");
        a.def(a.dw_acc) = a.bias(c);
        Expr dw_w = co_inner ? a.weight(c, a.r.x, a.r.y) : a.weight(a.r.x, a.r.y, c);
        a.def(a.dw_acc) += dw_w * window(c, a.r.x, a.r.y);
        a.def(a.depthwise) = activation_expr(spec.dw_act, a.at(a.dw_acc, c, x, y, n), spec.alpha);

        a.r_pw = RDom(0, spec.c1, "r_pw");
        a.def(a.pointwise) = a.pw_bias(c);
        Expr pw_w;
        switch (weight_layout.order) {
        case WeightLayout::Order::PyTorch: pw_w = a.pw_weight(a.r_pw.x, c); break;
        case WeightLayout::Order::ChannelsInnermost: pw_w = a.pw_weight(c, a.r_pw.x); break;
        case WeightLayout::Order::OutputBlocked: {
            const int b = weight_layout.block;
            pw_w = a.pw_weight(a.r_pw.x * b + c % b, c / b);
            break;
        }
        }
        a.def(a.pointwise) += pw_w * a.at(a.depthwise, a.r_pw.x, x, y, n);
        define_output(a, a.pointwise);
    }

    // The output is dense with constant sizes too; constraining it lets Halide skip stride checks.
    if (nchw) {
        constrain_dense(a.output.output_buffer(), {ow, oh, spec.c2, spec.n});
    } else {
        constrain_dense(a.output.output_buffer(), {spec.c2, ow, oh, spec.n});
    }
    return a;
}

}  // namespace convgen
