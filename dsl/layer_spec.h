// LayerSpec: the complete description of one layer, parsed from the text format of
// ../shared/bench/layers.txt. Its normalised text form (to_string) is the layer's
// identity: the key of the JIT cache, of the schedule database and of the AOT registry.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

enum class LayerKind { Conv, DepthwisePointwise };

enum class Activation { Identity, Relu, Relu6, Leaky, Silu, Gelu, GeluTanh, Hardswish, Sigmoid, Tanh };

enum class Layout { NCHW, NHWC };

struct LayerSpec {
    LayerKind kind = LayerKind::Conv;
    std::string name;  // a label only; not part of the identity
    int n = 1;
    int c1 = 0;        // input channels
    int c2 = 0;        // output channels
    int h = 0, w = 0;  // input spatial size
    int k = 0;         // kernel size (square); for dwconv the depthwise kernel
    int s = 1;         // stride (of the depthwise conv for dwconv)
    int p = 0;         // zero padding (of the depthwise conv for dwconv)
    int g = 1;         // groups (conv only)
    Activation act = Activation::Relu;     // final activation
    float alpha = 0.01f;                   // leaky slope, for act or dw_act = leaky
    bool bn = true;                        // BatchNorm after the (pointwise) conv
    Activation dw_act = Activation::Relu;  // dwconv only
    bool dw_bn = true;                     // dwconv only
    float eps = 1e-5f;                     // BatchNorm eps
    Layout layout = Layout::NCHW;

    int out_h() const { return (h + 2 * p - k) / s + 1; }
    int out_w() const { return (w + 2 * p - k) / s + 1; }
    int out_channels() const { return c2; }
    // Output channels of one group (all of c2 for dwconv, whose pointwise stage is dense).
    int out_channels_per_group() const { return kind == LayerKind::Conv ? c2 / g : c2; }
    bool is_depthwise_conv() const { return kind == LayerKind::Conv && g == c1 && g == c2; }

    // Tensor shapes in the user's layout: NCHW -> [n,c,h,w], NHWC -> [n,h,w,c].
    std::vector<int64_t> input_shape() const;
    std::vector<int64_t> output_shape() const;

    int64_t macs() const;  // multiply-accumulates of one forward pass (DESIGN.md section 4)
    double flops() const { return 2.0 * static_cast<double>(macs()); }

    // Normalised form: every field explicit, fixed order, no name. Parsing it gives back an equal spec.
    std::string to_string() const;
    // Normalised form with name= first (for display and suite files).
    std::string to_string_with_name() const;

    bool operator==(const LayerSpec &o) const { return to_string() == o.to_string(); }
    bool operator!=(const LayerSpec &o) const { return !(*this == o); }
};

// Parses one line of the spec text format ("conv c1=64 c2=64 h=56 w=56 k=3 ...") and validates it.
// Throws convgen::Error naming the offending field and the reason.
LayerSpec parse_layer_spec(const std::string &text);

// Throws convgen::Error if the spec is invalid (sizes, divisibility, overflow...).
void validate(const LayerSpec &spec);

// Parses a suite file: one spec per line, '#' comments and blank lines ignored.
// Errors name the file and line.
std::vector<LayerSpec> parse_suite_file(const std::string &path);
std::vector<LayerSpec> parse_suite_text(const std::string &text, const std::string &origin);

const char *activation_name(Activation a);
bool parse_activation(const std::string &name, Activation *out);
const std::vector<Activation> &all_activations();
const char *layout_name(Layout l);
const char *kind_name(LayerKind k);

// PyTorch's definition of each activation, in double precision (used by the reference).
double apply_activation(Activation a, double x, double alpha);

}  // namespace convgen
