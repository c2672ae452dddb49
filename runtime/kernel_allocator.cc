#include "runtime/kernel_allocator.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace convgen {

namespace {

// Each block starts with a header (its usable size) padded to the alignment, then the payload.
constexpr size_t kHeaderBytes = kKernelAllocatorAlignment;
// Blocks are rounded up to whole pages: requests that differ by a few bytes share blocks.
constexpr size_t kGranule = 4096;

size_t &capacity_of(char *payload) { return *reinterpret_cast<size_t *>(payload - kHeaderBytes); }

std::atomic<size_t> g_cached_bytes{0};  // over every thread's cache

// Frees a cached block and takes it off the count.
void release_to_system(char *payload) {
    g_cached_bytes -= capacity_of(payload);
    std::free(payload - kHeaderBytes);
}

// Freed blocks are kept by the thread that frees them: Halide frees a buffer in the task that
// allocated it, and its worker threads live as long as the process, so each thread finds its own
// blocks again with no lock. (A shared cache behind a try-lock sent the second of two threads that
// start their tasks together to the system allocator, page faults and all, on every call.)
struct ThreadCache {
    std::vector<char *> blocks;
    ~ThreadCache() {
        for (char *payload : blocks) release_to_system(payload);
    }
};

// Reserves `capacity` bytes of the process-wide bound; false when they do not fit.
bool reserve(size_t capacity) {
    size_t cached = g_cached_bytes.load();
    while (cached + capacity <= kKernelAllocatorCacheBytes) {
        if (g_cached_bytes.compare_exchange_weak(cached, cached + capacity)) return true;
    }
    return false;
}

ThreadCache &thread_cache() {
    thread_local ThreadCache cache;
    return cache;
}

}  // namespace

void *kernel_malloc(void *, size_t bytes) {
    if (bytes > SIZE_MAX / 2 - kHeaderBytes - kGranule) return nullptr;
    const size_t capacity = (bytes + kGranule - 1) / kGranule * kGranule;
    std::vector<char *> &blocks = thread_cache().blocks;
    // The smallest cached block that holds the request, unless it would waste over half.
    size_t best = blocks.size();
    for (size_t i = 0; i < blocks.size(); ++i) {
        const size_t c = capacity_of(blocks[i]);
        if (c >= capacity && c <= 2 * capacity && (best == blocks.size() || c < capacity_of(blocks[best]))) best = i;
    }
    if (best != blocks.size()) {
        char *payload = blocks[best];
        blocks.erase(blocks.begin() + std::ptrdiff_t(best));  // keeps the rest oldest first
        g_cached_bytes -= capacity_of(payload);
        return payload;
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
    const size_t capacity = capacity_of(payload);
    // The newest block is the likeliest to be asked for again (the next call of the same kernel):
    // when the bound is reached, this thread's oldest blocks (blocks of kernels run earlier) make
    // room for it, so a long-running process does not end up caching only its first kernels' sizes.
    std::vector<char *> &blocks = thread_cache().blocks;
    while (!reserve(capacity)) {
        if (blocks.empty() || capacity > kKernelAllocatorCacheBytes) {
            std::free(payload - kHeaderBytes);
            return;
        }
        release_to_system(blocks.front());
        blocks.erase(blocks.begin());
    }
    blocks.push_back(payload);
}

size_t kernel_allocator_cached_bytes() { return g_cached_bytes.load(); }

}  // namespace convgen
