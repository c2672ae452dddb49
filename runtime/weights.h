// Layer weights: as PyTorch stores them (RawWeights, BN unfolded) and as kernels consume
// them (FoldedWeights, BN folded into the weights and a per-channel bias).
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "dsl/weight_layout.h"
#include "runtime/safetensors.h"

namespace convgen {

struct BatchNormParams {
    std::vector<float> weight, bias, running_mean, running_var;  // each [channels]
};

// Unfolded weights with PyTorch's shapes, flattened in C order.
struct RawWeights {
    // conv: conv.weight [c2][c1/g][k][k]; dwconv: depthwise.weight [c1][1][k][k]
    std::vector<float> conv_weight;
    // dwconv only: pointwise.weight [c2][c1][1][1]
    std::vector<float> pointwise_weight;
    BatchNormParams bn;     // conv: bn (c2); dwconv: bn after the pointwise conv (c2); empty if spec.bn == 0
    BatchNormParams dw_bn;  // dwconv only: dw_bn (c1); empty if spec.dw_bn == 0
};

// What the kernels take: BN folded (scale = gamma / sqrt(var + eps), w' = w * scale,
// bias = beta - mean * scale); bias is all zeros when the layer has no BN.
struct FoldedWeights {
    std::vector<float> weight;     // conv: [c2][c1/g][k][k]; dwconv: depthwise [c1][k][k]
    std::vector<float> bias;       // conv: [c2]; dwconv: depthwise bias [c1]
    std::vector<float> pw_weight;  // dwconv only: [c2][c1]
    std::vector<float> pw_bias;    // dwconv only: [c2]
};

// Reads the tensors a spec needs from a state_dict (names as in DESIGN.md, each preceded by
// `prefix`, e.g. "model.3." ), checks every shape against the spec, converts F16/BF16 to F32.
RawWeights load_raw_weights(const LayerSpec &spec, const SafeTensorsFile &file, const std::string &prefix);

// Checks that raw weights have the sizes the spec needs; throws convgen::Error otherwise.
void check_raw_weights(const LayerSpec &spec, const RawWeights &raw);

FoldedWeights fold_batchnorm(const LayerSpec &spec, const RawWeights &raw);

// Storage starting on a cache line. The kernels load a tile's weights as whole vectors; from
// malloc's 16-byte (or, for large blocks, page + 16) alignment every 64-byte AVX-512 load of them
// straddles two cache lines (mbv1_batch8: 1.13x slower).
template <typename T>
struct CacheLineAllocator {
    using value_type = T;
    static constexpr std::size_t alignment = 64;
    CacheLineAllocator() = default;
    template <typename U>
    CacheLineAllocator(const CacheLineAllocator<U> &) {}
    T *allocate(std::size_t n) { return static_cast<T *>(::operator new(n * sizeof(T), std::align_val_t(alignment))); }
    void deallocate(T *p, std::size_t) { ::operator delete(p, std::align_val_t(alignment)); }
    template <typename U>
    bool operator==(const CacheLineAllocator<U> &) const { return true; }
    template <typename U>
    bool operator!=(const CacheLineAllocator<U> &) const { return false; }
};
using AlignedFloats = std::vector<float, CacheLineAllocator<float>>;

// Folded weights reordered into the layout a kernel takes; done once, at load time.
struct PackedWeights {
    WeightLayout layout = WeightLayout::PyTorch;
    AlignedFloats weight, bias, pw_weight, pw_bias;  // as FoldedWeights, in `layout`
};

PackedWeights pack_weights(const LayerSpec &spec, const FoldedWeights &folded, WeightLayout layout);

// Deterministic random weights (uniform, BN with positive variance), for tests and benchmarks.
RawWeights random_raw_weights(const LayerSpec &spec, unsigned seed);

}  // namespace convgen
