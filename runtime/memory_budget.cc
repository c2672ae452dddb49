#include "runtime/memory_budget.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "runtime/errors.h"
#include "runtime/tensor.h"

namespace convgen {

namespace {

std::once_flag g_env_once;
std::atomic<int64_t> g_budget{-1};  // -1: not yet read

int64_t default_budget() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return 0;  // unknown machine size: no limit rather than a guess
    return static_cast<int64_t>(pages) * page / 2;
}

}  // namespace

int64_t layer_tensor_bytes(const LayerSpec &s) {
    // Each term fits in 64 bits: validation bounds every tensor to 32-bit indexing.
    const int64_t in = Tensor::element_count(s.input_shape());
    const int64_t out = Tensor::element_count(s.output_shape());
    int64_t weights = 0;
    if (s.kind == LayerKind::Conv) {
        weights = int64_t(s.c2) * (s.c1 / s.g) * s.k * s.k + 5 * int64_t(s.c2);  // + bias / BN
    } else {
        weights = int64_t(s.c1) * s.k * s.k + int64_t(s.c2) * s.c1 + 5 * (int64_t(s.c1) + s.c2);
    }
    return (in + out + weights) * int64_t(sizeof(float));
}

int64_t parse_byte_size(const std::string &text, const std::string &what) {
    auto bad = [&]() -> Error {
        return Error(what + " '" + text + "' is not a size: use bytes or a number with K, M, G or T (e.g. 8G, 512M), or 'unlimited'");
    };
    if (text == "unlimited" || text == "0") return 0;
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == 0 || i > 24) throw bad();
    char *end = nullptr;
    const std::string number = text.substr(0, i);
    const double v = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size() || !std::isfinite(v)) throw bad();
    std::string unit = text.substr(i);
    for (auto &c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    double scale = 1;
    if (unit.empty() || unit == "B") scale = 1;
    else if (unit == "K" || unit == "KB" || unit == "KIB") scale = 1024.0;
    else if (unit == "M" || unit == "MB" || unit == "MIB") scale = 1024.0 * 1024;
    else if (unit == "G" || unit == "GB" || unit == "GIB") scale = 1024.0 * 1024 * 1024;
    else if (unit == "T" || unit == "TB" || unit == "TIB") scale = 1024.0 * 1024 * 1024 * 1024;
    else throw bad();
    const double bytes = v * scale;
    if (bytes < 1 || bytes > 9.0e18) throw bad();
    return static_cast<int64_t>(bytes);
}

int64_t memory_budget_bytes() {
    std::call_once(g_env_once, [] {
        const char *env = std::getenv("CONVGEN_MEMORY_BUDGET");
        int64_t v = default_budget();
        bool from_env = env && *env;
        if (from_env) v = parse_byte_size(env, "CONVGEN_MEMORY_BUDGET");
        int64_t expected = -1;
        g_budget.compare_exchange_strong(expected, v);  // set_memory_budget_bytes() may have run first
    });
    return g_budget.load();
}

void set_memory_budget_bytes(int64_t bytes) {
    if (bytes < 0) throw Error("memory budget must be >= 0 bytes (0: unlimited), got " + std::to_string(bytes));
    std::call_once(g_env_once, [] {});  // an explicit setting wins over the environment
    g_budget.store(bytes);
}

std::string format_bytes(int64_t bytes) {
    char buf[64];
    const double b = static_cast<double>(bytes);
    if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
    else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
    return buf;
}

void check_memory_budget(const LayerSpec &s) {
    const int64_t budget = memory_budget_bytes();
    const int64_t need = layer_tensor_bytes(s);
    if (budget == 0 || need <= budget) return;
    const int64_t f = sizeof(float);
    throw Error("layer '" + s.to_string() + "' needs " + format_bytes(need) + " for its tensors (input " +
                format_bytes(Tensor::element_count(s.input_shape()) * f) + ", output " +
                format_bytes(Tensor::element_count(s.output_shape()) * f) + "), over the memory budget of " +
                format_bytes(budget) + "; set CONVGEN_MEMORY_BUDGET (e.g. 32G, or 'unlimited') to allow it");
}

}  // namespace convgen
