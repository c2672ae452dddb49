// Microbenchmarks of the machine itself, run by convgen_bench before the layers: the FMA peak
// (what "% of peak" divides by) and a STREAM-like triad bandwidth (the roofline's slope).
#pragma once

#include <string>

namespace convgen_bench {

struct FmaPeak {
    double gflops = 0;  // all threads together
    std::string isa;    // "avx512f", "avx2+fma", or "scalar" when neither is available
};

// Each of `threads` threads runs independent FMA chains (24 x __m512 with AVX-512, else
// 12 x __m256 with AVX2+FMA: more chains than FMA latency x FMA ports) for about `seconds`;
// best of `reps`. FLOPs = 2 per lane per FMA.
FmaPeak measure_fma_peak(int threads, double seconds = 0.1, int reps = 5);

// a[i] = b[i] + s * c[i] over three 64 MiB float arrays split among `threads` threads (first
// touch by the thread that uses them); best of 5; bytes = 3 x 4 x N (STREAM's count, write
// allocate not counted). GB/s = 1e9 bytes per second.
double measure_triad_gbs(int threads);

}  // namespace convgen_bench
