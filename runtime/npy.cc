// Strict .npy reader/writer. The format (NumPy's NEP 1):
//   "\x93NUMPY" major minor  header_len (u16 LE for 1.0, u32 LE for 2.0/3.0)  header  data
// where the header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and ended by '\n'. Only little-endian float32 in C order is accepted.
#include "runtime/npy.h"

#include <cctype>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "runtime/errors.h"

namespace convgen {

namespace {

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

[[noreturn]] void fail(const std::string &origin, const std::string &problem) { throw Error(origin + ": " + problem); }

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

void load_f32_le(const uint8_t *src, size_t count, float *dst) {
    if (host_is_little_endian()) {
        if (count) std::memcpy(dst, src, count * 4);
        return;
    }
    for (size_t i = 0; i < count; ++i) {
        const uint8_t *b = src + 4 * i;
        uint32_t bits = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
        std::memcpy(dst + i, &bits, 4);
    }
}

void store_f32_le(const float *src, size_t count, uint8_t *dst) {
    if (host_is_little_endian()) {
        if (count) std::memcpy(dst, src, count * 4);
        return;
    }
    for (size_t i = 0; i < count; ++i) {
        uint32_t bits;
        std::memcpy(&bits, src + i, 4);
        for (int j = 0; j < 4; ++j) dst[4 * i + j] = static_cast<uint8_t>(bits >> (8 * j));
    }
}

// ---- the header dict -------------------------------------------------------------------------

struct Value {
    enum Kind { String, Bool, Int, Tuple } kind = String;
    std::string str;
    bool boolean = false;
    int64_t integer = 0;
    std::vector<int64_t> tuple;
};

const char *kind_text(Value::Kind k) {
    switch (k) {
        case Value::String: return "a string";
        case Value::Bool: return "a boolean";
        case Value::Int: return "an integer";
        case Value::Tuple: return "a tuple";
    }
    return "?";
}

// A parser for the small subset of Python literal syntax that .npy headers use.
class HeaderParser {
public:
    HeaderParser(const std::string &text, const std::string &origin, bool allow_long_suffix)
        : s_(text), origin_(origin), allow_long_suffix_(allow_long_suffix) {}

    std::map<std::string, Value> parse_dict() {
        std::map<std::string, Value> dict;
        skip_ws();
        expect('{', "the header does not start with '{'");
        skip_ws();
        while (!at('}')) {
            if (eof()) malformed("the dict is not closed with '}'");
            if (!at('\'') && !at('"')) malformed("expected a quoted key at " + where());
            std::string key = parse_string();
            skip_ws();
            expect(':', "expected ':' after key '" + printable(key) + "'");
            skip_ws();
            Value v = parse_value(key);
            if (!dict.emplace(key, std::move(v)).second) malformed("duplicate key '" + printable(key) + "'");
            skip_ws();
            if (at(',')) {
                ++pos_;
                skip_ws();
            } else if (eof()) {
                malformed("the dict is not closed with '}'");
            } else if (!at('}')) {
                malformed("expected ',' or '}' at " + where());
            }
        }
        ++pos_;  // '}'
        skip_ws();
        if (!eof()) malformed("unexpected text after the dict at " + where());
        return dict;
    }

private:
    const std::string &s_;
    const std::string &origin_;
    bool allow_long_suffix_;
    size_t pos_ = 0;

    [[noreturn]] void malformed(const std::string &why) { fail(origin_, "malformed .npy header: " + why); }
    bool eof() const { return pos_ >= s_.size(); }
    bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
    std::string where() const {
        if (eof()) return "the end of the header";
        return "offset " + std::to_string(pos_) + " ('" + printable(s_.substr(pos_, 12), 12) + "')";
    }
    void expect(char c, const std::string &why) {
        if (!at(c)) malformed(why);
        ++pos_;
    }
    void skip_ws() {
        while (pos_ < s_.size()) {
            char c = s_[pos_];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
                ++pos_;
            } else {
                break;
            }
        }
    }
    bool literal(const char *word) {
        size_t n = std::strlen(word);
        if (s_.compare(pos_, n, word) != 0) return false;
        // The word must not run on into an identifier ("Truex").
        size_t end = pos_ + n;
        if (end < s_.size()) {
            char c = s_[end];
            if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') return false;
        }
        pos_ = end;
        return true;
    }

    std::string parse_string() {
        // Python 2 writers may have used u'...'.
        if (at('u') || at('U')) ++pos_;
        if (!at('\'') && !at('"')) malformed("expected a string at " + where());
        char quote = s_[pos_++];
        std::string out;
        for (;;) {
            if (eof()) malformed("unterminated string");
            char c = s_[pos_++];
            if (c == quote) break;
            if (c == '\n') malformed("unterminated string");
            if (c == '\\') {
                if (eof()) malformed("unterminated string");
                char e = s_[pos_++];
                if (e != '\\' && e != '\'' && e != '"') malformed("unsupported escape in a string");
                c = e;
            }
            out += c;
        }
        return out;
    }

    int64_t parse_int(const std::string &key) {
        bool negative = false;
        if (at('-') || at('+')) {
            negative = at('-');
            ++pos_;
            skip_ws();
        }
        if (eof() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) malformed("expected an integer at " + where());
        // Accumulate as a negative number so that INT64_MIN would be representable; report
        // overflow in either direction.
        uint64_t magnitude = 0;
        bool overflow = false;
        while (!eof() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
            unsigned d = static_cast<unsigned>(s_[pos_] - '0');
            if (magnitude > (std::numeric_limits<uint64_t>::max() - d) / 10) overflow = true;
            if (!overflow) magnitude = magnitude * 10 + d;
            ++pos_;
        }
        if (allow_long_suffix_ && (at('L') || at('l'))) ++pos_;  // Python 2's 3L
        if (!eof() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' || s_[pos_] == '.')) {
            malformed("bad number in '" + printable(key) + "' at " + where());
        }
        if (negative) {
            if (magnitude == 0) return 0;
            if (overflow || magnitude > uint64_t(std::numeric_limits<int64_t>::max()) + 1) {
                fail(origin_, "'" + printable(key) + "' holds an integer too large for 64 bits");
            }
            return static_cast<int64_t>(0 - magnitude);
        }
        if (overflow || magnitude > uint64_t(std::numeric_limits<int64_t>::max())) {
            fail(origin_, "'" + printable(key) + "' holds an integer too large for 64 bits");
        }
        return static_cast<int64_t>(magnitude);
    }

    Value parse_value(const std::string &key) {
        Value v;
        if (at('\'') || at('"') || ((at('u') || at('U')) && pos_ + 1 < s_.size() && (s_[pos_ + 1] == '\'' || s_[pos_ + 1] == '"'))) {
            v.kind = Value::String;
            v.str = parse_string();
        } else if (literal("True")) {
            v.kind = Value::Bool;
            v.boolean = true;
        } else if (literal("False")) {
            v.kind = Value::Bool;
            v.boolean = false;
        } else if (at('(')) {
            // A tuple: "()", "(3,)", "(3, 4)", "(3, 4,)". "(3)" is just the integer 3 in Python.
            ++pos_;
            skip_ws();
            v.kind = Value::Tuple;
            bool saw_comma = false;
            while (!at(')')) {
                if (eof()) malformed("unterminated tuple in '" + printable(key) + "'");
                v.tuple.push_back(parse_int(key));
                skip_ws();
                if (at(',')) {
                    saw_comma = true;
                    ++pos_;
                    skip_ws();
                } else if (!at(')')) {
                    malformed("expected ',' or ')' in '" + printable(key) + "' at " + where());
                }
            }
            ++pos_;
            if (v.tuple.size() == 1 && !saw_comma) {
                v.kind = Value::Int;  // parenthesised integer
                v.integer = v.tuple[0];
                v.tuple.clear();
            }
        } else if (at('[')) {
            if (key == "descr") fail(origin_, "structured dtypes (a list 'descr') are not supported; convgen reads float32 ('<f4')");
            malformed("a list is not allowed for '" + printable(key) + "'");
        } else if (at('-') || at('+') || (!eof() && std::isdigit(static_cast<unsigned char>(s_[pos_])))) {
            v.kind = Value::Int;
            v.integer = parse_int(key);
        } else {
            malformed("unexpected value for '" + printable(key) + "' at " + where());
        }
        return v;
    }
};

// "float64" for "<f8", or "" if the descr is not a simple numeric dtype.
std::string dtype_description(const std::string &descr) {
    std::string body = descr;
    if (!body.empty() && (body[0] == '<' || body[0] == '>' || body[0] == '|' || body[0] == '=')) body = body.substr(1);
    static const std::map<std::string, const char *> names = {
        {"f2", "float16"}, {"e", "float16"}, {"f4", "float32"}, {"f", "float32"}, {"f8", "float64"},
        {"d", "float64"}, {"f16", "float128"}, {"f12", "float96"}, {"g", "longdouble"},
        {"i1", "int8"}, {"i2", "int16"}, {"i4", "int32"}, {"i8", "int64"},
        {"u1", "uint8"}, {"u2", "uint16"}, {"u4", "uint32"}, {"u8", "uint64"},
        {"b1", "bool"}, {"?", "bool"}, {"c8", "complex64"}, {"c16", "complex128"}, {"c32", "complex256"},
        {"O", "object"}, {"O8", "object"},
    };
    auto it = names.find(body);
    if (it != names.end()) return it->second;
    if (!body.empty()) {
        switch (body[0]) {
            case 'S': case 'a': return "bytes";
            case 'U': return "unicode string";
            case 'V': return "void";
            case 'M': return "datetime64";
            case 'm': return "timedelta64";
            default: break;
        }
    }
    return "";
}

void check_descr(const std::string &descr, const std::string &origin) {
    if (descr == "<f4") return;
    const std::string shown = "'" + printable(descr, 40) + "'";
    if (descr == ">f4") {
        fail(origin, "big-endian dtype " + shown + " is not supported; convgen reads little-endian float32 ('<f4')");
    }
    std::string what = dtype_description(descr);
    if (what == "float32") {
        fail(origin, "dtype " + shown + " (float32 without an explicit little-endian byte order) is not supported; "
                     "convgen reads '<f4'");
    }
    if (!what.empty()) fail(origin, "dtype " + shown + " (" + what + ") is not supported; convgen reads float32");
    fail(origin, "dtype " + shown + " is not supported; convgen reads float32 ('<f4')");
}

}  // namespace

Tensor parse_npy(const uint8_t *data, size_t size, const std::string &origin) {
    if (size > 0 && data == nullptr) fail(origin, "no data");
    if (size < sizeof kMagic || std::memcmp(data, kMagic, sizeof kMagic) != 0) {
        fail(origin, "not an .npy file (bad magic: it does not start with \\x93NUMPY)");
    }
    if (size < 8) fail(origin, "file ends inside the .npy preamble (" + std::to_string(size) + " bytes)");
    const unsigned major = data[6], minor = data[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
        fail(origin, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                         " (convgen reads 1.0, 2.0 and 3.0)");
    }
    const size_t len_bytes = major == 1 ? 2 : 4;
    const size_t header_start = 8 + len_bytes;
    if (size < header_start) fail(origin, "file ends inside the .npy preamble (" + std::to_string(size) + " bytes)");
    uint64_t header_len = 0;
    for (size_t i = 0; i < len_bytes; ++i) header_len |= uint64_t(data[8 + i]) << (8 * i);
    if (header_len > size - header_start) {
        fail(origin, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                         std::to_string(size - header_start) + " bytes left after the preamble)");
    }
    const std::string header(reinterpret_cast<const char *>(data + header_start), static_cast<size_t>(header_len));
    if (header.find('\0') != std::string::npos) fail(origin, "malformed .npy header: it contains a NUL byte");

    HeaderParser parser(header, origin, /*allow_long_suffix=*/major < 3);
    std::map<std::string, Value> dict = parser.parse_dict();

    for (const auto &kv : dict) {
        if (kv.first != "descr" && kv.first != "fortran_order" && kv.first != "shape") {
            fail(origin, "malformed .npy header: unexpected key '" + printable(kv.first) + "'");
        }
    }
    for (const char *key : {"descr", "fortran_order", "shape"}) {
        if (!dict.count(key)) fail(origin, std::string("malformed .npy header: missing key '") + key + "'");
    }
    const Value &descr = dict["descr"], &fortran = dict["fortran_order"], &shape = dict["shape"];
    if (descr.kind != Value::String) fail(origin, std::string("malformed .npy header: 'descr' is ") + kind_text(descr.kind) + ", not a string");
    if (fortran.kind != Value::Bool) {
        fail(origin, std::string("malformed .npy header: 'fortran_order' is ") + kind_text(fortran.kind) + ", not True or False");
    }
    if (shape.kind != Value::Tuple) fail(origin, std::string("malformed .npy header: 'shape' is ") + kind_text(shape.kind) + ", not a tuple");

    check_descr(descr.str, origin);
    if (fortran.boolean) {
        fail(origin, "fortran_order is True (column-major data) is not supported; convgen reads C-order arrays "
                     "(save with numpy.ascontiguousarray)");
    }

    uint64_t numel = 1;
    for (int64_t d : shape.tuple) {
        if (d < 0) fail(origin, "shape " + shape_to_string(shape.tuple) + " has a negative dimension");
    }
    // The product of the non-zero dimensions must not overflow either, even when a zero
    // dimension makes the element count 0: later code multiplies dimensions in other orders.
    bool overflow = false, has_zero = false;
    for (int64_t d : shape.tuple) {
        uint64_t ud = static_cast<uint64_t>(d);
        if (ud == 0) {
            has_zero = true;
            continue;
        }
        if (numel > uint64_t(std::numeric_limits<int64_t>::max()) / 4 / ud) overflow = true;
        if (!overflow) numel *= ud;
    }
    if (overflow) {
        fail(origin, "shape " + shape_to_string(shape.tuple) + " is too large (its byte size overflows 64 bits)");
    }
    if (has_zero) numel = 0;
    const uint64_t expected = numel * 4;
    const uint64_t found = size - header_start - header_len;
    if (found < expected) {
        fail(origin, "data is truncated: expected " + std::to_string(expected) + " bytes, found " + std::to_string(found));
    }
    if (found > expected) {
        fail(origin, std::to_string(found - expected) + " unexpected bytes after the data (expected " +
                         std::to_string(expected) + " bytes, found " + std::to_string(found) + ")");
    }

    Tensor t;
    t.shape = shape.tuple;
    t.data.resize(static_cast<size_t>(numel));
    load_f32_le(data + header_start + header_len, static_cast<size_t>(numel), t.data.data());
    return t;
}

Tensor read_npy(const std::string &path) {
    std::vector<uint8_t> bytes = read_file_bytes(path);
    return parse_npy(bytes.data(), bytes.size(), "'" + printable(path, 200) + "'");
}

void write_npy(const std::string &path, const Tensor &tensor) {
    const std::string where = "'" + printable(path, 200) + "'";
    uint64_t numel = 1;
    for (int64_t d : tensor.shape) {
        if (d < 0) throw Error("cannot write " + where + ": shape " + shape_to_string(tensor.shape) + " has a negative dimension");
        if (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / 4 / uint64_t(d)) {
            throw Error("cannot write " + where + ": shape " + shape_to_string(tensor.shape) + " is too large");
        }
        numel *= uint64_t(d);
    }
    if (numel != tensor.data.size()) {
        throw Error("cannot write " + where + ": shape " + shape_to_string(tensor.shape) + " holds " +
                    std::to_string(numel) + " elements but the tensor has " + std::to_string(tensor.data.size()));
    }
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    for (size_t i = 0; i < tensor.shape.size(); ++i) {
        if (i) header += ", ";
        header += std::to_string(tensor.shape[i]);
    }
    if (tensor.shape.size() == 1) header += ",";
    header += "), }";
    // Pad with spaces and a final '\n' so that the data starts at a multiple of 64 bytes.
    size_t preamble = 10;
    auto padded = [&](size_t pre) { return (header.size() + 1 + pre + 63) / 64 * 64 - pre; };
    size_t total_header = padded(preamble);
    uint8_t major = 1;
    if (total_header > 0xffff) {
        major = 2;
        preamble = 12;
        total_header = padded(preamble);
    }
    header.append(total_header - header.size() - 1, ' ');
    header += '\n';

    std::vector<uint8_t> out(preamble + header.size() + numel * 4);
    std::memcpy(out.data(), kMagic, sizeof kMagic);
    out[6] = major;
    out[7] = 0;
    for (size_t i = 0; i < preamble - 8; ++i) out[8 + i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
    std::memcpy(out.data() + preamble, header.data(), header.size());
    store_f32_le(tensor.data.data(), tensor.data.size(), out.data() + preamble + header.size());
    write_file_bytes(path, out.data(), out.size());
}

}  // namespace convgen
