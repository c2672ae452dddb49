#include "bench/machine.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace convgen_bench {

namespace {

using Clock = std::chrono::steady_clock;

// Independent dependency chains acc = acc * m + c; m < 1 keeps every value bounded and normal.
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    __m256 a0 = _mm256_set1_ps(1.00f), a1 = _mm256_set1_ps(1.01f), a2 = _mm256_set1_ps(1.02f);
    __m256 a3 = _mm256_set1_ps(1.03f), a4 = _mm256_set1_ps(1.04f), a5 = _mm256_set1_ps(1.05f);
    __m256 a6 = _mm256_set1_ps(1.06f), a7 = _mm256_set1_ps(1.07f), a8 = _mm256_set1_ps(1.08f);
    __m256 a9 = _mm256_set1_ps(1.09f), a10 = _mm256_set1_ps(1.10f), a11 = _mm256_set1_ps(1.11f);
    for (int64_t i = 0; i < iters; ++i) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    return out[0] + out[7];
}
constexpr double kFlopsPerIterAvx2 = 12 * 8 * 2;

__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
    __m512 a[24];
    for (int j = 0; j < 24; ++j) a[j] = _mm512_set1_ps(1.0f + 0.01f * j);
    for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
        for (int j = 0; j < 24; ++j) a[j] = _mm512_fmadd_ps(a[j], m, c);
    }
    __m512 s = a[0];
    for (int j = 1; j < 24; ++j) s = _mm512_add_ps(s, a[j]);
    alignas(64) float out[16];  // (not _mm512_reduce_add_ps: GCC 12's version warns with -Wextra)
    _mm512_store_ps(out, s);
    return out[0] + out[15];
}
constexpr double kFlopsPerIterAvx512 = 24 * 16 * 2;

float fma_chains_scalar(int64_t iters) {
    float a[8] = {1, 1.01f, 1.02f, 1.03f, 1.04f, 1.05f, 1.06f, 1.07f};
    for (int64_t i = 0; i < iters; ++i)
        for (float &x : a) x = x * 0.999f + 0.001f;
    return a[0] + a[7];
}
constexpr double kFlopsPerIterScalar = 8 * 2;

// Runs fn(iters) on `threads` threads released together; returns the wall time in seconds.
template <typename Fn>
double run_parallel(int threads, Fn fn) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    std::atomic<float> sink{0};
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire)) {
            }
            float r = fn(t);
            sink.store(r, std::memory_order_relaxed);
        });
    }
    while (ready.load() < threads) {
    }
    const auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto &th : pool) th.join();
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

FmaPeak measure_fma_peak(int threads, double seconds, int reps) {
    FmaPeak result;
    float (*kernel)(int64_t) = fma_chains_scalar;
    double flops_per_iter = kFlopsPerIterScalar;
    result.isa = "scalar";
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        kernel = fma_chains_avx512;
        flops_per_iter = kFlopsPerIterAvx512;
        result.isa = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        kernel = fma_chains_avx2;
        flops_per_iter = kFlopsPerIterAvx2;
        result.isa = "avx2+fma";
    }
    // Calibrate on one thread, then size each run to about `seconds`.
    int64_t iters = 1 << 18;
    double t = run_parallel(1, [&](int) { return kernel(iters); });
    iters = std::max<int64_t>(iters, static_cast<int64_t>(iters * seconds / std::max(t, 1e-6)));
    double best = 0;
    for (int rep = 0; rep < reps; ++rep) {
        t = run_parallel(threads, [&](int) { return kernel(iters); });
        best = std::max(best, flops_per_iter * double(iters) * threads / t * 1e-9);
    }
    result.gflops = best;
    return result;
}

double measure_triad_gbs(int threads) {
    const size_t n = size_t(16) << 20;  // 16 Mi floats = 64 MiB per array
    std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
    const size_t chunk = (n + threads - 1) / threads;
    auto part = [&](int t, auto body) {
        const size_t lo = std::min(n, size_t(t) * chunk), hi = std::min(n, lo + chunk);
        body(lo, hi);
    };
    run_parallel(threads, [&](int t) {
        part(t, [&](size_t lo, size_t hi) {
            for (size_t i = lo; i < hi; ++i) {
                a[i] = 0.f;
                b[i] = 1.f;
                c[i] = 2.f;
            }
        });
        return 0.f;
    });
    double best = 1e30;
    const float s = 3.f;
    for (int rep = 0; rep < 5; ++rep) {
        float *pa = a.get();
        const float *pb = b.get(), *pc = c.get();
        best = std::min(best, run_parallel(threads, [&](int t) {
                            part(t, [&](size_t lo, size_t hi) {
                                for (size_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
                            });
                            return pa[std::min(n - 1, size_t(t) * chunk)];
                        }));
    }
    return 3.0 * sizeof(float) * double(n) / best * 1e-9;
}

}  // namespace convgen_bench
