// Tests of the file formats (.npy, .safetensors) and of weight loading / BatchNorm folding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "runtime/errors.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "runtime/weights.h"

namespace fs = std::filesystem;
using namespace convgen;

namespace {

// A fresh directory per test, removed afterwards.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "convgen_test_io_XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        const char *made = mkdtemp(buf.data());
        if (!made) throw std::runtime_error("mkdtemp failed");
        path_ = made;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string &name) const { return (fs::path(path_) / name).string(); }
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

using Bytes = std::vector<uint8_t>;

void write_bytes(const std::string &path, const Bytes &b) { write_file_bytes(path, b.data(), b.size()); }

Bytes str_bytes(const std::string &s) { return Bytes(s.begin(), s.end()); }

void append(Bytes &b, const Bytes &more) { b.insert(b.end(), more.begin(), more.end()); }

Bytes f32_bytes(const std::vector<float> &v) {
    Bytes b(v.size() * 4);
    for (size_t i = 0; i < v.size(); ++i) {
        uint32_t bits;
        std::memcpy(&bits, &v[i], 4);
        for (int j = 0; j < 4; ++j) b[4 * i + j] = static_cast<uint8_t>(bits >> (8 * j));
    }
    return b;
}

Bytes u16_bytes(const std::vector<uint16_t> &v) {
    Bytes b;
    for (uint16_t x : v) {
        b.push_back(static_cast<uint8_t>(x));
        b.push_back(static_cast<uint8_t>(x >> 8));
    }
    return b;
}

// An .npy file with the given header text (used verbatim) and data.
Bytes npy_with_header(const std::string &header, const Bytes &data, int major = 1, int minor = 0) {
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), static_cast<uint8_t>(minor)};
    const uint64_t len = header.size();
    const int len_bytes = major == 1 ? 2 : 4;
    for (int i = 0; i < len_bytes; ++i) b.push_back(static_cast<uint8_t>(len >> (8 * i)));
    append(b, str_bytes(header));
    append(b, data);
    return b;
}

// An .safetensors file: the given header text (verbatim, then space padded to 8) and data.
Bytes st_with_header(const std::string &header, const Bytes &data, bool pad = true) {
    std::string h = header;
    if (pad) h.append((8 - h.size() % 8) % 8, ' ');
    Bytes b;
    const uint64_t len = h.size();
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(len >> (8 * i)));
    append(b, str_bytes(h));
    append(b, data);
    return b;
}

Tensor parse_npy_bytes(const Bytes &b) { return parse_npy(b.data(), b.size(), "test.npy"); }
SafeTensorsFile parse_st(const Bytes &b) { return SafeTensorsFile::parse(b, "test.safetensors"); }

// Runs fn, expects a convgen::Error whose message is one line containing every fragment.
void expect_error(const std::function<void()> &fn, const std::vector<std::string> &fragments) {
    try {
        fn();
    } catch (const Error &e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
        for (const std::string &f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
        return;
    } catch (const std::exception &e) {
        ADD_FAILURE() << "expected convgen::Error, got another exception: " << e.what();
        return;
    }
    ADD_FAILURE() << "expected convgen::Error mentioning '" << (fragments.empty() ? "" : fragments[0]) << "', nothing thrown";
}

void expect_npy_error(const Bytes &b, const std::vector<std::string> &fragments) {
    std::vector<std::string> f = fragments;
    f.push_back("test.npy");
    expect_error([&] { parse_npy_bytes(b); }, f);
}

void expect_st_error(const Bytes &b, const std::vector<std::string> &fragments) {
    std::vector<std::string> f = fragments;
    f.push_back("test.safetensors");
    expect_error([&] { parse_st(b); }, f);
}

const std::string kGoodHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
const std::vector<float> kSix = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};

Bytes good_npy() { return npy_with_header(kGoodHeader + "\n", f32_bytes(kSix)); }

Tensor make_tensor(std::vector<int64_t> shape, float start = 0.0f, float step = 1.0f) {
    Tensor t(std::move(shape));
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = start + step * static_cast<float>(i);
    return t;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// A tiny spec built field by field (no parser involved).
LayerSpec conv_spec(int c1, int c2, int k, int g, bool bn) {
    LayerSpec s;
    s.kind = LayerKind::Conv;
    s.c1 = c1;
    s.c2 = c2;
    s.h = 4;
    s.w = 4;
    s.k = k;
    s.p = k / 2;
    s.g = g;
    s.bn = bn;
    return s;
}

LayerSpec dw_spec(int c1, int c2, int k, bool dw_bn, bool bn) {
    LayerSpec s;
    s.kind = LayerKind::DepthwisePointwise;
    s.c1 = c1;
    s.c2 = c2;
    s.h = 5;
    s.w = 5;
    s.k = k;
    s.p = k / 2;
    s.g = 1;
    s.dw_bn = dw_bn;
    s.bn = bn;
    return s;
}

// ---------------------------------------------------------------------------------------------
// .npy

TEST(Npy, RoundTrip4D) {
    TempDir dir;
    Tensor t = make_tensor({2, 3, 4, 5}, -7.0f, 0.37f);
    t.data[3] = std::numeric_limits<float>::infinity();
    t.data[4] = -0.0f;
    t.data[5] = std::numeric_limits<float>::denorm_min();
    write_npy(dir.file("a.npy"), t);
    Tensor back = read_npy(dir.file("a.npy"));
    EXPECT_EQ(back.shape, t.shape);
    ASSERT_EQ(back.data.size(), t.data.size());
    for (size_t i = 0; i < t.data.size(); ++i) EXPECT_TRUE(same_bits(back.data[i], t.data[i])) << i;
    // The data starts at a multiple of 64 bytes, as numpy writes it.
    EXPECT_EQ((fs::file_size(dir.file("a.npy")) - t.data.size() * 4) % 64, 0u);
}

TEST(Npy, RoundTripScalarEmptyAnd1D) {
    TempDir dir;
    for (const std::vector<int64_t> &shape : std::vector<std::vector<int64_t>>{{}, {0}, {0, 3}, {7}, {1, 1, 1}}) {
        Tensor t = make_tensor(shape, 2.0f, 0.5f);
        write_npy(dir.file("s.npy"), t);
        Tensor back = read_npy(dir.file("s.npy"));
        EXPECT_EQ(back.shape, shape) << shape_to_string(shape);
        EXPECT_EQ(back.data, t.data);
    }
    // A 1-D shape is written as a one-element tuple, with its comma.
    write_npy(dir.file("one.npy"), make_tensor({7}));
    Bytes raw = read_file_bytes(dir.file("one.npy"));
    EXPECT_NE(std::string(raw.begin(), raw.end()).find("'shape': (7,)"), std::string::npos);
}

TEST(Npy, WriterHeaderIsNumpyStyle) {
    TempDir dir;
    write_npy(dir.file("h.npy"), make_tensor({2, 3}));
    Bytes raw = read_file_bytes(dir.file("h.npy"));
    ASSERT_GE(raw.size(), 10u);
    EXPECT_EQ(raw[6], 1);
    EXPECT_EQ(raw[7], 0);
    const size_t hlen = raw[8] | (raw[9] << 8);
    const std::string header(raw.begin() + 10, raw.begin() + 10 + hlen);
    EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u);
    EXPECT_EQ(header.back(), '\n');
}

TEST(Npy, ShapeToString) {
    EXPECT_EQ(shape_to_string({1, 64, 56, 56}), "[1, 64, 56, 56]");
    EXPECT_EQ(shape_to_string({}), "[]");
    EXPECT_EQ(shape_to_string({-3}), "[-3]");
}

TEST(Npy, ParsesGoodHeader) {
    Tensor t = parse_npy_bytes(good_npy());
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
    ASSERT_EQ(t.data.size(), 6u);
    for (size_t i = 0; i < 6; ++i) EXPECT_TRUE(same_bits(t.data[i], kSix[i]));
}

TEST(Npy, Versions2And3) {
    for (int major : {2, 3}) {
        Tensor t = parse_npy_bytes(npy_with_header(kGoodHeader + "        \n", f32_bytes(kSix), major));
        EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3})) << major;
        EXPECT_EQ(t.data[2], 3.25f);
    }
}

TEST(Npy, HeaderSyntaxVariants) {
    const Bytes data = f32_bytes(kSix);
    const std::vector<std::string> headers = {
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",            // any key order, no trailing comma
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}\n",  // double quotes, no spaces
        "  {  'descr' :'<f4' ,\t'fortran_order':False,'shape':( 2 , 3 , ) , }   \n",  // whitespace, trailing commas
        "{'descr': u'<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n",   // Python 2 writers
    };
    for (const std::string &h : headers) {
        Tensor t = parse_npy_bytes(npy_with_header(h, data));
        EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3})) << h;
    }
    Tensor scalar = parse_npy_bytes(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", f32_bytes({4.0f})));
    EXPECT_TRUE(scalar.shape.empty());
    EXPECT_EQ(scalar.data, std::vector<float>{4.0f});
}

TEST(Npy, BadMagic) {
    Bytes b = good_npy();
    b[1] = 'X';
    expect_npy_error(b, {"bad magic"});
    expect_npy_error(str_bytes("hello world, this is not numpy"), {"bad magic"});
    expect_npy_error(Bytes{}, {"bad magic"});
    expect_npy_error(Bytes{0x93, 'N', 'U'}, {"bad magic"});
}

TEST(Npy, UnsupportedVersion) {
    expect_npy_error(npy_with_header(kGoodHeader, f32_bytes(kSix), 4, 0), {"unsupported", "version 4.0"});
    expect_npy_error(npy_with_header(kGoodHeader, f32_bytes(kSix), 1, 1), {"version 1.1"});
    expect_npy_error(npy_with_header(kGoodHeader, f32_bytes(kSix), 0, 0), {"version 0.0"});
}

TEST(Npy, TruncatedPreamble) {
    Bytes b = good_npy();
    for (size_t n : {6u, 7u, 8u, 9u}) {
        Bytes cut(b.begin(), b.begin() + n);
        expect_error([&] { parse_npy_bytes(cut); }, {"test.npy"});
    }
    Bytes v2 = npy_with_header(kGoodHeader, f32_bytes(kSix), 2);
    expect_npy_error(Bytes(v2.begin(), v2.begin() + 11), {"preamble"});
}

TEST(Npy, HeaderLengthPastEnd) {
    Bytes b = good_npy();
    b[8] = 0xff;
    b[9] = 0xff;
    expect_npy_error(b, {"header length 65535", "past the end"});
    Bytes v2 = npy_with_header(kGoodHeader, {}, 2);
    v2[8] = v2[9] = v2[10] = v2[11] = 0xff;
    expect_npy_error(v2, {"header length 4294967295", "past the end"});
}

TEST(Npy, MalformedHeaders) {
    const Bytes data = f32_bytes(kSix);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "does not start with '{'"},
        {"descr: <f4", "does not start with '{'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", "not closed"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}", "malformed"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected ':'"},
        {"{descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", "quoted key"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", "expected ',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}", "unexpected value"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", "expected ',' or ')'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.5)}", "bad number"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x", "unexpected text after"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}{}", "unexpected text after"},
        {"{'descr': '<f4', 'fortran_order': None, 'shape': (2, 3)}", "unexpected value"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}" + std::string(1, '\0'), "NUL"},
        {"{'descr': '<f4\n', 'fortran_order': False, 'shape': (2, 3)}", "unterminated string"},
    };
    for (const auto &c : cases) expect_npy_error(npy_with_header(c.first, data), {"malformed .npy header", c.second});
}

TEST(Npy, MissingUnknownAndDuplicateKeys) {
    const Bytes data = f32_bytes(kSix);
    expect_npy_error(npy_with_header("{'descr': '<f4', 'shape': (2, 3)}", data), {"missing key 'fortran_order'"});
    expect_npy_error(npy_with_header("{'fortran_order': False, 'shape': (2, 3)}", data), {"missing key 'descr'"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False}", data), {"missing key 'shape'"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", data),
                     {"unexpected key 'extra'"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", data),
                     {"duplicate key 'descr'"});
}

TEST(Npy, Float64IsRejectedWithItsName) {
    Bytes b = npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", Bytes(24, 0));
    try {
        parse_npy_bytes(b);
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "test.npy: dtype '<f8' (float64) is not supported; convgen reads float32");
    }
}

TEST(Npy, OtherDtypesRejected) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"<i4", "int32"}, {"|u1", "uint8"}, {"<f2", "float16"}, {"|b1", "bool"}, {"<i8", "int64"},
        {"<c8", "complex64"}, {"|O", "object"}, {"<U10", "unicode"}, {"f4", "explicit little-endian"},
        {"zz", "'zz' is not supported"},
    };
    for (const auto &c : cases) {
        expect_npy_error(npy_with_header("{'descr': '" + c.first + "', 'fortran_order': False, 'shape': (6,)}", f32_bytes(kSix)),
                         {"dtype", c.second, "not supported"});
    }
    expect_npy_error(npy_with_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}", f32_bytes(kSix)),
                     {"structured"});
    expect_npy_error(npy_with_header("{'descr': 4, 'fortran_order': False, 'shape': (6,)}", f32_bytes(kSix)),
                     {"'descr' is an integer, not a string"});
}

TEST(Npy, BigEndianRejected) {
    expect_npy_error(npy_with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3)}", f32_bytes(kSix)),
                     {"big-endian", "'>f4'"});
}

TEST(Npy, FortranOrderRejected) {
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", f32_bytes(kSix)),
                     {"fortran_order is True", "C-order"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", f32_bytes(kSix)),
                     {"'fortran_order' is an integer"});
}

TEST(Npy, ShapeMustBeATuple) {
    const Bytes data = f32_bytes(kSix);
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", data), {"'shape' is an integer, not a tuple"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': 6}", data), {"'shape' is an integer"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': [6]}", data), {"list"});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': '6'}", data), {"'shape' is a string"});
}

TEST(Npy, NegativeDimension) {
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", f32_bytes(kSix)),
                     {"negative dimension", "[2, -3]"});
}

TEST(Npy, ShapeOverflow) {
    const std::string pre = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    expect_npy_error(npy_with_header(pre + "4611686018427387904, 4)}", {}), {"too large"});
    expect_npy_error(npy_with_header(pre + "2305843009213693952,)}", {}), {"too large"});  // 2^61 * 4 bytes
    expect_npy_error(npy_with_header(pre + "99999999999999999999999,)}", {}), {"too large for 64 bits"});
    expect_npy_error(npy_with_header(pre + "-99999999999999999999999,)}", {}), {"too large for 64 bits"});
    // A zero dimension does not excuse absurd others.
    expect_npy_error(npy_with_header(pre + "0, 4294967296, 4294967296)}", {}), {"too large"});
    // ... but a zero dimension with sane others is just an empty array.
    Tensor empty = parse_npy_bytes(npy_with_header(pre + "0, 5)}", {}));
    EXPECT_EQ(empty.shape, (std::vector<int64_t>{0, 5}));
    EXPECT_TRUE(empty.data.empty());
}

TEST(Npy, TruncatedData) {
    Bytes b = good_npy();
    b.resize(b.size() - 4);
    expect_npy_error(b, {"data is truncated: expected 24 bytes, found 20"});
    b = npy_with_header(kGoodHeader, {});
    expect_npy_error(b, {"data is truncated: expected 24 bytes, found 0"});
}

TEST(Npy, TrailingBytesRejected) {
    Bytes b = good_npy();
    b.push_back(0);
    b.push_back(0);
    expect_npy_error(b, {"2 unexpected bytes after the data", "expected 24 bytes, found 26"});
}

TEST(Npy, MissingFileAndDirectory) {
    TempDir dir;
    expect_error([&] { read_npy(dir.file("nope.npy")); }, {"cannot open", "nope.npy", "No such file"});
    expect_error([&] { read_npy(dir.path()); }, {"directory", dir.path()});
}

TEST(Npy, ReadErrorsNameThePath) {
    TempDir dir;
    Bytes b = good_npy();
    b.pop_back();
    write_bytes(dir.file("short.npy"), b);
    expect_error([&] { read_npy(dir.file("short.npy")); }, {dir.file("short.npy"), "truncated"});
}

TEST(Npy, HostileTextStaysOnOneLine) {
    // Newlines and control bytes from the file are escaped, long strings are cut.
    std::string evil = "\r\x01" + std::string(500, 'A') + "\xff";
    expect_npy_error(npy_with_header("{'descr': '" + evil + "', 'fortran_order': False, 'shape': (6,)}", f32_bytes(kSix)),
                     {"\\x0d\\x01AAA", "..."});
    expect_npy_error(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}\n\x01\n", f32_bytes(kSix)),
                     {"unexpected text after the dict", "\\x01"});
    try {
        parse_npy_bytes(npy_with_header("{'descr': '" + evil + "', 'fortran_order': False, 'shape': (6,)}", f32_bytes(kSix)));
    } catch (const Error &e) {
        EXPECT_LT(std::strlen(e.what()), 300u);
    }
}

TEST(Npy, WriteRejectsInconsistentTensor) {
    TempDir dir;
    Tensor t;
    t.shape = {2, 3};
    t.data = {1, 2, 3};
    expect_error([&] { write_npy(dir.file("bad.npy"), t); }, {"[2, 3]", "6 elements", "has 3"});
    t.shape = {-1};
    expect_error([&] { write_npy(dir.file("bad.npy"), t); }, {"negative"});
    expect_error([&] { write_npy(dir.file("no/such/dir/x.npy"), make_tensor({1})); }, {"cannot create"});
}

TEST(Npy, LargeHeaderUsesVersion2) {
    // 30000 dimensions of size 1 make a header longer than 65535 bytes.
    TempDir dir;
    Tensor t(std::vector<int64_t>(30000, 1));
    t.data[0] = 42.0f;
    write_npy(dir.file("big.npy"), t);
    Bytes raw = read_file_bytes(dir.file("big.npy"));
    EXPECT_EQ(raw[6], 2);
    Tensor back = read_npy(dir.file("big.npy"));
    EXPECT_EQ(back.shape.size(), 30000u);
    EXPECT_EQ(back.data, std::vector<float>{42.0f});
}

TEST(Npy, FuzzedInputsOnlyThrowConvgenErrors) {
    const Bytes base = good_npy();
    // Every truncation.
    for (size_t n = 0; n < base.size(); ++n) {
        Bytes cut(base.begin(), base.begin() + n);
        EXPECT_THROW(parse_npy_bytes(cut), Error) << n;
    }
    // Random byte mutations: either parse or throw convgen::Error, never anything else.
    std::mt19937 gen(1234);
    int parsed = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        Bytes b = base;
        const int edits = 1 + static_cast<int>(gen() % 4);
        for (int e = 0; e < edits; ++e) b[gen() % b.size()] = static_cast<uint8_t>(gen());
        if (gen() % 4 == 0) b.resize(gen() % (b.size() + 1));
        try {
            Tensor t = parse_npy_bytes(b);
            EXPECT_EQ(static_cast<int64_t>(t.data.size()), Tensor::element_count(t.shape));
            ++parsed;
        } catch (const Error &) {
        }
    }
    EXPECT_GT(parsed, 0);  // some mutations only touch data bytes
}

TEST(Npy, InteroperatesWithNumpy) {
    if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no numpy";
    TempDir dir;
    Tensor t = make_tensor({2, 3, 4}, -1.0f, 0.125f);
    write_npy(dir.file("ours.npy"), t);
    const std::string script =
        "import numpy as np, sys\n"
        "d = sys.argv[1]\n"
        "a = np.load(d + '/ours.npy')\n"
        "assert a.dtype == np.float32 and a.shape == (2, 3, 4), (a.dtype, a.shape)\n"
        "assert (a.ravel() == -1.0 + 0.125 * np.arange(24, dtype=np.float32)).all()\n"
        "np.save(d + '/v1.npy', np.arange(6, dtype=np.float32).reshape(2, 3))\n"
        "with open(d + '/v2.npy', 'wb') as f:\n"
        "    np.lib.format.write_array(f, np.full((3,), 2.5, np.float32), version=(2, 0))\n"
        "np.save(d + '/f64.npy', np.zeros(3))\n"
        "np.save(d + '/fortran.npy', np.asfortranarray(np.zeros((2, 3), np.float32)))\n"
        "np.save(d + '/scalar.npy', np.float32(7))\n";
    write_bytes(dir.file("s.py"), str_bytes(script));
    ASSERT_EQ(std::system(("/usr/bin/python3 " + dir.file("s.py") + " " + dir.path()).c_str()), 0);
    Tensor v1 = read_npy(dir.file("v1.npy"));
    EXPECT_EQ(v1.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(v1.data, (std::vector<float>{0, 1, 2, 3, 4, 5}));
    Tensor v2 = read_npy(dir.file("v2.npy"));
    EXPECT_EQ(v2.data, (std::vector<float>{2.5f, 2.5f, 2.5f}));
    Tensor scalar = read_npy(dir.file("scalar.npy"));
    EXPECT_TRUE(scalar.shape.empty());
    EXPECT_EQ(scalar.data, std::vector<float>{7.0f});
    expect_error([&] { read_npy(dir.file("f64.npy")); }, {"'<f8' (float64)"});
    expect_error([&] { read_npy(dir.file("fortran.npy")); }, {"fortran_order"});
}

// ---------------------------------------------------------------------------------------------
// .safetensors

TEST(SafeTensors, RoundTrip) {
    TempDir dir;
    Tensor a = make_tensor({2, 3}, 1.0f, 0.5f), b = make_tensor({4}, -3.0f, 1.0f), c = make_tensor({1, 1, 2, 2}, 9.0f, -1.0f);
    write_safetensors(dir.file("w.safetensors"), {{"b.first", a}, {"a.second", b}, {"c", c}});
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("w.safetensors"));
    EXPECT_EQ(f.names(), (std::vector<std::string>{"a.second", "b.first", "c"}));
    EXPECT_EQ(f.info("b.first").shape, a.shape);
    EXPECT_EQ(f.info("b.first").dtype, "F32");
    EXPECT_EQ(f.info("b.first").begin, 0u);  // written in the given order
    EXPECT_EQ(f.info("b.first").end, 24u);
    EXPECT_EQ(f.info("a.second").begin, 24u);
    EXPECT_EQ(f.read_f32("b.first"), a.data);
    EXPECT_EQ(f.read_f32("a.second"), b.data);
    EXPECT_EQ(f.read_f32("c"), c.data);
    EXPECT_TRUE(f.has("c"));
    EXPECT_FALSE(f.has("d"));
    // The header length is a multiple of 8.
    Bytes raw = read_file_bytes(dir.file("w.safetensors"));
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(raw[i]) << (8 * i);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(raw.size(), 8 + n + 4 * (6 + 4 + 4));
}

TEST(SafeTensors, EmptyAndScalarTensors) {
    TempDir dir;
    Tensor scalar(std::vector<int64_t>{});
    scalar.data[0] = 5.0f;
    Tensor empty(std::vector<int64_t>{0, 4});
    write_safetensors(dir.file("e.safetensors"), {{"s", scalar}, {"e", empty}});
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("e.safetensors"));
    EXPECT_EQ(f.read_f32("s"), std::vector<float>{5.0f});
    EXPECT_TRUE(f.read_f32("e").empty());
    EXPECT_EQ(f.info("e").shape, (std::vector<int64_t>{0, 4}));
    // No tensors at all is a valid file too.
    write_safetensors(dir.file("none.safetensors"), {});
    EXPECT_TRUE(SafeTensorsFile::read(dir.file("none.safetensors")).names().empty());
}

TEST(SafeTensors, WriterRejectsBadInput) {
    TempDir dir;
    Tensor bad;
    bad.shape = {3};
    bad.data = {1, 2};
    expect_error([&] { write_safetensors(dir.file("x"), {{"t", bad}}); }, {"'t'", "[3]"});
    expect_error([&] { write_safetensors(dir.file("x"), {{"t", make_tensor({1})}, {"t", make_tensor({1})}}); }, {"twice"});
    expect_error([&] { write_safetensors(dir.file("x"), {{"__metadata__", make_tensor({1})}}); }, {"__metadata__"});
}

TEST(SafeTensors, HalfConversion) {
    EXPECT_EQ(half_to_float(0x3C00), 1.0f);
    EXPECT_EQ(half_to_float(0xC000), -2.0f);
    EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
    EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);              // largest finite
    EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));  // smallest normal
    EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
    EXPECT_EQ(half_to_float(0x8001), -std::ldexp(1.0f, -24));
    EXPECT_EQ(half_to_float(0x0000), 0.0f);
    EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
    EXPECT_EQ(half_to_float(0x7C00), std::numeric_limits<float>::infinity());
    EXPECT_EQ(half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
    EXPECT_TRUE(std::isnan(half_to_float(0x7C01)));  // signalling-NaN pattern stays NaN, not inf
    EXPECT_TRUE(std::isnan(half_to_float(0xFE00)));
}

TEST(SafeTensors, HalfConversionExhaustiveAgainstFormula) {
    for (uint32_t bits = 0; bits < 0x10000; ++bits) {
        const int e = (bits >> 10) & 31, m = bits & 1023;
        const double sign = (bits & 0x8000) ? -1.0 : 1.0;
        const float got = half_to_float(static_cast<uint16_t>(bits));
        if (e == 31) {
            EXPECT_EQ(std::isnan(got), m != 0) << bits;
            continue;
        }
        const double expect = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, e - 25);
        ASSERT_EQ(static_cast<double>(got), expect) << bits;
    }
}

TEST(SafeTensors, BFloat16Conversion) {
    EXPECT_EQ(bfloat16_to_float(0x3F80), 1.0f);
    EXPECT_EQ(bfloat16_to_float(0xC040), -3.0f);
    EXPECT_EQ(bfloat16_to_float(0x4049), 3.140625f);
    EXPECT_EQ(bfloat16_to_float(0x0001), std::ldexp(1.0f, -133));  // subnormal
    EXPECT_EQ(bfloat16_to_float(0x7F7F), std::ldexp(255.0f, 120));  // largest finite: 0x7F7F0000
    EXPECT_EQ(bfloat16_to_float(0x7F80), std::numeric_limits<float>::infinity());
    EXPECT_EQ(bfloat16_to_float(0xFF80), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(bfloat16_to_float(0x7FC0)));
    EXPECT_TRUE(std::signbit(bfloat16_to_float(0x8000)));
}

TEST(SafeTensors, ReadsF16AndBF16Tensors) {
    const Bytes h = u16_bytes({0x3C00, 0xC000, 0x0001, 0x7C00});
    const Bytes bf = u16_bytes({0x3F80, 0xC040});
    Bytes data = h;
    append(data, bf);
    SafeTensorsFile f = parse_st(st_with_header(
        R"({"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})", data));
    std::vector<float> hv = f.read_f32("h");
    ASSERT_EQ(hv.size(), 4u);
    EXPECT_EQ(hv[0], 1.0f);
    EXPECT_EQ(hv[1], -2.0f);
    EXPECT_EQ(hv[2], std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::isinf(hv[3]));
    EXPECT_EQ(f.read_f32("b"), (std::vector<float>{1.0f, -3.0f}));
    EXPECT_EQ(f.info("h").dtype, "F16");
}

TEST(SafeTensors, OtherDtypesAreListedButNotConverted) {
    Bytes data(8 + 8, 0);
    SafeTensorsFile f = parse_st(st_with_header(
        R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"n":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})", data));
    EXPECT_TRUE(f.has("d"));
    EXPECT_EQ(f.info("n").dtype, "I64");
    EXPECT_TRUE(f.info("n").shape.empty());
    expect_error([&] { f.read_f32("d"); }, {"'d'", "F64", "F32, F16 and BF16"});
    expect_error([&] { f.read_f32("n"); }, {"'n'", "I64"});
}

TEST(SafeTensors, MetadataAllowed) {
    SafeTensorsFile f = parse_st(st_with_header(
        R"({"__metadata__":{"format":"pt","note":"x"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32_bytes({2.0f})));
    EXPECT_EQ(f.names(), std::vector<std::string>{"t"});
    expect_st_error(st_with_header(R"({"__metadata__":{"format":3}})", {}), {"__metadata__", "'format'", "not a string"});
    expect_st_error(st_with_header(R"({"__metadata__":[1]})", {}), {"__metadata__", "object of strings"});
}

TEST(SafeTensors, TooShortFile) {
    expect_st_error(Bytes{}, {"too short"});
    expect_st_error(Bytes{1, 0, 0}, {"too short"});
}

TEST(SafeTensors, HugeHeaderLength) {
    Bytes b = st_with_header("{}", {});
    for (int i = 0; i < 8; ++i) b[i] = 0xff;
    expect_st_error(b, {"header length 18446744073709551615", "limit"});
    // Just above the 100 MB limit: rejected on the limit, without reading anything.
    const uint64_t big = 100000001;
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(big >> (8 * i));
    expect_st_error(b, {"exceeds the limit"});
}

TEST(SafeTensors, HeaderLengthPastEnd) {
    Bytes b = st_with_header("{}", {});
    b[0] = 200;
    expect_st_error(b, {"header length 200", "past the end"});
    Bytes zero(8, 0);
    expect_st_error(zero, {"empty"});
}

TEST(SafeTensors, BadJson) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32",)", {}), {"not valid JSON"});
    expect_st_error(st_with_header("{'t': 1}", {}), {"not valid JSON"});
    expect_st_error(st_with_header("{} {}", {}), {"not valid JSON"});
    expect_st_error(st_with_header("{\"a\":1,}", {}), {"not valid JSON"});
    expect_st_error(st_with_header(R"({/* c */})", {}), {"not valid JSON"});
}

TEST(SafeTensors, DeepNestingRejectedWithoutCrash) {
    expect_st_error(st_with_header(std::string(200000, '['), {}), {"nests deeper than 64"});
    expect_st_error(st_with_header("{\"a\":" + std::string(100000, '{'), {}), {"nests deeper"});
    // Brackets inside strings do not count.
    std::string inside = R"({"__metadata__":{"x":")" + std::string(1000, '[') + R"("}})";
    EXPECT_NO_THROW(parse_st(st_with_header(inside, {})));
    // 64 levels are fine as far as the depth check goes (then rejected as a bad entry).
    std::string nested = "{\"t\":" + std::string(62, '[') + std::string(62, ']') + "}";
    expect_st_error(st_with_header(nested, {}), {"tensor 't'", "not an object"});
}

TEST(SafeTensors, HeaderMustBeAnObject) {
    expect_st_error(st_with_header("[1, 2]", {}), {"array, not an object"});
    expect_st_error(st_with_header("\"str\"", {}), {"string, not an object"});
    expect_st_error(st_with_header("3", {}), {"number, not an object"});
    expect_st_error(st_with_header("null", {}), {"null, not an object"});
}

TEST(SafeTensors, NonUtf8Rejected) {
    std::string h = "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    expect_st_error(st_with_header(h, f32_bytes({1.0f})), {"not valid JSON"});
    std::string h2 = "{\xc3\xa9}";  // UTF-8 outside a string
    expect_st_error(st_with_header(h2, {}), {"not valid JSON"});
    // Valid UTF-8 names are fine.
    SafeTensorsFile f = parse_st(st_with_header("{\"caf\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                                f32_bytes({1.0f})));
    EXPECT_TRUE(f.has("caf\xc3\xa9"));
}

TEST(SafeTensors, OffsetsPastEnd) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1.0f})),
                    {"'t'", "past the end of the data section (4 bytes)"});
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
                                   f32_bytes({1.0f})),
                    {"data_offsets[0] is too large"});
}

TEST(SafeTensors, OffsetsReversed) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", f32_bytes({1.0f})),
                    {"'t'", "end before they begin"});
}

TEST(SafeTensors, OverlappingTensors) {
    expect_st_error(st_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   f32_bytes({1, 2, 3})),
                    {"'a' and 'b' overlap"});
    // The same range twice is an overlap too.
    expect_st_error(st_with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                   f32_bytes({1})),
                    {"overlap"});
}

TEST(SafeTensors, GapsAndUnclaimedBytesRejected) {
    expect_st_error(st_with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32_bytes({1, 2})),
                    {"bytes 0 to 4", "belong to no tensor"});
    expect_st_error(st_with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32_bytes({1, 2})),
                    {"4 bytes after the last tensor"});
}

TEST(SafeTensors, WrongByteCountForShape) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32_bytes({1, 2})),
                    {"'t'", "needs 12 bytes", "span 8"});
    expect_st_error(st_with_header(R"({"t":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})", Bytes(16, 0)),
                    {"needs 8 bytes"});
}

TEST(SafeTensors, ShapeOverflow) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", {}),
                    {"too large"});
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})", {}),
                    {"too large"});
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", {}),
                    {"too large"});
}

TEST(SafeTensors, BadEntryTypes) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"t":5})", "not an object"},
        {R"({"t":{"shape":[1],"data_offsets":[0,4]}})", "no \"dtype\""},
        {R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", "no \"shape\""},
        {R"({"t":{"dtype":"F32","shape":[1]}})", "no \"data_offsets\""},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "unexpected field 'x'"},
        {R"({"t":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "\"dtype\" is not a string"},
        {R"({"t":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", "unknown dtype 'Q9'"},
        {R"({"t":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", "\"shape\" is not an array"},
        {R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "shape[0] is negative"},
        {R"({"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", "shape[0] must be a non-negative integer"},
        {R"({"t":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", "non-negative integer"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "[begin, end]"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "[begin, end]"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":{"a":0}}})", "[begin, end]"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", "data_offsets[1] is negative"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", "data_offsets[1] must be a non-negative integer"},
    };
    for (const auto &c : cases) expect_st_error(st_with_header(c.first, f32_bytes({1.0f})), {c.second});
}

TEST(SafeTensors, DuplicateKeysRejected) {
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                   f32_bytes({1.0f})),
                    {"key 't' twice"});
    expect_st_error(st_with_header(R"({"t":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", f32_bytes({1.0f})),
                    {"key 'dtype' twice"});
}

TEST(SafeTensors, MissingTensorListsNames) {
    TempDir dir;
    std::vector<std::pair<std::string, Tensor>> ts;
    for (int i = 0; i < 12; ++i) ts.push_back({"layer" + std::to_string(10 + i), make_tensor({1})});
    write_safetensors(dir.file("m.safetensors"), ts);
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("m.safetensors"));
    expect_error([&] { f.info("conv.weight"); }, {"no tensor named 'conv.weight'", "12 tensors", "'layer10'", "..."});
    expect_error([&] { f.read_f32("x"); }, {"'x'", "m.safetensors"});
    write_safetensors(dir.file("none.safetensors"), {});
    SafeTensorsFile empty = SafeTensorsFile::read(dir.file("none.safetensors"));
    expect_error([&] { empty.info("x"); }, {"holds no tensors"});
}

TEST(SafeTensors, MissingFileAndDirectory) {
    TempDir dir;
    expect_error([&] { SafeTensorsFile::read(dir.file("absent.safetensors")); }, {"absent.safetensors", "No such file"});
    expect_error([&] { SafeTensorsFile::read(dir.path()); }, {"directory"});
}

TEST(SafeTensors, FuzzedInputsOnlyThrowConvgenErrors) {
    TempDir dir;
    write_safetensors(dir.file("f.safetensors"), {{"a", make_tensor({2, 3})}, {"b", make_tensor({4})}});
    const Bytes base = read_file_bytes(dir.file("f.safetensors"));
    for (size_t n = 0; n < base.size(); ++n) {
        EXPECT_THROW(parse_st(Bytes(base.begin(), base.begin() + n)), Error) << n;
    }
    std::mt19937 gen(99);
    int parsed = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        Bytes b = base;
        const int edits = 1 + static_cast<int>(gen() % 3);
        for (int e = 0; e < edits; ++e) {
            size_t at = gen() % b.size();
            // Bias edits towards the header and towards JSON-significant characters.
            if (gen() % 2) at = 8 + gen() % 72;
            static const char sig[] = "{}[]\",:0123456789-e.";
            b[at] = gen() % 2 ? static_cast<uint8_t>(sig[gen() % (sizeof sig - 1)]) : static_cast<uint8_t>(gen());
        }
        try {
            SafeTensorsFile f = parse_st(b);
            for (const std::string &n : f.names()) {
                try {
                    f.read_f32(n);
                } catch (const Error &) {
                }
            }
            ++parsed;
        } catch (const Error &) {
        }
    }
    EXPECT_GT(parsed, 0);
}

// ---------------------------------------------------------------------------------------------
// Weights

// A Conv module's state_dict under `prefix`, values 0.1*i (+ channel offsets for BN), and the
// unrelated tensors a whole model would hold.
std::vector<std::pair<std::string, Tensor>> conv_state_dict(const LayerSpec &s, const std::string &prefix) {
    std::vector<std::pair<std::string, Tensor>> sd;
    sd.push_back({"model.0.conv.weight", make_tensor({1, 1, 1, 1})});
    sd.push_back({prefix + "conv.weight", make_tensor({s.c2, s.c1 / s.g, s.k, s.k}, 0.0f, 0.1f)});
    sd.push_back({prefix + "bn.weight", make_tensor({s.c2}, 1.0f, 0.25f)});
    sd.push_back({prefix + "bn.bias", make_tensor({s.c2}, -0.5f, 0.125f)});
    sd.push_back({prefix + "bn.running_mean", make_tensor({s.c2}, 0.2f, 0.1f)});
    sd.push_back({prefix + "bn.running_var", make_tensor({s.c2}, 0.5f, 0.5f)});
    sd.push_back({prefix + "bn.num_batches_tracked", make_tensor({})});
    return sd;
}

TEST(Weights, LoadConvWithPrefix) {
    TempDir dir;
    LayerSpec s = conv_spec(4, 6, 3, 2, true);
    write_safetensors(dir.file("m.safetensors"), conv_state_dict(s, "model.3."));
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("m.safetensors"));
    RawWeights raw = load_raw_weights(s, f, "model.3.");
    ASSERT_EQ(raw.conv_weight.size(), 6u * 2 * 3 * 3);
    EXPECT_FLOAT_EQ(raw.conv_weight[5], 0.5f);
    EXPECT_EQ(raw.bn.weight, make_tensor({6}, 1.0f, 0.25f).data);
    EXPECT_EQ(raw.bn.bias, make_tensor({6}, -0.5f, 0.125f).data);
    EXPECT_EQ(raw.bn.running_mean, make_tensor({6}, 0.2f, 0.1f).data);
    EXPECT_EQ(raw.bn.running_var, make_tensor({6}, 0.5f, 0.5f).data);
    EXPECT_TRUE(raw.pointwise_weight.empty());
    EXPECT_TRUE(raw.dw_bn.weight.empty());
    EXPECT_NO_THROW(check_raw_weights(s, raw));
}

TEST(Weights, MissingTensorSuggestsPrefix) {
    TempDir dir;
    LayerSpec s = conv_spec(4, 6, 3, 2, true);
    write_safetensors(dir.file("m.safetensors"), conv_state_dict(s, "model.3."));
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("m.safetensors"));
    // model.0.conv.weight exists but has another shape; model.3. is the one that matches.
    expect_error([&] { load_raw_weights(s, f, "model.5."); }, {"missing tensor 'model.5.conv.weight'", "--prefix", "'model.3.'"});
    expect_error([&] { load_raw_weights(s, f, ""); }, {"missing tensor 'conv.weight'", "--prefix", "'model.0.'", "'model.3.'"});
    // With no candidate at all the message lists what the file has.
    write_safetensors(dir.file("o.safetensors"), {{"other", make_tensor({1})}});
    SafeTensorsFile o = SafeTensorsFile::read(dir.file("o.safetensors"));
    expect_error([&] { load_raw_weights(s, o, ""); }, {"missing tensor 'conv.weight'", "--prefix", "'other'"});
}

TEST(Weights, ShapeMismatchNamesTensorAndShapes) {
    TempDir dir;
    LayerSpec s = conv_spec(4, 6, 3, 2, true);
    auto sd = conv_state_dict(s, "");
    sd[1].second = make_tensor({6, 4, 3, 3});  // as if g=1
    write_safetensors(dir.file("m.safetensors"), sd);
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("m.safetensors"));
    expect_error([&] { load_raw_weights(s, f, ""); }, {"'conv.weight'", "[6, 4, 3, 3]", "expected [6, 2, 3, 3]"});
    sd = conv_state_dict(s, "");
    sd[5].second = make_tensor({5});  // bn.running_var
    write_safetensors(dir.file("m.safetensors"), sd);
    SafeTensorsFile f2 = SafeTensorsFile::read(dir.file("m.safetensors"));
    expect_error([&] { load_raw_weights(s, f2, ""); }, {"'bn.running_var'", "[5]", "expected [6]"});
}

TEST(Weights, NoBatchNormNeedsOnlyConvWeight) {
    TempDir dir;
    LayerSpec s = conv_spec(3, 3, 1, 1, false);
    write_safetensors(dir.file("m.safetensors"), {{"conv.weight", make_tensor({3, 3, 1, 1})}});
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("m.safetensors"));
    RawWeights raw = load_raw_weights(s, f, "");
    EXPECT_EQ(raw.conv_weight.size(), 9u);
    EXPECT_TRUE(raw.bn.weight.empty());
    s.bn = true;
    expect_error([&] { load_raw_weights(s, f, ""); }, {"missing tensor 'bn.weight'"});
}

TEST(Weights, LoadDwconvAllModules) {
    TempDir dir;
    LayerSpec s = dw_spec(3, 5, 3, true, true);
    std::vector<std::pair<std::string, Tensor>> sd = {
        {"blk.depthwise.weight", make_tensor({3, 1, 3, 3}, 0.0f, 1.0f)},
        {"blk.pointwise.weight", make_tensor({5, 3, 1, 1}, 100.0f, 1.0f)},
    };
    for (const char *m : {"dw_bn", "bn"}) {
        const int64_t ch = std::string(m) == "bn" ? 5 : 3;
        sd.push_back({std::string("blk.") + m + ".weight", make_tensor({ch}, 1.0f, 0.0f)});
        sd.push_back({std::string("blk.") + m + ".bias", make_tensor({ch}, 2.0f, 0.0f)});
        sd.push_back({std::string("blk.") + m + ".running_mean", make_tensor({ch}, 3.0f, 0.0f)});
        sd.push_back({std::string("blk.") + m + ".running_var", make_tensor({ch}, 4.0f, 0.0f)});
    }
    write_safetensors(dir.file("d.safetensors"), sd);
    SafeTensorsFile f = SafeTensorsFile::read(dir.file("d.safetensors"));
    RawWeights raw = load_raw_weights(s, f, "blk.");
    EXPECT_EQ(raw.conv_weight, make_tensor({27}).data);
    EXPECT_EQ(raw.pointwise_weight, make_tensor({15}, 100.0f, 1.0f).data);
    EXPECT_EQ(raw.dw_bn.bias, std::vector<float>(3, 2.0f));
    EXPECT_EQ(raw.bn.running_var, std::vector<float>(5, 4.0f));
    // Without dw_bn / bn the BN tensors are not needed (and not loaded).
    LayerSpec plain = dw_spec(3, 5, 3, false, false);
    RawWeights p = load_raw_weights(plain, f, "blk.");
    EXPECT_TRUE(p.dw_bn.weight.empty());
    EXPECT_TRUE(p.bn.weight.empty());
    // The depthwise weight must be [c1, 1, k, k].
    LayerSpec wrong_k = dw_spec(3, 5, 5, true, true);
    expect_error([&] { load_raw_weights(wrong_k, f, "blk."); }, {"'blk.depthwise.weight'", "expected [3, 1, 5, 5]"});
}

TEST(Weights, LoadsHalfPrecisionWeights) {
    LayerSpec s = conv_spec(1, 2, 1, 1, false);
    Bytes data = u16_bytes({0x3C00, 0xB800});  // 1.0, -0.5
    SafeTensorsFile f = parse_st(st_with_header(R"({"conv.weight":{"dtype":"F16","shape":[2,1,1,1],"data_offsets":[0,4]}})", data));
    EXPECT_EQ(load_raw_weights(s, f, "").conv_weight, (std::vector<float>{1.0f, -0.5f}));
    SafeTensorsFile g = parse_st(st_with_header(R"({"conv.weight":{"dtype":"BF16","shape":[2,1,1,1],"data_offsets":[0,4]}})",
                                                u16_bytes({0x4000, 0xBF00})));
    EXPECT_EQ(load_raw_weights(s, g, "").conv_weight, (std::vector<float>{2.0f, -0.5f}));
    SafeTensorsFile h = parse_st(st_with_header(R"({"conv.weight":{"dtype":"I32","shape":[2,1,1,1],"data_offsets":[0,8]}})", Bytes(8, 0)));
    expect_error([&] { load_raw_weights(s, h, ""); }, {"'conv.weight'", "I32"});
}

TEST(Weights, FoldBatchNormByHand) {
    // c1=1, c2=2, k=1, eps=1: exact numbers.
    LayerSpec s = conv_spec(1, 2, 1, 1, true);
    s.eps = 1.0f;
    RawWeights raw;
    raw.conv_weight = {2.0f, -4.0f};
    raw.bn.weight = {3.0f, 1.0f};
    raw.bn.bias = {1.0f, 0.5f};
    raw.bn.running_mean = {2.0f, -1.0f};
    raw.bn.running_var = {3.0f, 0.0f};
    // channel 0: scale = 3 / sqrt(3 + 1) = 1.5, w' = 3, bias = 1 - 2 * 1.5 = -2
    // channel 1: scale = 1 / sqrt(0 + 1) = 1,   w' = -4, bias = 0.5 + 1 = 1.5
    FoldedWeights f = fold_batchnorm(s, raw);
    EXPECT_EQ(f.weight, (std::vector<float>{3.0f, -4.0f}));
    EXPECT_EQ(f.bias, (std::vector<float>{-2.0f, 1.5f}));
    EXPECT_TRUE(f.pw_weight.empty());
}

TEST(Weights, FoldBatchNormMatchesDoubleFormula) {
    LayerSpec s = conv_spec(4, 8, 3, 2, true);
    RawWeights raw = random_raw_weights(s, 7);
    FoldedWeights f = fold_batchnorm(s, raw);
    const int per = 2 * 3 * 3;
    ASSERT_EQ(f.weight.size(), 8u * per);
    for (int o = 0; o < 8; ++o) {
        const double scale = double(raw.bn.weight[o]) / std::sqrt(double(raw.bn.running_var[o]) + double(1e-5f));
        EXPECT_EQ(f.bias[o], static_cast<float>(double(raw.bn.bias[o]) - double(raw.bn.running_mean[o]) * scale));
        for (int i = 0; i < per; ++i) EXPECT_EQ(f.weight[o * per + i], static_cast<float>(double(raw.conv_weight[o * per + i]) * scale));
    }
}

TEST(Weights, FoldWithoutBatchNormGivesZeroBias) {
    LayerSpec s = conv_spec(2, 4, 3, 1, false);
    RawWeights raw = random_raw_weights(s, 3);
    EXPECT_TRUE(raw.bn.weight.empty());
    FoldedWeights f = fold_batchnorm(s, raw);
    EXPECT_EQ(f.weight, raw.conv_weight);
    EXPECT_EQ(f.bias, std::vector<float>(4, 0.0f));
}

TEST(Weights, FoldDwconvLayout) {
    LayerSpec s = dw_spec(2, 3, 3, true, true);
    s.eps = 1.0f;
    RawWeights raw;
    raw.conv_weight = make_tensor({2 * 9}, 1.0f, 1.0f).data;
    raw.pointwise_weight = {1, 2, 3, 4, 5, 6};
    raw.dw_bn = {{2.0f, 4.0f}, {1.0f, 1.0f}, {0.5f, 0.0f}, {3.0f, 15.0f}};  // scale 1, 1
    raw.bn = {{2.0f, 2.0f, 2.0f}, {0.0f, 1.0f, 2.0f}, {1.0f, 1.0f, 1.0f}, {0.0f, 3.0f, 15.0f}};  // scale 2, 1, 0.5
    FoldedWeights f = fold_batchnorm(s, raw);
    EXPECT_EQ(f.weight, raw.conv_weight);
    EXPECT_EQ(f.bias, (std::vector<float>{0.5f, 1.0f}));
    EXPECT_EQ(f.pw_weight, (std::vector<float>{2, 4, 3, 4, 2.5f, 3}));
    EXPECT_EQ(f.pw_bias, (std::vector<float>{-2.0f, 0.0f, 1.5f}));
    // Only the pointwise BN: the depthwise bias is zero and its weight unchanged.
    LayerSpec s2 = dw_spec(2, 3, 3, false, true);
    s2.eps = 1.0f;
    RawWeights raw2 = raw;
    raw2.dw_bn = {};
    FoldedWeights f2 = fold_batchnorm(s2, raw2);
    EXPECT_EQ(f2.bias, (std::vector<float>{0.0f, 0.0f}));
    EXPECT_EQ(f2.pw_bias, f.pw_bias);
}

TEST(Weights, FoldRejectsNonPositiveVariance) {
    LayerSpec s = conv_spec(1, 2, 1, 1, true);
    RawWeights raw = random_raw_weights(s, 1);
    raw.bn.running_var[1] = -1.0f;
    expect_error([&] { fold_batchnorm(s, raw); }, {"bn.running_var[1]", "not positive"});
}

TEST(Weights, CheckRawWeightsSizes) {
    LayerSpec s = conv_spec(4, 6, 3, 2, true);
    RawWeights raw = random_raw_weights(s, 5);
    EXPECT_NO_THROW(check_raw_weights(s, raw));
    RawWeights a = raw;
    a.conv_weight.pop_back();
    expect_error([&] { check_raw_weights(s, a); }, {"conv.weight", "107 values, expected 108"});
    RawWeights b = raw;
    b.bn.running_mean.push_back(0);
    expect_error([&] { check_raw_weights(s, b); }, {"bn.running_mean", "expected 6"});
    LayerSpec d = dw_spec(3, 4, 3, true, false);
    RawWeights dr = random_raw_weights(d, 5);
    EXPECT_NO_THROW(check_raw_weights(d, dr));
    dr.pointwise_weight.resize(11);
    expect_error([&] { check_raw_weights(d, dr); }, {"pointwise.weight", "expected 12"});
    dr = random_raw_weights(d, 5);
    dr.dw_bn.weight.clear();
    expect_error([&] { check_raw_weights(d, dr); }, {"dw_bn.weight"});
}

TEST(Weights, RandomWeightsDeterministicAndInRange) {
    LayerSpec s = conv_spec(8, 16, 3, 2, true);
    RawWeights a = random_raw_weights(s, 42), b = random_raw_weights(s, 42), c = random_raw_weights(s, 43);
    EXPECT_EQ(a.conv_weight, b.conv_weight);
    EXPECT_EQ(a.bn.running_var, b.bn.running_var);
    EXPECT_NE(a.conv_weight, c.conv_weight);
    const float bound = static_cast<float>(1.0 / std::sqrt(4.0 * 9.0));
    float lo = 1, hi = -1;
    for (float w : a.conv_weight) {
        EXPECT_LE(std::fabs(w), bound);
        lo = std::min(lo, w);
        hi = std::max(hi, w);
    }
    EXPECT_LT(lo, -0.8f * bound);  // spread over the whole range
    EXPECT_GT(hi, 0.8f * bound);
    for (int i = 0; i < 16; ++i) {
        EXPECT_GE(a.bn.weight[i], 0.5f);
        EXPECT_LE(a.bn.weight[i], 1.5f);
        EXPECT_GE(a.bn.bias[i], -0.5f);
        EXPECT_LE(a.bn.bias[i], 0.5f);
        EXPECT_GE(a.bn.running_mean[i], -0.5f);
        EXPECT_LE(a.bn.running_mean[i], 0.5f);
        EXPECT_GE(a.bn.running_var[i], 0.5f);
        EXPECT_LE(a.bn.running_var[i], 1.5f);
    }
    // The first value is pinned: std::mt19937 is specified exactly, and so is our mapping.
    std::mt19937 gen(42);
    const double u = static_cast<double>(gen() >> 8) / 16777216.0;
    const double b36 = 1.0 / std::sqrt(36.0);
    EXPECT_EQ(a.conv_weight[0], static_cast<float>(-b36 + 2.0 * b36 * u));
}

TEST(Weights, RandomDwconvWeightsHaveAllParts) {
    LayerSpec s = dw_spec(4, 6, 5, true, true);
    RawWeights r = random_raw_weights(s, 0);
    EXPECT_EQ(r.conv_weight.size(), 4u * 25);
    EXPECT_EQ(r.pointwise_weight.size(), 24u);
    EXPECT_EQ(r.dw_bn.running_var.size(), 4u);
    EXPECT_EQ(r.bn.running_var.size(), 6u);
    for (float w : r.pointwise_weight) EXPECT_LE(std::fabs(w), 0.5f);  // 1/sqrt(c1)
    for (float w : r.conv_weight) EXPECT_LE(std::fabs(w), 0.2f);       // 1/sqrt(k*k)
    EXPECT_NO_THROW(fold_batchnorm(s, r));
}

TEST(Weights, SaveLoadFoldRoundTrip) {
    // random weights -> safetensors -> load -> identical RawWeights.
    TempDir dir;
    LayerSpec s = dw_spec(3, 4, 3, true, true);
    RawWeights r = random_raw_weights(s, 11);
    auto t = [](std::vector<int64_t> shape, const std::vector<float> &v) {
        Tensor x(std::move(shape));
        x.data = v;
        return x;
    };
    std::vector<std::pair<std::string, Tensor>> sd = {
        {"depthwise.weight", t({3, 1, 3, 3}, r.conv_weight)},
        {"pointwise.weight", t({4, 3, 1, 1}, r.pointwise_weight)},
        {"dw_bn.weight", t({3}, r.dw_bn.weight)}, {"dw_bn.bias", t({3}, r.dw_bn.bias)},
        {"dw_bn.running_mean", t({3}, r.dw_bn.running_mean)}, {"dw_bn.running_var", t({3}, r.dw_bn.running_var)},
        {"bn.weight", t({4}, r.bn.weight)}, {"bn.bias", t({4}, r.bn.bias)},
        {"bn.running_mean", t({4}, r.bn.running_mean)}, {"bn.running_var", t({4}, r.bn.running_var)},
    };
    write_safetensors(dir.file("r.safetensors"), sd);
    RawWeights back = load_raw_weights(s, SafeTensorsFile::read(dir.file("r.safetensors")), "");
    EXPECT_EQ(back.conv_weight, r.conv_weight);
    EXPECT_EQ(back.pointwise_weight, r.pointwise_weight);
    EXPECT_EQ(back.dw_bn.running_mean, r.dw_bn.running_mean);
    EXPECT_EQ(back.bn.bias, r.bn.bias);
    EXPECT_EQ(fold_batchnorm(s, back).pw_bias, fold_batchnorm(s, r).pw_bias);
}

}  // namespace
