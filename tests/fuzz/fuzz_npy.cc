// libFuzzer target: the .npy reader (runtime/npy.h, parse_npy: the same code read_npy runs on a
// file's bytes). A tensor that parses must hold exactly product(shape) elements, all read from
// the input (the header length + 4 bytes per element == the input size).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "runtime/errors.h"
#include "runtime/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        const convgen::Tensor t = convgen::parse_npy(data, size, "<fuzz>");
        uint64_t numel = 1;
        for (int64_t d : t.shape) {
            FUZZ_CHECK(d >= 0);
            numel *= static_cast<uint64_t>(d);
        }
        FUZZ_CHECK(numel == t.data.size());
        FUZZ_CHECK(t.data.size() * 4 < size);
    } catch (const convgen::Error &) {
    }
    return 0;
}
