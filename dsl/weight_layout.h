// How a compiled kernel expects its BN-folded weights in memory. The layout is chosen with the
// schedule (a kernel vectorised over output channels wants them innermost) and applied once, at
// load time, by convgen::pack_weights (runtime/weights.h).
#pragma once

namespace convgen {

enum class WeightLayout {
    // PyTorch's order: conv [c2][c1/g][k][k]; depthwise [c1][k][k]; pointwise [c2][c1].
    PyTorch,
    // Output channels innermost: conv [k][k][c1/g][c2]; depthwise [k][k][c1]; pointwise [c1][c2].
    ChannelsInnermost,
};

inline const char *weight_layout_name(WeightLayout l) {
    return l == WeightLayout::PyTorch ? "pytorch" : "channels_innermost";
}

}  // namespace convgen
