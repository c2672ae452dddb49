// libFuzzer target: the .safetensors reader (runtime/safetensors.h, SafeTensorsFile::parse: the
// same code SafeTensorsFile::read runs on a file's bytes). For a file that parses, every tensor
// is read back as float32 (F32/F16/BF16; other dtypes must be a convgen::Error) and must hold
// product(shape) values; looking up an absent name must be a convgen::Error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "runtime/errors.h"
#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        const convgen::SafeTensorsFile file = convgen::SafeTensorsFile::parse(std::vector<uint8_t>(data, data + size), "<fuzz>");
        for (const std::string &name : file.names()) {
            FUZZ_CHECK(file.has(name));
            const convgen::SafeTensorInfo &info = file.info(name);
            FUZZ_CHECK(info.begin <= info.end && info.end <= size);
            uint64_t numel = 1;
            for (int64_t d : info.shape) {
                FUZZ_CHECK(d >= 0);
                numel *= static_cast<uint64_t>(d);
            }
            try {
                const std::vector<float> values = file.read_f32(name);
                FUZZ_CHECK(values.size() == numel);
            } catch (const convgen::Error &) {
                FUZZ_CHECK(info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16");
            }
        }
        bool threw = false;
        try {
            (void)file.info(std::string("\xff no such tensor", 17));
        } catch (const convgen::Error &) {
            threw = true;
        }
        FUZZ_CHECK(threw);
    } catch (const convgen::Error &) {
    }
    return 0;
}
