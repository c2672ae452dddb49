// A compiled layer, JIT or AOT alike: a Halide argv entry point plus what it was built from.
// Running it needs no LLVM and no libHalide; only the Halide runtime the code was linked with.
#pragma once

#include <memory>
#include <string>

#include "dsl/layer_spec.h"
#include "runtime/tensor.h"
#include "runtime/weights.h"

namespace convgen {

// Halide's argv calling convention: one pointer per argument (halide_buffer_t* for buffers),
// in the order documented in dsl/algorithms.h, output last. Returns 0 on success.
using KernelEntry = int (*)(void **args);

struct KernelInfo {
    LayerSpec spec;
    std::string target;    // Halide target string the code was compiled for
    std::string schedule;  // ScheduleParams text
    std::string origin;    // "jit" or "aot"
    WeightLayout weight_layout = WeightLayout::PyTorch;  // what run() expects (see pack())
};

class Kernel {
public:
    Kernel(KernelEntry entry, KernelInfo info, std::shared_ptr<void> keep_alive)
        : entry_(entry), info_(std::move(info)), keep_alive_(std::move(keep_alive)) {}

    const KernelInfo &info() const { return info_; }
    const LayerSpec &spec() const { return info_.spec; }

    // Reorders folded weights into this kernel's layout: do it once, at load time.
    PackedWeights pack(const FoldedWeights &weights) const { return pack_weights(info_.spec, weights, info_.weight_layout); }

    // Checks every shape against the spec, then runs. Thread-safe: all state is per call.
    void run(const Tensor &input, const PackedWeights &weights, Tensor &output) const;
    Tensor run(const Tensor &input, const PackedWeights &weights) const;  // allocates the output
    // Convenience: packs the weights on every call (use pack() + the overloads above in a loop).
    Tensor run(const Tensor &input, const FoldedWeights &weights) const { return run(input, pack(weights)); }
    void run(const Tensor &input, const FoldedWeights &weights, Tensor &output) const { run(input, pack(weights), output); }

private:
    KernelEntry entry_;
    KernelInfo info_;
    std::shared_ptr<void> keep_alive_;  // owns the code (a JIT module or nothing for AOT)
};

}  // namespace convgen
