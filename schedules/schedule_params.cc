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

ScheduleParams heuristic_schedule(const LayerSpec &spec, IsaFamily isa) {
    ScheduleParams p;
    switch (isa) {
    case IsaFamily::AVX512: p.vector_width = 16; break;
    case IsaFamily::AVX2: p.vector_width = 8; break;
    case IsaFamily::NEON: p.vector_width = 4; break;
    case IsaFamily::Generic: p.vector_width = 4; break;
    }
    // Accumulator budget: AVX2 has 16 vector registers, AVX-512 and NEON 32. Leave room for
    // the broadcast weight and the input vectors.
    const int accumulators = (isa == IsaFamily::AVX2 || isa == IsaFamily::Generic) ? 12 : 24;
    const int ow = spec.out_w();
    const int vec_extent = spec.layout == Layout::NCHW ? ow : spec.c2;
    const int vectors_available = std::max(1, vec_extent / p.vector_width);
    p.tile_vectors = std::min(vectors_available, spec.layout == Layout::NCHW ? 4 : 3);
    p.tile_rows = std::max(1, std::min(accumulators / p.tile_vectors, 4));
    p.parallel_rows = 1;
    return p;
}

}  // namespace convgen
