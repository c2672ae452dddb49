// The memory budget: the most bytes one layer's tensors (input, output and weights) may take.
// Specs over it are refused with a convgen::Error before anything is allocated or compiled, so an
// absurd spec (a valid 40000x40000 image, a batch of 10^5) fails clearly instead of being killed
// by the OOM killer half-way.
//
// Default: half of the machine's physical memory. Set with CONVGEN_MEMORY_BUDGET (e.g. "2G",
// "512M", "1.5GiB", "1000000" bytes; "0" or "unlimited": no limit) or set_memory_budget_bytes().
#pragma once

#include <cstdint>
#include <string>

#include "dsl/layer_spec.h"

namespace convgen {

// Bytes of a layer's input, output and weights (float32; a dwconv's fused depthwise result is
// never materialised and not counted).
int64_t layer_tensor_bytes(const LayerSpec &spec);

// The current budget in bytes (0: unlimited). Reads CONVGEN_MEMORY_BUDGET once; a malformed value
// is a convgen::Error naming it.
int64_t memory_budget_bytes();
// Overrides the environment for this process (0: unlimited).
void set_memory_budget_bytes(int64_t bytes);

// Throws convgen::Error ("layer needs 17.3 GiB for its tensors (input ..., output ..., weights ...),
// over the memory budget of 12.0 GiB; raise CONVGEN_MEMORY_BUDGET ...") when the spec is over budget.
void check_memory_budget(const LayerSpec &spec);

// "12.0 GiB", "512.0 MiB", "100 B".
std::string format_bytes(int64_t bytes);
// Parses "2G", "512M", "64K", "1.5GiB", "100000" (bytes); "0"/"unlimited" = 0. Throws convgen::Error.
int64_t parse_byte_size(const std::string &text, const std::string &what);

}  // namespace convgen
