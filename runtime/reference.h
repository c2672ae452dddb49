// The plain C++ reference: PyTorch's semantics computed directly from the unfolded weights
// with double accumulation (BN applied explicitly, not folded). It is the oracle of every
// correctness test and of `convgen check`; it is deliberately simple, not fast.
#pragma once

#include "dsl/layer_spec.h"
#include "runtime/tensor.h"
#include "runtime/weights.h"

namespace convgen {

// `input` has spec.input_shape(); the result has spec.output_shape(). Throws convgen::Error on
// shape mismatch.
Tensor reference_forward(const LayerSpec &spec, const RawWeights &weights, const Tensor &input);

// max |a - b| over all elements; throws if shapes differ.
double max_abs_diff(const Tensor &a, const Tensor &b);
double max_abs(const Tensor &t);
// The project's tolerance: max|err| <= 1e-4 * max(1, max|expected|).
bool within_tolerance(const Tensor &expected, const Tensor &actual, double *max_err = nullptr, double *limit = nullptr);

// Deterministic uniform [-1, 1) input of spec.input_shape().
Tensor random_input(const LayerSpec &spec, unsigned seed);

}  // namespace convgen
