// Strict .npy (NumPy format 1.0/2.0/3.0) reader and writer for float32 C-order arrays.
// Every length and offset is checked; anything else (other dtypes, Fortran order,
// malformed headers, truncated data) is a convgen::Error naming the file and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/tensor.h"

namespace convgen {

Tensor read_npy(const std::string &path);
// `origin` names the data in error messages (a path, or "<fuzz>").
Tensor parse_npy(const uint8_t *data, size_t size, const std::string &origin);
void write_npy(const std::string &path, const Tensor &tensor);

}  // namespace convgen
