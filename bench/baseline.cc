#include "bench/baseline.h"

namespace convgen_bench {

void nchw_to_nhwc(const float *src, float *dst, int n, int c, int h, int w) {
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x)
                    dst[((int64_t(b) * h + y) * w + x) * c + ch] = src[((int64_t(b) * c + ch) * h + y) * w + x];
}

void nhwc_to_nchw(const float *src, float *dst, int n, int c, int h, int w) {
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x)
                    dst[((int64_t(b) * c + ch) * h + y) * w + x] = src[((int64_t(b) * h + y) * w + x) * c + ch];
}

}  // namespace convgen_bench
