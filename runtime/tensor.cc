#include "runtime/tensor.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

#include "runtime/errors.h"

namespace convgen {

std::string shape_to_string(const std::vector<int64_t> &shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(shape[i]);
    }
    out += "]";
    return out;
}

std::string printable(const std::string &text, size_t max_len) {
    std::string out;
    size_t shown = 0;
    for (unsigned char ch : text) {
        if (shown >= max_len) {
            out += "...";
            break;
        }
        if (ch >= 0x20 && ch < 0x7f) {
            out += static_cast<char>(ch);
        } else {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
        ++shown;
    }
    return out;
}

namespace {

// RAII wrapper so that every exit path closes the file.
struct File {
    std::FILE *f = nullptr;
    ~File() {
        if (f) std::fclose(f);
    }
};

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string &path) {
    const std::string where = "'" + printable(path, 200) + "'";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw Error("cannot open " + where + ": " + errno_text(errno));
    }
    if (S_ISDIR(st.st_mode)) throw Error("cannot read " + where + ": it is a directory, not a file");
    File file;
    file.f = std::fopen(path.c_str(), "rb");
    if (!file.f) throw Error("cannot open " + where + ": " + errno_text(errno));

    // Read in chunks rather than trusting st_size (pipes, /proc files, files that grow).
    std::vector<uint8_t> bytes;
    if (S_ISREG(st.st_mode) && st.st_size > 0) bytes.reserve(static_cast<size_t>(st.st_size));
    uint8_t buffer[1 << 16];
    for (;;) {
        size_t got = std::fread(buffer, 1, sizeof buffer, file.f);
        bytes.insert(bytes.end(), buffer, buffer + got);
        if (got < sizeof buffer) {
            if (std::ferror(file.f)) throw Error("cannot read " + where + ": " + errno_text(errno));
            break;
        }
    }
    return bytes;
}

void write_file_bytes(const std::string &path, const void *data, size_t size) {
    const std::string where = "'" + printable(path, 200) + "'";
    File file;
    file.f = std::fopen(path.c_str(), "wb");
    if (!file.f) throw Error("cannot create " + where + ": " + errno_text(errno));
    if (size > 0 && std::fwrite(data, 1, size, file.f) != size) {
        throw Error("cannot write " + where + ": " + errno_text(errno));
    }
    std::FILE *f = file.f;
    file.f = nullptr;
    if (std::fclose(f) != 0) throw Error("cannot write " + where + ": " + errno_text(errno));
}

}  // namespace convgen
