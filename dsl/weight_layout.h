// How a compiled kernel expects its BN-folded weights in memory. The layout is chosen with the
// schedule (a kernel vectorised over output channels wants them innermost, one that broadcasts a
// tile of output channels' weights wants that tile's weights side by side) and applied once, at
// load time, by convgen::pack_weights (runtime/weights.h).
#pragma once

#include <string>
#include <vector>

#include "dsl/layer_spec.h"

namespace convgen {

struct WeightLayout {
    enum class Order {
        // PyTorch's order: conv [c2][c1/g][k][k]; depthwise [c1][k][k]; pointwise [c2][c1].
        PyTorch,
        // Output channels innermost: conv [k][k][c1/g][c2]; depthwise [k][k][c1]; pointwise [c1][c2].
        ChannelsInnermost,
        // Output channels in blocks of `block`, the block innermost: conv [c2/B][c1/g][k][k][B],
        // pointwise [c2/B][c1][B] (c2 rounded up to whole blocks, zeros past c2); depthwise as
        // PyTorch. A kernel whose register tile broadcasts B output channels' weights per reduction
        // step then reads them from one cache line, in one sequential stream, instead of from B
        // rows of the PyTorch matrix (B streams, often a power of two apart; dw->pw 1.02-1.05x).
        OutputBlocked,
    };
    Order order = Order::PyTorch;
    int block = 1;  // OutputBlocked: output channels per block (>= 2)

    static const WeightLayout PyTorch, ChannelsInnermost;
    // Blocks of one channel are PyTorch's order: output_blocked(1) is PyTorch.
    static WeightLayout output_blocked(int block) {
        return block <= 1 ? WeightLayout{Order::PyTorch, 1} : WeightLayout{Order::OutputBlocked, block};
    }

    bool operator==(const WeightLayout &o) const { return order == o.order && block == o.block; }
    bool operator!=(const WeightLayout &o) const { return !(*this == o); }
};

inline const WeightLayout WeightLayout::PyTorch{WeightLayout::Order::PyTorch, 1};
inline const WeightLayout WeightLayout::ChannelsInnermost{WeightLayout::Order::ChannelsInnermost, 1};

inline std::string weight_layout_name(const WeightLayout &l) {
    switch (l.order) {
    case WeightLayout::Order::PyTorch: return "pytorch";
    case WeightLayout::Order::ChannelsInnermost: return "channels_innermost";
    case WeightLayout::Order::OutputBlocked: return "output_blocked" + std::to_string(l.block);
    }
    return "?";
}

// Output channel blocks of an OutputBlocked layout (c2 rounded up to whole blocks).
inline int output_blocks(const LayerSpec &spec, const WeightLayout &l) { return (spec.c2 + l.block - 1) / l.block; }

// Halide extents (innermost first) of the conv weight, or of dwconv's depthwise weight, in `l`.
// OutputBlocked conv: (block, k*k taps, c1/g, blocks).
inline std::vector<int> weight_extents(const LayerSpec &spec, const WeightLayout &l) {
    const int k = spec.k;
    if (spec.kind == LayerKind::DepthwisePointwise) {
        if (l.order == WeightLayout::Order::ChannelsInnermost) return {spec.c1, k, k};
        return {k, k, spec.c1};
    }
    const int cig = spec.c1 / spec.g;
    switch (l.order) {
    case WeightLayout::Order::PyTorch: break;
    case WeightLayout::Order::ChannelsInnermost: return {spec.c2, cig, k, k};
    case WeightLayout::Order::OutputBlocked: return {l.block, k * k, cig, output_blocks(spec, l)};
    }
    return {k, k, cig, spec.c2};
}

// Halide extents (innermost first) of dwconv's pointwise weight in `l`. OutputBlocked:
// (block * c1, blocks), so that a step along c1 is `block` floats.
inline std::vector<int> pw_weight_extents(const LayerSpec &spec, const WeightLayout &l) {
    switch (l.order) {
    case WeightLayout::Order::PyTorch: break;
    case WeightLayout::Order::ChannelsInnermost: return {spec.c2, spec.c1};
    case WeightLayout::Order::OutputBlocked: return {l.block * spec.c1, output_blocks(spec, l)};
    }
    return {spec.c1, spec.c2};
}

// How the activated result reaches an NCHW output whose schedule accumulates output channel
// vectors (a tile of `pixels` pixels of one row x `lanes` channels in registers, channel
// innermost). Off (pixels 0): the output reads the accumulator directly, and storing a channel
// vector into NCHW is one scalar store per lane. On: the tile is activated as channel vectors,
// then transposed by log2(lanes) rounds of deinterleaving (each output vector of a round is the
// even or odd lanes of two vectors of the one before: one two-source shuffle), so the output
// stores rows of `pixels` floats. Needs NCHW, rows a multiple of `pixels` (even) and channels a
// multiple of `lanes` (a power of two).
struct OutputTranspose {
    int pixels = 0;
    int lanes = 0;
    bool on() const { return pixels > 0; }
};

}  // namespace convgen
