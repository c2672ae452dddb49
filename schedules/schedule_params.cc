#include "schedules/schedule_params.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "runtime/errors.h"

namespace convgen {

const char *isa_family_name(IsaFamily f) {
    switch (f) {
    case IsaFamily::Generic: return "generic";
    case IsaFamily::AVX2: return "avx2";
    case IsaFamily::AVX512: return "avx512";
    case IsaFamily::NEON: return "neon";
    }
    return "?";
}

std::string ScheduleParams::to_string() const {
    std::ostringstream os;
    os << "vec=" << vector_width << " tile_vectors=" << tile_vectors << " tile_rows=" << tile_rows
       << " parallel_rows=" << parallel_rows;
    return os.str();
}

ScheduleParams ScheduleParams::parse(const std::string &text) {
    ScheduleParams p;
    std::map<std::string, int *> fields = {{"vec", &p.vector_width},
                                           {"tile_vectors", &p.tile_vectors},
                                           {"tile_rows", &p.tile_rows},
                                           {"parallel_rows", &p.parallel_rows}};
    std::istringstream is(text);
    std::string tok;
    while (is >> tok) {
        const size_t eq = tok.find('=');
        if (eq == std::string::npos) throw Error("schedule: '" + tok + "' is not of the form key=value");
        auto it = fields.find(tok.substr(0, eq));
        if (it == fields.end()) throw Error("schedule: unknown parameter '" + tok.substr(0, eq) + "'");
        const std::string value = tok.substr(eq + 1);
        int v = 0;
        size_t used = 0;
        try {
            v = std::stoi(value, &used);
        } catch (const std::exception &) {
            used = 0;
        }
        if (used == 0 || used != value.size() || v < 1 || v > 256) {
            throw Error("schedule parameter '" + it->first + "': '" + value + "' must be an integer in 1..256");
        }
        *it->second = v;
    }
    return p;
}

namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Elements computed along a dimension of `extent` split into tiles of `tile` with ShiftInwards
// (the last tile is shifted back, so work is repeated rather than guarded).
int computed_extent(int extent, int tile) { return extent < tile ? extent : ceil_div(extent, tile) * tile; }

}  // namespace

ScheduleParams heuristic_schedule(const LayerSpec &spec, IsaFamily isa) {
    ScheduleParams p;
    switch (isa) {
    case IsaFamily::AVX512: p.vector_width = 16; break;
    case IsaFamily::AVX2: p.vector_width = 8; break;
    case IsaFamily::NEON: p.vector_width = 4; break;
    case IsaFamily::Generic: p.vector_width = 4; break;
    }
    // Vector registers: 16 on AVX2 and SSE, 32 on AVX-512 and NEON. A tile of tv vectors x tr rows
    // holds tv*tr accumulators, plus the operands of the innermost (unrolled) dimension that are
    // reused across the other one (tr broadcast weights in NCHW, tv weight vectors in NHWC),
    // plus one streaming operand. Exceeding the file makes LLVM spill inside the reduction loop.
    const int registers = (isa == IsaFamily::AVX2 || isa == IsaFamily::Generic) ? 16 : 32;
    const int V = p.vector_width;
    const bool nchw = spec.layout == Layout::NCHW;
    // The vectorised dimension and the dimension whose elements share each vector load.
    const int vec_extent = nchw ? spec.out_w() : spec.c2;
    const int row_extent = nchw ? spec.c2 : spec.out_w();
    // Grouped NCHW convs: keep a channel tile inside one group so it shares input loads.
    const int group_out = spec.kind == LayerKind::Conv ? spec.c2 / spec.g : spec.c2;
    const bool tile_within_group = nchw && spec.kind == LayerKind::Conv && spec.g > 1;
    // Strided convs in NCHW load two vectors and shuffle for each input vector.
    const double load_cost = 1.0;  // strided inputs are staged by phase, so loads stay unit-stride

    double best = -1;
    for (int tv = 1; tv <= std::max(1, std::min(8, ceil_div(vec_extent, V))); ++tv) {
        for (int tr = 1; tr <= 8; ++tr) {
            if (tv * tr + (nchw ? tr : tv) + 1 > registers) break;
            if (tr > row_extent) break;
            if (tile_within_group && group_out % tr != 0) continue;
            const int tile_v = vec_extent < V ? vec_extent : V * std::min(tv, vec_extent / V);
            if (vec_extent >= V && tv > vec_extent / V) continue;
            const double useful = double(vec_extent) * row_extent /
                                  (double(computed_extent(vec_extent, tile_v)) * computed_extent(row_extent, tr));
            // FMAs per reduction step against the loads and broadcasts that feed them (2 per cycle each).
            const double fmas = double(tv) * tr;
            const double cycles = std::max(fmas, tv * load_cost + tr) / 2.0 + 0.5;
            const double score = useful * fmas / cycles;
            if (score > best + 1e-9) {
                best = score;
                p.tile_vectors = tv;
                p.tile_rows = tr;
            }
        }
    }
    // Parallel tasks: enough rows per task to amortise staging the padded input, while leaving
    // at least 8 tasks per core on 2-16 cores where the layer is big enough.
    const int tasks_wanted = 16;
    p.parallel_rows = std::max(1, std::min(8, spec.out_h() * spec.n / tasks_wanted));
    return p;
}

}  // namespace convgen
