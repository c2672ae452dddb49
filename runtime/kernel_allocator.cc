#include "runtime/kernel_allocator.h"

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace convgen {

namespace {

// Each block starts with a header (its usable size) padded to the alignment, then the payload.
constexpr size_t kHeaderBytes = kKernelAllocatorAlignment;
// Blocks are rounded up to whole pages: requests that differ by a few bytes share blocks.
constexpr size_t kGranule = 4096;

std::mutex g_mutex;
std::vector<char *> g_free;  // payloads of cached blocks; guarded by g_mutex
size_t g_cached_bytes = 0;   // guarded by g_mutex

size_t &capacity_of(char *payload) { return *reinterpret_cast<size_t *>(payload - kHeaderBytes); }

}  // namespace

void *kernel_malloc(void *, size_t bytes) {
    if (bytes > SIZE_MAX / 2 - kHeaderBytes - kGranule) return nullptr;
    const size_t capacity = (bytes + kGranule - 1) / kGranule * kGranule;
    {
        std::unique_lock<std::mutex> lock(g_mutex, std::try_to_lock);
        if (lock.owns_lock()) {
            // The smallest cached block that holds the request, unless it would waste over half.
            size_t best = g_free.size();
            for (size_t i = 0; i < g_free.size(); ++i) {
                const size_t c = capacity_of(g_free[i]);
                if (c >= capacity && c <= 2 * capacity && (best == g_free.size() || c < capacity_of(g_free[best]))) best = i;
            }
            if (best != g_free.size()) {
                char *payload = g_free[best];
                g_free[best] = g_free.back();
                g_free.pop_back();
                g_cached_bytes -= capacity_of(payload);
                return payload;
            }
        }
    }
    char *block = static_cast<char *>(std::aligned_alloc(kKernelAllocatorAlignment, kHeaderBytes + capacity));
    if (!block) return nullptr;
    char *payload = block + kHeaderBytes;
    capacity_of(payload) = capacity;
    return payload;
}

void kernel_free(void *, void *ptr) {
    if (!ptr) return;
    char *payload = static_cast<char *>(ptr);
    {
        std::unique_lock<std::mutex> lock(g_mutex, std::try_to_lock);
        if (lock.owns_lock() && g_cached_bytes + capacity_of(payload) <= kKernelAllocatorCacheBytes) {
            g_free.push_back(payload);
            g_cached_bytes += capacity_of(payload);
            return;
        }
    }
    std::free(payload - kHeaderBytes);
}

size_t kernel_allocator_cached_bytes() {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_cached_bytes;
}

}  // namespace convgen
