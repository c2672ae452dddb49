// The allocator behind the buffers convgen's kernels allocate while they run (their Halide
// runtime's halide_malloc and halide_free, installed by the JIT, the JIT disk cache and the AOT
// registration source).
//
// A kernel that stages a few hundred KB per row tile allocates and frees it on every call. With
// glibc's malloc, freeing a block at the top of a small heap hands its pages back (brk), and the
// next call page-faults them in again: mbv1_b6 at 1 thread ran 3.1 ms from the JIT disk cache
// against 0.62 ms in the JIT process, whose heap LLVM had grown. Freed blocks are kept (at most
// kKernelAllocatorCacheBytes in all; at the bound a thread's oldest blocks make room for the newest)
// and handed out again to a request they fit.
#pragma once

#include <cstddef>

namespace convgen {

// Bytes of freed blocks kept for reuse, over every kernel and thread of the process (each thread
// keeps the blocks it frees).
constexpr size_t kKernelAllocatorCacheBytes = size_t(64) << 20;
// Alignment of every block (Halide's kernels need their vector width; 128 covers every target).
constexpr size_t kKernelAllocatorAlignment = 128;

// halide_malloc_t and halide_free_t. Lock-free (per-thread caches, one atomic byte count), so a
// process forked while a kernel ran cannot deadlock in them.
void *kernel_malloc(void *user_context, size_t bytes);
void kernel_free(void *user_context, void *ptr);

// Bytes of freed blocks the cache holds now (for tests).
size_t kernel_allocator_cached_bytes();

}  // namespace convgen
