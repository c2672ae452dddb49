#include "runtime/kernel.h"

#include <HalideRuntime.h>

#include <array>
#include <vector>

#include "runtime/errors.h"
#include "runtime/memory_budget.h"

namespace convgen {

namespace {

// A dense float32 halide_buffer_t over memory convgen owns; dims innermost first.
struct DenseBuffer {
    std::array<halide_dimension_t, 4> dims{};
    halide_buffer_t buf{};

    DenseBuffer(const float *data, std::vector<int> extents) {
        int32_t stride = 1;
        for (size_t d = 0; d < extents.size(); ++d) {
            dims[d] = halide_dimension_t(0, extents[d], stride);
            stride *= extents[d];
        }
        buf.host = reinterpret_cast<uint8_t *>(const_cast<float *>(data));
        buf.type = halide_type_t(halide_type_float, 32, 1);
        buf.dimensions = static_cast<int32_t>(extents.size());
        buf.dim = dims.data();
    }
    DenseBuffer(const DenseBuffer &) = delete;
    DenseBuffer &operator=(const DenseBuffer &) = delete;
};

std::vector<int> activation_extents(const LayerSpec &s, int channels, int h, int w) {
    if (s.layout == Layout::NCHW) return {w, h, channels, s.n};
    return {channels, w, h, s.n};
}

void check_size(const char *what, size_t got, int64_t want) {
    if (static_cast<int64_t>(got) != want) {
        throw Error(std::string("kernel argument '") + what + "' has " + std::to_string(got) + " elements, expected " +
                    std::to_string(want));
    }
}

}  // namespace

void Kernel::run(const Tensor &input, const PackedWeights &weights, Tensor &output) const {
    const LayerSpec &s = info_.spec;
    if (input.shape != s.input_shape()) {
        throw Error("input shape " + shape_to_string(input.shape) + " does not match the layer's " +
                    shape_to_string(s.input_shape()) + " (" + layout_name(s.layout) + ")");
    }
    check_size("input", input.data.size(), Tensor::element_count(s.input_shape()));
    if (output.shape != s.output_shape() || static_cast<int64_t>(output.data.size()) != Tensor::element_count(s.output_shape())) {
        check_memory_budget(s);
        output = Tensor(s.output_shape());
    }
    if (weights.layout != info_.weight_layout) {
        throw Error(std::string("weights are packed as ") + weight_layout_name(weights.layout) + " but the kernel takes " +
                    weight_layout_name(info_.weight_layout) + " (use Kernel::pack)");
    }
    auto count = [](const std::vector<int> &extents) {
        int64_t n = 1;
        for (int e : extents) n *= e;
        return n;
    };
    const std::vector<int> w_extents = weight_extents(s, info_.weight_layout);
    DenseBuffer in(input.data.data(), activation_extents(s, s.c1, s.h, s.w));
    DenseBuffer out(output.data.data(), activation_extents(s, s.c2, s.out_h(), s.out_w()));
    int rc = 0;
    if (s.kind == LayerKind::Conv) {
        check_size("weight", weights.weight.size(), count(w_extents));
        check_size("bias", weights.bias.size(), s.c2);
        DenseBuffer w(weights.weight.data(), w_extents);
        DenseBuffer b(weights.bias.data(), {s.c2});
        void *args[] = {&in.buf, &w.buf, &b.buf, &out.buf};
        rc = entry_(args);
    } else {
        const std::vector<int> pw_extents = pw_weight_extents(s, info_.weight_layout);
        check_size("depthwise weight", weights.weight.size(), count(w_extents));
        check_size("depthwise bias", weights.bias.size(), s.c1);
        check_size("pointwise weight", weights.pw_weight.size(), count(pw_extents));
        check_size("pointwise bias", weights.pw_bias.size(), s.c2);
        DenseBuffer w(weights.weight.data(), w_extents);
        DenseBuffer b(weights.bias.data(), {s.c1});
        DenseBuffer pw(weights.pw_weight.data(), pw_extents);
        DenseBuffer pb(weights.pw_bias.data(), {s.c2});
        void *args[] = {&in.buf, &w.buf, &b.buf, &pw.buf, &pb.buf, &out.buf};
        rc = entry_(args);
    }
    if (rc != 0) {
        throw Error("kernel for '" + s.to_string() + "' (" + info_.origin + ", " + info_.target + ") failed with Halide error " +
                    std::to_string(rc));
    }
}

Tensor Kernel::run(const Tensor &input, const PackedWeights &weights) const {
    check_memory_budget(info_.spec);
    Tensor out(info_.spec.output_shape());
    run(input, weights, out);
    return out;
}

}  // namespace convgen
