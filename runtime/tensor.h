// A dense float32 tensor in C (row-major) order, the currency of convgen's I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

struct Tensor {
    std::vector<int64_t> shape;  // outermost first, as numpy and PyTorch print it
    std::vector<float> data;     // size == product(shape)

    Tensor() = default;
    explicit Tensor(std::vector<int64_t> s) : shape(std::move(s)), data(static_cast<size_t>(element_count(shape)), 0.0f) {}

    static int64_t element_count(const std::vector<int64_t> &s) {
        int64_t n = 1;
        for (int64_t d : s) n *= d;
        return n;
    }
    int64_t size() const { return static_cast<int64_t>(data.size()); }
};

// "[1, 64, 56, 56]"
std::string shape_to_string(const std::vector<int64_t> &shape);

// Reads a whole file. Throws convgen::Error naming the path when it is missing, a directory or
// unreadable.
std::vector<uint8_t> read_file_bytes(const std::string &path);
// Creates or truncates `path` and writes `size` bytes; throws convgen::Error on failure.
void write_file_bytes(const std::string &path, const void *data, size_t size);

// `text` made safe for a one-line error message: control and non-ASCII bytes are escaped (\xNN)
// and anything past `max_len` characters is cut off with "...".
std::string printable(const std::string &text, size_t max_len = 80);

}  // namespace convgen
