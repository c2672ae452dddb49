// Strict .safetensors reader and F32 writer, on top of nlohmann::json.
// The checks follow the reference implementation (huggingface/safetensors): the header is a
// JSON object of {dtype, shape, data_offsets} entries plus an optional "__metadata__" object of
// strings; the tensors' byte ranges must tile the data section exactly (no overlap, no gap,
// nothing after the last tensor) and each range must be numel * itemsize bytes long.
#include "runtime/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/errors.h"

namespace convgen {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // as the reference implementation
constexpr int kMaxJsonDepth = 64;

[[noreturn]] void fail(const std::string &origin, const std::string &problem) { throw Error(origin + ": " + problem); }

std::string quote_name(const std::string &name) { return "'" + printable(name, 100) + "'"; }

// Bytes per element; 0 for a dtype we do not know.
size_t dtype_size(const std::string &dtype) {
    static const std::pair<const char *, size_t> sizes[] = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
        {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
        {"F32", 4},  {"F64", 8}, {"I64", 8},  {"U64", 8},     {"C64", 8},
    };
    for (const auto &s : sizes) {
        if (dtype == s.first) return s.second;
    }
    return 0;
}

bool host_is_little_endian() {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    const uint16_t one = 1;
    uint8_t first;
    std::memcpy(&first, &one, 1);
    return first == 1;
#endif
}

uint16_t load_u16_le(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t load_u32_le(const uint8_t *p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// The deepest nesting of [ and { outside strings, stopping early past `limit`.
int json_depth(const uint8_t *p, size_t n, int limit) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < n; ++i) {
        uint8_t c = p[i];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
            if (deepest > limit) return deepest;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return deepest;
}

// A non-negative JSON integer that fits int64; otherwise an error naming `what`.
uint64_t json_uint(const json &v, const std::string &origin, const std::string &what) {
    if (v.is_number_unsigned()) {
        uint64_t u = v.get<uint64_t>();
        if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail(origin, what + " is too large");
        return u;
    }
    if (v.is_number_integer()) fail(origin, what + " is negative (" + std::to_string(v.get<int64_t>()) + ")");
    fail(origin, what + " must be a non-negative integer, not " + printable(v.dump(-1, ' ', true), 40));
}

}  // namespace

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        // Zero or subnormal: mantissa * 2^-24, exact in float.
        float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf / nan (payload kept)
    return bits_to_float(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

float bfloat16_to_float(uint16_t b) { return bits_to_float(uint32_t(b) << 16); }

SafeTensorsFile SafeTensorsFile::read(const std::string &path) {
    return parse(read_file_bytes(path), "'" + printable(path, 200) + "'");
}

SafeTensorsFile SafeTensorsFile::parse(std::vector<uint8_t> bytes, const std::string &origin) {
    SafeTensorsFile file;
    file.origin_ = origin;
    const size_t size = bytes.size();
    if (size < 8) {
        fail(origin, "too short for a .safetensors file (" + std::to_string(size) + " bytes; the header length alone takes 8)");
    }
    uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i) header_len |= uint64_t(bytes[i]) << (8 * i);
    if (header_len > kMaxHeaderBytes) {
        fail(origin, "header length " + std::to_string(header_len) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");
    }
    if (header_len > size - 8) {
        fail(origin, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                         std::to_string(size - 8) + " bytes after the length field)");
    }
    if (header_len == 0) fail(origin, "the JSON header is empty");
    const uint8_t *header = bytes.data() + 8;
    const size_t header_size = static_cast<size_t>(header_len);
    if (json_depth(header, header_size, kMaxJsonDepth) > kMaxJsonDepth) {
        fail(origin, "the JSON header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }

    // Parse, rejecting duplicate keys (nlohmann would silently keep the last one).
    std::vector<std::set<std::string>> open_objects;
    json::parser_callback_t on_event = [&](int, json::parse_event_t event, json &parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start: open_objects.emplace_back(); break;
            case json::parse_event_t::object_end:
                if (!open_objects.empty()) open_objects.pop_back();
                break;
            case json::parse_event_t::key:
                if (!open_objects.empty() && parsed.is_string() &&
                    !open_objects.back().insert(parsed.get<std::string>()).second) {
                    fail(origin, "the JSON header has the key " + quote_name(parsed.get<std::string>()) + " twice");
                }
                break;
            default: break;
        }
        return true;
    };
    json root;
    try {
        root = json::parse(header, header + header_size, on_event, /*allow_exceptions=*/true);
    } catch (const json::exception &e) {
        fail(origin, "the header is not valid JSON: " + printable(e.what(), 200));
    }
    if (!root.is_object()) fail(origin, std::string("the JSON header is ") + root.type_name() + ", not an object");

    const uint64_t data_size = size - 8 - header_len;
    struct Range {
        uint64_t begin, end;
        const std::string *name;
    };
    std::vector<Range> ranges;
    for (auto it = root.begin(); it != root.end(); ++it) {
        const std::string &name = it.key();
        const json &entry = it.value();
        if (name == "__metadata__") {
            if (!entry.is_object()) fail(origin, "\"__metadata__\" must be an object of strings");
            for (auto m = entry.begin(); m != entry.end(); ++m) {
                if (!m.value().is_string()) fail(origin, "\"__metadata__\" entry " + quote_name(m.key()) + " is not a string");
            }
            continue;
        }
        const std::string what = "tensor " + quote_name(name);
        if (!entry.is_object()) fail(origin, what + " is described by " + entry.type_name() + ", not an object");
        for (auto f = entry.begin(); f != entry.end(); ++f) {
            if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") {
                fail(origin, what + " has an unexpected field " + quote_name(f.key()));
            }
        }
        for (const char *field : {"dtype", "shape", "data_offsets"}) {
            if (!entry.contains(field)) fail(origin, what + " has no \"" + field + "\"");
        }
        const json &dtype = entry["dtype"], &shape = entry["shape"], &offsets = entry["data_offsets"];

        SafeTensorInfo info;
        if (!dtype.is_string()) fail(origin, what + ": \"dtype\" is not a string");
        info.dtype = dtype.get<std::string>();
        const size_t itemsize = dtype_size(info.dtype);
        if (itemsize == 0) fail(origin, what + " has an unknown dtype " + quote_name(info.dtype));

        if (!shape.is_array()) fail(origin, what + ": \"shape\" is not an array");
        uint64_t numel = 1;
        bool overflow = false, has_zero = false;
        for (size_t i = 0; i < shape.size(); ++i) {
            uint64_t d = json_uint(shape[i], origin, what + ": shape[" + std::to_string(i) + "]");
            info.shape.push_back(static_cast<int64_t>(d));
            if (d == 0) {
                has_zero = true;
            } else if (numel > uint64_t(std::numeric_limits<int64_t>::max()) / itemsize / d) {
                overflow = true;
            } else {
                numel *= d;
            }
        }
        if (overflow) fail(origin, what + ": shape " + shape_to_string(info.shape) + " is too large (its byte size overflows 64 bits)");
        if (has_zero) numel = 0;

        if (!offsets.is_array() || offsets.size() != 2) fail(origin, what + ": \"data_offsets\" must be an array [begin, end]");
        info.begin = json_uint(offsets[0], origin, what + ": data_offsets[0]");
        info.end = json_uint(offsets[1], origin, what + ": data_offsets[1]");
        if (info.begin > info.end) {
            fail(origin, what + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] end before they begin");
        }
        if (info.end > data_size) {
            fail(origin, what + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                             "] run past the end of the data section (" + std::to_string(data_size) + " bytes)");
        }
        const uint64_t expected = numel * itemsize;
        if (info.end - info.begin != expected) {
            fail(origin, what + " (" + info.dtype + " " + shape_to_string(info.shape) + ") needs " + std::to_string(expected) +
                             " bytes but its data_offsets span " + std::to_string(info.end - info.begin));
        }
        auto inserted = file.tensors_.emplace(name, std::move(info));
        ranges.push_back({inserted.first->second.begin, inserted.first->second.end, &inserted.first->first});
    }

    // The ranges must tile [0, data_size): sorted by offset, each starts where the previous ends.
    std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    const std::string *previous = nullptr;
    for (const Range &r : ranges) {
        if (r.begin < covered) {
            fail(origin, "tensors " + quote_name(*previous) + " and " + quote_name(*r.name) + " overlap (bytes " +
                             std::to_string(r.begin) + " to " + std::to_string(covered) + " of the data section)");
        }
        if (r.begin > covered) {
            fail(origin, "bytes " + std::to_string(covered) + " to " + std::to_string(r.begin) +
                             " of the data section belong to no tensor (before " + quote_name(*r.name) + ")");
        }
        covered = r.end;
        if (r.end > r.begin) previous = r.name;
    }
    if (covered != data_size) {
        fail(origin, std::to_string(data_size - covered) + " bytes after the last tensor belong to no tensor");
    }

    file.bytes_ = std::move(bytes);
    file.data_start_ = 8 + header_size;
    return file;
}

bool SafeTensorsFile::has(const std::string &name) const { return tensors_.count(name) != 0; }

const SafeTensorInfo &SafeTensorsFile::info(const std::string &name) const {
    auto it = tensors_.find(name);
    if (it != tensors_.end()) return it->second;
    std::string known;
    size_t shown = 0;
    for (const auto &kv : tensors_) {
        if (shown == 8) {
            known += ", ...";
            break;
        }
        known += (shown ? ", " : "") + quote_name(kv.first);
        ++shown;
    }
    if (tensors_.empty()) fail(origin_, "no tensor named " + quote_name(name) + " (the file holds no tensors)");
    fail(origin_, "no tensor named " + quote_name(name) + " (the file has " + std::to_string(tensors_.size()) +
                      (tensors_.size() == 1 ? " tensor: " : " tensors: ") + known + ")");
}

std::vector<float> SafeTensorsFile::read_f32(const std::string &name) const {
    const SafeTensorInfo &ti = info(name);
    const uint8_t *p = bytes_.data() + data_start_ + ti.begin;
    const uint64_t nbytes = ti.end - ti.begin;
    std::vector<float> out;
    if (ti.dtype == "F32") {
        out.resize(static_cast<size_t>(nbytes / 4));
        if (host_is_little_endian()) {
            if (!out.empty()) std::memcpy(out.data(), p, out.size() * 4);
        } else {
            for (size_t i = 0; i < out.size(); ++i) out[i] = bits_to_float(load_u32_le(p + 4 * i));
        }
    } else if (ti.dtype == "F16") {
        out.resize(static_cast<size_t>(nbytes / 2));
        for (size_t i = 0; i < out.size(); ++i) out[i] = half_to_float(load_u16_le(p + 2 * i));
    } else if (ti.dtype == "BF16") {
        out.resize(static_cast<size_t>(nbytes / 2));
        for (size_t i = 0; i < out.size(); ++i) out[i] = bfloat16_to_float(load_u16_le(p + 2 * i));
    } else {
        fail(origin_, "tensor " + quote_name(name) + " has dtype " + ti.dtype +
                          "; convgen reads F32, F16 and BF16 weights (convert it, e.g. with tensor.float())");
    }
    return out;
}

std::vector<std::string> SafeTensorsFile::names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto &kv : tensors_) out.push_back(kv.first);
    return out;
}

void write_safetensors(const std::string &path, const std::vector<std::pair<std::string, Tensor>> &tensors) {
    const std::string where = "cannot write '" + printable(path, 200) + "'";
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::set<std::string> seen;
    uint64_t offset = 0;
    for (const auto &nt : tensors) {
        const std::string &name = nt.first;
        const Tensor &t = nt.second;
        if (name == "__metadata__") throw Error(where + ": \"__metadata__\" is not a tensor name");
        if (!seen.insert(name).second) throw Error(where + ": tensor " + quote_name(name) + " is given twice");
        uint64_t numel = 1;
        for (int64_t d : t.shape) {
            if (d < 0) throw Error(where + ": tensor " + quote_name(name) + " has a negative dimension");
            if (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / 4 / uint64_t(d)) {
                throw Error(where + ": tensor " + quote_name(name) + " is too large");
            }
            numel *= uint64_t(d);
        }
        if (numel != t.data.size()) {
            throw Error(where + ": tensor " + quote_name(name) + " has shape " + shape_to_string(t.shape) + " but " +
                        std::to_string(t.data.size()) + " elements");
        }
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = "F32";
        entry["shape"] = t.shape;
        entry["data_offsets"] = {offset, offset + numel * 4};
        header[name] = std::move(entry);
        offset += numel * 4;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception &e) {
        throw Error(where + ": a tensor name is not valid UTF-8 (" + printable(e.what(), 120) + ")");
    }
    text.append((8 - text.size() % 8) % 8, ' ');

    std::vector<uint8_t> out(8 + text.size() + offset);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));
    std::memcpy(out.data() + 8, text.data(), text.size());
    uint8_t *dst = out.data() + 8 + text.size();
    for (const auto &nt : tensors) {
        for (float f : nt.second.data) {
            uint32_t bits;
            std::memcpy(&bits, &f, 4);
            for (int j = 0; j < 4; ++j) *dst++ = static_cast<uint8_t>(bits >> (8 * j));
        }
    }
    write_file_bytes(path, out.data(), out.size());
}

}  // namespace convgen
