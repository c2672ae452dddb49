// Schedule templates: *how* a LayerAlgorithm is computed for one ISA family.
#pragma once

#include <Halide.h>

#include "dsl/algorithms.h"
#include "schedules/schedule_params.h"

namespace convgen {

IsaFamily isa_family_of(const Halide::Target &target);

// Applies the schedule template for `params` to the algorithm's Funcs.
void apply_schedule(LayerAlgorithm &alg, const ScheduleParams &params, const Halide::Target &target);

}  // namespace convgen
