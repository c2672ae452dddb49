// Strict .safetensors reader (and a small F32 writer, for tests and tools).
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data. Every length, offset and shape is checked against the file size;
// overlapping or out-of-range tensors, bad JSON and unsupported dtypes are convgen::Errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tensor.h"

namespace convgen {

struct SafeTensorInfo {
    std::string dtype;            // "F32", "F16", "BF16", ... as in the file
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafeTensorsFile {
public:
    static SafeTensorsFile read(const std::string &path);
    // `origin` names the data in error messages.
    static SafeTensorsFile parse(std::vector<uint8_t> bytes, const std::string &origin);

    bool has(const std::string &name) const;
    const SafeTensorInfo &info(const std::string &name) const;  // throws if absent
    // The tensor converted to float32 (F32, F16 and BF16 are supported; other dtypes throw).
    std::vector<float> read_f32(const std::string &name) const;
    std::vector<std::string> names() const;
    const std::string &origin() const { return origin_; }

private:
    std::string origin_;
    std::vector<uint8_t> bytes_;
    size_t data_start_ = 0;
    std::map<std::string, SafeTensorInfo> tensors_;
};

// IEEE binary16 and bfloat16 bit patterns to float32 (exact: subnormals, infinities, NaN).
float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);

// Writes float32 tensors (in the given order) as a .safetensors file.
void write_safetensors(const std::string &path, const std::vector<std::pair<std::string, Tensor>> &tensors);

}  // namespace convgen
