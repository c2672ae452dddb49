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

std::vector<int> vector_widths(IsaFamily isa) {
    switch (isa) {
    case IsaFamily::AVX512: return {16, 8};
    case IsaFamily::AVX2: return {8};
    case IsaFamily::NEON: return {4};
    case IsaFamily::Generic: return {4};
    }
    return {4};
}

const std::vector<std::string> &halide_autoschedulers() {
    static const std::vector<std::string> names = {"Mullapudi2016", "Li2018", "Adams2019"};
    return names;
}

std::string ScheduleParams::to_string() const {
    std::ostringstream os;
    if (!autoscheduler.empty()) return "auto=" + autoscheduler;
    os << "vec=" << vector_width << " tile_vectors=" << tile_vectors << " tile_rows=" << tile_rows
       << " parallel_rows=" << parallel_rows << " channels=" << vectorize_channels
       << " channel_tasks=" << parallel_channels << " dw_per_task=" << depthwise_per_task;
    // Omitted at its default so that the text (cache keys, databases) of older schedules is unchanged.
    if (tile_y != 1) os << " tile_y=" << tile_y;
    if (flat_rows) os << " flat=" << flat_rows;
    if (channel_blocks != 1) os << " channel_blocks=" << channel_blocks;
    if (stream_input) os << " stream=" << stream_input;
    if (depthwise_rows != 1) os << " dw_rows=" << depthwise_rows;
    if (transpose_store) os << " transpose=" << transpose_store;
    return os.str();
}

ScheduleParams ScheduleParams::parse(const std::string &text) {
    ScheduleParams p;
    std::map<std::string, int *> fields = {{"vec", &p.vector_width},
                                           {"tile_vectors", &p.tile_vectors},
                                           {"tile_rows", &p.tile_rows},
                                           {"parallel_rows", &p.parallel_rows},
                                           {"channels", &p.vectorize_channels},
                                           {"channel_tasks", &p.parallel_channels},
                                           {"dw_per_task", &p.depthwise_per_task},
                                           {"tile_y", &p.tile_y},
                                           {"flat", &p.flat_rows},
                                           {"channel_blocks", &p.channel_blocks},
                                           {"stream", &p.stream_input},
                                           {"dw_rows", &p.depthwise_rows},
                                           {"transpose", &p.transpose_store}};
    std::istringstream is(text);
    std::string tok;
    while (is >> tok) {
        const size_t eq = tok.find('=');
        if (eq == std::string::npos) throw Error("schedule: '" + tok + "' is not of the form key=value");
        if (tok.substr(0, eq) == "auto") {
            const std::string name = tok.substr(eq + 1);
            const auto &known = halide_autoschedulers();
            if (std::find(known.begin(), known.end(), name) == known.end()) {
                throw Error("schedule: unknown autoscheduler '" + name + "' (Mullapudi2016, Li2018 or Adams2019)");
            }
            p.autoscheduler = name;
            continue;
        }
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
        const bool flag = it->first == "channels" || it->first == "channel_tasks" || it->first == "dw_per_task" || it->first == "flat" ||
                          it->first == "stream" || it->first == "transpose";
        const int lowest = flag ? 0 : 1;
        const int highest = flag ? 1 : (it->first == "tile_y" || it->first == "dw_rows") ? 8 : it->first == "channel_blocks" ? 64 : 256;
        if (used == 0 || used != value.size() || v < lowest || v > highest) {
            throw Error("schedule parameter '" + it->first + "': '" + value + "' must be an integer in " +
                        std::to_string(lowest) + ".." + std::to_string(highest));
        }
        *it->second = v;
    }
    return p;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

namespace {

// Elements computed along a dimension of `extent` split into tiles of `tile` with ShiftInwards
// (the last tile is shifted back, so work is repeated rather than guarded).
int computed_extent(int extent, int tile) { return extent < tile ? extent : ceil_div(extent, tile) * tile; }

// The fraction of the lanes computed along a vectorised extent that are wanted, tiled as the
// templates tile it (vector_tile in default_schedules.cc, output_channel_tile): tiles of
// `tile_vectors` whole vectors (at most the extent holds), or the whole extent in one vector
// shorter than a register, which wastes the rest of its lanes.
double wanted_lane_fraction(int extent, int width, int tile_vectors) {
    if (extent < width) return double(extent) / width;
    const int tile = width * std::max(1, std::min(tile_vectors, extent / width));
    return double(extent) / computed_extent(extent, tile);
}

}  // namespace

bool flat_rows_supported(const LayerSpec &spec) {
    if (spec.layout != Layout::NCHW) return false;
    return spec.kind == LayerKind::DepthwisePointwise || (spec.k == 1 && spec.s == 1 && spec.p == 0);
}

bool flat_tile_vectors_supported(int tile_vectors) { return tile_vectors == 1 || tile_vectors == 2 || tile_vectors == 4; }

bool flat_reads_input_in_place(const LayerSpec &spec, const ScheduleParams &params) {
    if (spec.kind != LayerKind::Conv || !flat_rows_supported(spec) || along_channels(spec, params) || !params.flat_rows) return false;
    const int rows = task_rows(params, spec), ty = tile_y_for(params, rows);
    return spec.out_h() % rows == 0 && rows % ty == 0 && (ty * spec.out_w()) % (params.vector_width * std::max(1, params.tile_vectors)) == 0;
}

bool channel_blocks_apply(const LayerSpec &spec, const ScheduleParams &params) {
    const bool flat_along_x = spec.layout == Layout::NCHW && !params.vectorize_channels && params.flat_rows;
    if (spec.kind == LayerKind::Conv) return along_channels(spec, params);
    return params.depthwise_per_task && !flat_along_x;
}

bool round_up_short_rows(const LayerSpec &spec, const ScheduleParams &params) {
    return spec.layout == Layout::NCHW && spec.out_w() < params.vector_width && 2 * spec.out_w() > params.vector_width;
}

int task_rows(const ScheduleParams &params, const LayerSpec &spec) { return std::max(1, std::min(params.parallel_rows, spec.out_h())); }

int tile_y_for(const ScheduleParams &params, int rows) { return std::max(1, std::min(params.tile_y, rows)); }

int depthwise_rows_at_once(const LayerSpec &spec, const ScheduleParams &params) {
    if (!params.autoscheduler.empty() || spec.kind != LayerKind::DepthwisePointwise || spec.layout != Layout::NCHW) return 1;
    if (params.depthwise_per_task) return task_rows(params, spec);
    if (along_channels(spec, params)) return 1;
    return tile_y_for(params, task_rows(params, spec));  // the row tile
}

bool depthwise_rows_apply(const LayerSpec &spec, const ScheduleParams &params) { return depthwise_rows_at_once(spec, params) > 1; }

bool stream_applies(const LayerSpec &spec, const ScheduleParams &params) {
    if (!params.autoscheduler.empty()) return false;
    const bool channels = along_channels(spec, params);
    if (spec.kind == LayerKind::DepthwisePointwise) {
        // An NHWC depthwise has no channel loop outside its rows (channels are its vectors).
        if (params.depthwise_per_task) return spec.layout == Layout::NCHW;
        return channels || !params.flat_rows;
    }
    return !channels && !(params.flat_rows && flat_rows_supported(spec));
}

bool reads_padded_rows_strided(const LayerSpec &spec, const ScheduleParams &params) {
    return spec.layout == Layout::NCHW && spec.s > 1 && spec.w + 2 * spec.p >= params.vector_width;
}

int channel_blocks_of(const LayerSpec &spec, const ScheduleParams &params) {
    if (!channel_blocks_apply(spec, params)) return 1;
    // A block holds at least one channel tile: more blocks than tiles give no more tasks.
    const int tiles = ceil_div(spec.c2, output_channel_tile(spec, params));
    return std::max(1, std::min(params.channel_blocks, tiles));
}

bool channel_vectorization_supported(const LayerSpec &spec, int vector_width) {
    // Dense convs and the pointwise stage read one input value per pixel for all output channels.
    // A grouped conv does too when a vector of output channels never straddles two groups (the
    // group's output channels are whole vectors, and the tile is cut to divide them, see
    // output_channel_tile); otherwise each lane would need another input channel (a gather).
    if (spec.kind == LayerKind::DepthwisePointwise || spec.g == 1) return true;
    const int vec = std::max(1, vector_width);
    return spec.out_channels_per_group() % vec == 0;
}

bool along_channels(const LayerSpec &spec, const ScheduleParams &params) {
    return spec.layout == Layout::NHWC ||
           (params.vectorize_channels && channel_vectorization_supported(spec, params.vector_width));
}

int max_tile_rows(const LayerSpec &spec, const ScheduleParams &params) { return along_channels(spec, params) ? 16 : 8; }

int output_channel_tile(const LayerSpec &spec, const ScheduleParams &params) {
    if (!along_channels(spec, params)) return std::max(1, std::min(params.tile_rows, spec.c2));
    const int vec = std::max(1, params.vector_width);
    if (spec.c2 < vec) return spec.c2;
    int vectors = std::max(1, std::min(params.tile_vectors, spec.c2 / vec));
    const int group_out = spec.out_channels_per_group();
    if (spec.kind == LayerKind::Conv && spec.g > 1 && group_out % vec == 0) {
        // A tile within one group reads one input channel per reduction step for all its lanes.
        while ((group_out / vec) % vectors != 0) --vectors;
    }
    return vec * vectors;
}

WeightLayout weight_layout_for(const LayerSpec &spec, const ScheduleParams &params) {
    if (!params.autoscheduler.empty()) return WeightLayout::PyTorch;
    const int tile = output_channel_tile(spec, params);
    if (along_channels(spec, params)) {
        // Vectorised along output channels, a register tile loads its weights as vectors: in
        // blocks of the tile they are one sequential stream per tile (mbv1_b13 1.21x, resnet_3x3
        // 1.04x at 1 thread) instead of a few vectors every c2 floats. The blocks must line up
        // with the tiles for the loads to stay dense vectors, so channel counts the tile does not
        // divide keep channels innermost.
        if (spec.c2 % tile == 0 && tile < spec.c2) return WeightLayout::output_blocked(tile);
        return WeightLayout::ChannelsInnermost;
    }
    // Along x: the register tile broadcasts its channels' weights per reduction step, side by
    // side in this layout.
    return WeightLayout::output_blocked(tile);
}

int channel_tile_pixels(const ScheduleParams &params, const LayerSpec &spec) { return std::max(1, std::min(params.tile_rows, spec.out_w())); }

bool transpose_store_applies(const LayerSpec &spec, const ScheduleParams &params) {
    if (!params.autoscheduler.empty() || spec.layout != Layout::NCHW || !along_channels(spec, params)) return false;
    // 16 lanes only: with 8 on AVX-512 (yolo_g4_s2's and resnet_3x3's shapes, 8-pixel tiles, Zen 4)
    // the transposed store measured 0.84x and 0.81x of the scalar one (LLVM joins the tile's 8-lane
    // accumulators into 16-lane registers and inserts and extracts halves in the reduction loop).
    // AVX2 code on the same host gained with 8 (yolo_g4_s2's shape 1.05-1.07x), but the parameters
    // do not say which of the two a width of 8 runs on: not taken there yet.
    const int pixels = channel_tile_pixels(params, spec);
    return params.vector_width == 16 && pixels % 2 == 0 && spec.out_w() % pixels == 0 && spec.c2 % 16 == 0;
}

OutputTranspose output_transpose_for(const LayerSpec &spec, const ScheduleParams &params) {
    if (!params.transpose_store || !transpose_store_applies(spec, params)) return {};
    return {channel_tile_pixels(params, spec), params.vector_width};
}

namespace {

// A register tiling scored by the heuristic: tv vectors x tr rows (x ty output rows along x).
struct Choice {
    double score = -1;
    int tv = 1, tr = 1, ty = 1;
};

// FMAs per cycle of a register tile of `fmas` accumulators fed by `operands` loads and broadcasts
// per reduction step (2 FMAs and 2 loads per cycle), times the fraction of the computed elements
// that are wanted (`useful`).
double tile_score(double useful, int fmas, int operands) {
    const double cycles = std::max(double(fmas), double(operands)) / 2.0 + 0.5;
    return useful * fmas / cycles;
}

// NCHW flat_rows (see ScheduleParams): ty output rows form one run of ty * out_w pixels, cut into
// register tiles of tv vectors (RoundUp) x tr channels. The run should be whole tiles: one row of
// 28 pixels in tiles of 16 computes 32, four rows (112) compute exactly 112 (mbv1_b6-like layers
// 1.17x at 1 thread on AVX2). Equal scores go to the longer run, which reads each pointwise weight
// once per run. The rows must also split the image evenly (ShiftInwards recomputes the rest).
Choice best_flat_tile(const LayerSpec &spec, int V, int registers) {
    Choice best;
    const int w = spec.out_w(), h = spec.out_h();
    for (int ty = 1; ty <= std::min(8, h); ++ty) {
        for (int tv : {1, 2, 4}) {  // flat_tile_vectors_supported
            for (int tr = 1; tr <= std::min(spec.c2, 12); ++tr) {
                // Accumulators, the tile's input vectors (reused across its channels), one broadcast.
                if (tv * tr + tv + 1 > registers) break;
                const int run = ty * w, tile = tv * V;
                if (tile > run) break;
                const double useful = double(run) / (ceil_div(run, tile) * tile) * double(spec.c2) /
                                      (ceil_div(spec.c2, tr) * tr) * double(h) / (ceil_div(h, ty) * ty);
                const double score = tile_score(useful, tv * tr, tv + tr);
                if (score >= best.score - 1e-9) best = {score, tv, tr, ty};
            }
        }
    }
    return best;
}

}  // namespace

ScheduleParams heuristic_schedule(const LayerSpec &spec, IsaFamily isa, bool split_wide_fma, TemplateFamily family) {
    ScheduleParams p;
    p.vector_width = vector_widths(isa).front();
    // Vector registers: 16 on AVX2 and SSE, 32 on AVX-512 and NEON. A tile of tv vectors x tr rows
    // holds tv*tr accumulators, plus the operands of the innermost (unrolled) dimension that are
    // reused across the other one (tr broadcast weights in NCHW, tv weight vectors in NHWC),
    // plus one streaming operand. Exceeding the file makes LLVM spill inside the reduction loop.
    const int registers = (isa == IsaFamily::AVX2 || isa == IsaFamily::Generic) ? 16 : 32;
    const int V = p.vector_width;
    const bool nchw = spec.layout == Layout::NCHW;
    const int group_out = spec.out_channels_per_group();
    const bool grouped_conv = spec.kind == LayerKind::Conv && spec.g > 1;

    // Scores one way of tiling: `vec_extent` is the vectorised dimension, `row_extent` the one
    // whose elements share each vector load; the operand reused across the unrolled tile is held
    // in registers (tr broadcasts when rows hold them, else tv weight vectors). With `y_extent`
    // (NCHW along x) the tile may also hold ty output rows: each broadcast weight then feeds
    // tv*ty input vectors, which are the operands held (see accumulate_along_x).
    auto best_tile = [&](int vec_extent, int row_extent, bool rows_hold_registers, bool rows_within_group, int y_extent,
                         int min_rows = 1) {
        Choice best;
        for (int ty = 1; ty <= std::max(1, std::min(4, y_extent)); ++ty) {
            for (int tv = 1; tv <= std::max(1, std::min(8, ceil_div(vec_extent, V))); ++tv) {
                for (int tr = 1; tr <= 8; ++tr) {
                    const int held = ty > 1 ? tv * ty : (rows_hold_registers ? tr : tv);
                    if (tv * ty * tr + held + 1 > registers) break;
                    if (tr > row_extent) break;
                    if (tr < min_rows) continue;
                    // Grouped convs: a row tile inside one group shares its input loads.
                    if (rows_within_group && group_out % tr != 0) continue;
                    if (vec_extent >= V && tv > vec_extent / V) continue;
                    // Grouped convs along channels: the channel tile divides the group's vectors.
                    if (!rows_hold_registers && grouped_conv && group_out % V == 0 && (group_out / V) % tv != 0) continue;
                    const double useful = wanted_lane_fraction(vec_extent, V, tv) * row_extent * y_extent /
                                          (double(computed_extent(row_extent, tr)) * computed_extent(y_extent, ty));
                    // FMAs per reduction step against the loads and broadcasts that feed them (2 per cycle each).
                    const double fmas = double(tv) * ty * tr;
                    const double cycles = std::max(fmas, double(tv * ty + tr)) / 2.0 + 0.5;
                    const double score = useful * fmas / cycles;
                    if (score > best.score + 1e-9) best = {score, tv, tr, ty};
                }
            }
        }
        return best;
    };
    if (nchw) {
        const Choice along_x = best_tile(spec.out_w(), spec.c2, true, grouped_conv, spec.out_h());
        Choice along_c;
        // Channel vectors reuse each weight vector across the tile's pixels only: conv tiles of 1-3
        // pixels stream the weights from L2 once per pixel or two (256 channels of 14x14 3x3: 8
        // vectors x 2 pixels 0.87x against rows along x, 2 vectors x 7 pixels 1.14x at 1 thread).
        const int min_pixels = spec.kind == LayerKind::Conv ? std::min(4, spec.out_w()) : 1;
        const int channel_extent = grouped_conv ? group_out : spec.c2;  // what channel vectors tile
        if (channel_vectorization_supported(spec, p.vector_width))
            along_c = best_tile(channel_extent, spec.out_w(), false, false, 1, min_pixels);
        // Channel mode stores NCHW output with scalar scatters and measured slower than the model
        // says on mbv1_b8/b13-like pointwise layers: ask for a clear win. Strided convs along x
        // pay what the model does not count either (two loads and a shuffle per input vector, the
        // padded rows' copy): there an even score takes channels. Against the 1.5 margin,
        // interleaved, 1 / 2 threads, Zen 4: dense 3x3 stride-2 convs of 56, 28 and 112 pixels
        // 1.31x / 1.28x, 0.97x / 1.13x, 1.15x / 1.12x; grouped ones (g=4 of 80x80, g=2 of 60x60)
        // 0.99x / 1.20x and 1.21x / 1.49x.
        // So do convs with k > 1 whose rows are under three vectors (14, 27, 28, 35, 40 wide at 16
        // lanes) and whose channels are whole vectors, which the tuner's records take along
        // channels too. Interleaved against the 1.5 margin, 1 / 2 threads, Zen 4: 512 channels of
        // 14x14 in 8 groups 1.15x / 1.29x, alexnet_g2's shape 1.11x / 1.22x, 256 of 14x14 1.14x /
        // 1.28x, 128 of 28x28 1.12x / 1.16x (batch 4 of 64: 1.10x / 1.13x), 128 of 40x40 in 4
        // groups 1.14x / 1.15x, 96 of 35x35 in 2 groups 1.11x / 1.07x; AVX2 code on the same host
        // (rows under 24), 1 thread: 1.03x, 1.10x, 128 of 20x20 1.21x, alexnet_g2's shape 1.02x.
        // Not 56-wide rows (0.97x: 8-lane rows along x waste nothing there), 1x1 convs
        // (0.84-0.91x), nor 24 channels of 7x7 (0.71x: a vector and a half of channels).
        const bool short_rows = spec.kind == LayerKind::Conv && spec.k > 1 && spec.out_w() < 3 * V && channel_extent % V == 0;
        const double channel_margin = spec.kind == LayerKind::Conv && (spec.s > 1 || short_rows) ? 1.0 : 1.5;
        bool channels = along_c.score > channel_margin * along_x.score;
        if (family != TemplateFamily::Heuristic) channels = family == TemplateFamily::AlongChannels && along_c.score > 0;
        p.vectorize_channels = channels ? 1 : 0;
        p.tile_vectors = channels ? along_c.tv : along_x.tv;
        p.tile_rows = channels ? along_c.tr : along_x.tr;
        p.tile_y = channels ? 1 : along_x.ty;
        // flat_rows only where rows along x waste lanes and hold over two vectors: measured at 1
        // thread on AVX2 (interleaved A/B against along x), rows of 28 gained 1.09-1.28x (mbv1_b4,
        // mbv1_b6, mbv1_batch8), while rows of 7 and 14 and rows of whole vectors (40, 112) lost
        // 0.64-0.89x even where the model scored flat higher.
        // Not for grouped convs: flat shufflenet_g3 (240 channels in 3 groups, 28x28; 4-row runs of
        // 7 vectors x 8 channels) gained 1.06x at 1 thread but lost 0.91x at 2 on a Zen 4 against
        // the heuristic's rows along x (interleaved, 5 rounds); read in place, one vector x 10
        // channels: 1.10x and 0.95x (5 and 7 rounds: 7 tasks of 4 rows on 2 threads). The tuner
        // measures it instead.
        const bool rows_waste_lanes = spec.out_w() % V != 0 && spec.out_w() > 2 * V;
        const bool flat_family = family == TemplateFamily::FlatRows && flat_rows_supported(spec);
        const Choice flat = (flat_rows_supported(spec) && rows_waste_lanes && !grouped_conv) || flat_family
                                ? best_flat_tile(spec, V, registers)
                                : Choice{};
        const bool flat_wins = family == TemplateFamily::Heuristic ? flat.score > along_x.score + 1e-9 : flat_family;
        if (!channels && flat_wins && flat.score > 0) {
            p.flat_rows = 1;
            p.tile_vectors = flat.tv;
            p.tile_rows = flat.tr;
            p.tile_y = flat.ty;
        }
        // Grouped convs whose group input (zero-padded) fits comfortably in L2: one task per
        // channel tile over the whole image, staging just that group (measured 1.3-2x faster on
        // depthwise and 4-channel groups; slower once the staged group spills out of L2).
        // Not where a task would be a few thousand MACs: a depthwise 7x7 or 14x14 image per task
        // (441 or 1764 MACs) is mostly the pool's and the staging's per-task cost, and at 2
        // threads the tasks contend (960 channels of 7x7: 0.034 ms at 1 thread, 0.069 at 2),
        // where tasks of rows over all channels measured 0.037 / 0.034 (384 of 14x14: 0.039 /
        // 0.053 against 0.041 / 0.026; 28x28, 7056 MACs a task, still gains from channel tasks:
        // 0.056 / 0.042 against 0.075 / 0.060; Zen 4, 8 lanes, median of 500). Interleaved
        // against channel tasks, 1 / 2 threads: 672 channels of 7x7 (5x5 kernel) 1.04x / 1.59x,
        // 576 of 14x14 at stride 2 0.82x / 1.97x, 960 of 7x7 0.87x / 1.05x.
        const double group_bytes = 4.0 * (spec.c1 / spec.g) * (spec.h + 2.0 * spec.p) * (spec.w + 2.0 * spec.p);
        const double task_macs = double(spec.out_h()) * spec.out_w() * output_channel_tile(spec, p) * (spec.c1 / spec.g) * spec.k * spec.k;
        if (!channels && grouped_conv && group_bytes <= 56 * 1024 && task_macs >= 4096) p.parallel_channels = 1;
    } else {
        const Choice along_c = best_tile(spec.c2, spec.out_w(), false, false, 1);
        p.tile_vectors = along_c.tv;
        p.tile_rows = along_c.tr;
    }
    // Parallel tasks: enough rows per task to amortise staging the padded input, while leaving
    // at least 8 tasks per core on 2-16 cores where the layer is big enough.
    const int tasks_wanted = 16;
    p.parallel_rows = std::max(1, std::min(8, spec.out_h() * spec.n / tasks_wanted));
    if (grouped_conv && along_channels(spec, p) && channel_vectorization_supported(spec, V)) {
        // Grouped along channels: each task is one group's channel tiles over its rows (the tile
        // divides the group), so it stages that group's input alone and reuses the group's
        // weights across more rows; the groups also balance tasks that rows alone do not (27
        // rows in 2 tasks). The tuned records of alexnet_g2, yolo_g4_s2 and g8_leaky all use one
        // block per group or more (1.01-1.34x over row tasks in interleaved A/Bs at 1 and 2
        // threads); the rows per task here aim at 16 tasks and were not tuned.
        p.channel_blocks = spec.g;
        p.parallel_rows = std::max(1, std::min(spec.out_h(), spec.out_h() * spec.n * spec.g / tasks_wanted));
    }
    // A task holds whole register tiles of rows (a task's rows bound the tile, see tile_y_for).
    if (p.tile_y > 1 && !p.parallel_channels) p.parallel_rows = std::min(spec.out_h(), ceil_div(p.parallel_rows, p.tile_y) * p.tile_y);
    // With row tiles (tile_y > 1) the image's last task is guarded (GuardWithIf, see task_tail)
    // when its rows do not divide the image; its register tiles are then dynamically sized
    // accumulators in memory (see make_row_tasks, which keeps a batch's other tasks unguarded).
    // mbv1_batch8's shape measured 26 ms with 8 rows per task against 5.3 ms with 4 when every
    // task of the batch ran guarded (1 thread, 28 rows; 0.74 vs 0.64 ms at batch 1). Prefer tasks
    // that divide the image: the most rows up to the heuristic's count that are whole row tiles,
    // else (batch > 1) one image per task.
    if (p.tile_y > 1 && !p.parallel_channels && spec.out_h() % p.parallel_rows != 0) {
        int rows = 0;
        for (int d = p.parallel_rows; d >= p.tile_y && rows == 0; --d) {
            if (spec.out_h() % d == 0 && d % p.tile_y == 0) rows = d;
        }
        if (rows == 0 && spec.n > 1) rows = spec.out_h();
        if (rows > 0) p.parallel_rows = rows;
    }
    // Where a 512-bit FMA issues as two 256-bit halves (AMD Zen 4), 8-lane vectors reach the same
    // FLOP rate, so the same register tile in 8-lane vectors wins where it wastes fewer lanes of
    // the vectorised extent: an NCHW row along x (e.g. 7, 24, 40 or 56 pixels) or an NHWC layer's
    // output channels (24, 40, 72). Only the width changes: with the tile re-chosen for 8 lanes,
    // interleaved A/Bs on a Zen 4 were mixed (0.69-1.26x at 1 thread); with the same tile they
    // gained 1.02-1.22x on 14 of 15 shapes at 1 thread (README, Autotuning). Not for flat runs,
    // NCHW channel vectors or grouped NHWC convs (whose tiles must divide a group): not measured.
    const std::vector<int> widths = vector_widths(isa);
    const bool along_row = nchw && !p.vectorize_channels && !p.flat_rows;
    const bool along_output_channels = !nchw && (spec.g == 1 || spec.is_depthwise_conv());
    if (split_wide_fma && widths.size() > 1 && (along_row || along_output_channels)) {
        const int extent = along_row ? spec.out_w() : spec.c2;
        // A 3x3 depthwise conv's rows a little shorter than the wide vector (round_up_short_rows)
        // also take 8 lanes where they waste no more: two ShiftInwards vectors of 8 instead of
        // one rounded-up 16 over rows staged vector-wide. With the task rule above, against the
        // previous heuristic (interleaved, 5 rounds, 1 / 2 threads): 384 channels of 14x14
        // 1.33x / 1.77x, 160 of 12x12 1.40x / 1.47x, 256 of 10x10 1.38x / 1.83x. Not for 5x5
        // kernels (480 channels of 14x14: 0.94x / 0.76x with 8 lanes) nor dense and grouped
        // convs (14x14 at 1 thread: 0.87x and 0.90x).
        const bool short_depthwise_rows = spec.is_depthwise_conv() && spec.k <= 3 && along_row && round_up_short_rows(spec, p);
        const double narrow = wanted_lane_fraction(extent, widths[1], p.tile_vectors);
        const double wide = wanted_lane_fraction(extent, widths.front(), p.tile_vectors);
        if (narrow > 1.02 * wide || (short_depthwise_rows && narrow >= wide)) p.vector_width = widths[1];
    }
    // A dwconv whose depthwise is a tenth of its MACs or more (k*k against c2 per pixel) tiles the
    // depthwise over up to 4 rows. Interleaved against one row, 1 thread, Zen 4 (the heuristic's
    // row tiles along x): 5x5 over 240 -> 80 channels of 28x28 1.25x, 5x5 stride 2 (144 -> 40)
    // 1.18x, 3x3 with 16, 24 and 40 output channels 1.10x, 1.08x, 1.08x, mbv1_b1's shape 1.01x
    // (2 threads: 1.23x, 1.72x, 1.00x, 1.17x, 1.04x, 1.06x); 3x3 ones with 128-512 output
    // channels, where the depthwise is 2-7% of the MACs, 0.98-1.03x at 1 thread. Down to a 30th of
    // the MACs, 2 rows (against 1, heuristic tiles, 1 / 2 threads): 3x3 stride 2 into 128 channels
    // (mbv1_b2's shape) 1.07x / 1.02x, into 192 of 40x40 1.03x / 1.03x, 256 of 56x56 stride 2 1.02x /
    // 1.01x, 256 of 28x28 (also at batch 8) 1.00x; 512 of 14x14 0.996x, not taken.
    if (depthwise_rows_apply(spec, p) && 30 * spec.k * spec.k >= spec.c2) {
        p.depthwise_rows = std::min(10 * spec.k * spec.k >= spec.c2 ? 4 : 2, depthwise_rows_at_once(spec, p));
    }
    // Channel-vector tiles of 4, 8 or 16 pixels store through the in-register transpose. Against
    // scalar stores, same tiles, 1 thread, Zen 4: yolo_g4_s2's shape (144 MACs an output, silu)
    // 1.09x with 8 pixels and 1.08x with 4, resnet_3x3's 1.01x with 8. 14 pixels gained 1.01-1.06x
    // (g8_leaky's, mbv1_b8's, effnet_k5's and shufflenet_g3's shapes) but yolo_g4_s2's with 10
    // lost (0.88x): tiles whose rows are not power-of-two blocks of the transposed tile are left
    // to the tuner.
    const int tile_pixels = channel_tile_pixels(p, spec);
    if (transpose_store_applies(spec, p) && (tile_pixels & (tile_pixels - 1)) == 0) p.transpose_store = 1;
    // Grouped strided convs along x whose task's zero-padded rows outgrow L1 compute them per
    // channel tile and row tile (stream_input): only the tile's groups, a few rows at a time, their
    // loads overlapping the FMAs. Interleaved against per task, 1 / 2 threads, Zen 4:
    // resnext_g32_s2 (channel tasks, 107 KB each) 1.06x at 1 thread, 96 depthwise channels of
    // 112x112 at stride 2 (52 KB) 1.19x / 1.10x, 240 of 28x28 in row tasks (259 KB) 1.13x / 1.07x,
    // 512 channels of 28x28 in 32 groups (row tasks) 1.06x / 0.99x; 120 depthwise channels of
    // 45x47 (9 KB a task) lost 0.75x at 1 thread. Not dense convs: every channel tile would
    // compute all the rows again.
    if (nchw && grouped_conv && reads_padded_rows_strided(spec, p) && stream_applies(spec, p)) {
        const int padded_w = spec.w + 2 * spec.p, padded_h = spec.h + 2 * spec.p;
        const int rows = task_rows(p, spec);
        const double bytes = p.parallel_channels ? 4.0 * (spec.c1 / spec.g) * padded_h * padded_w
                                                 : 4.0 * spec.c1 * std::min(padded_h, (rows - 1) * spec.s + spec.k) * padded_w;
        if (bytes > 32 * 1024) p.stream_input = 1;
    }
    return p;
}

ScheduleParams with_vector_width(ScheduleParams p, int width, const LayerSpec &spec) {
    p.tile_vectors = std::max(1, p.tile_vectors * std::max(1, p.vector_width) / std::max(1, width));
    p.vector_width = width;
    return adapt_to_spec(p, spec);
}

ScheduleParams adapt_to_spec(ScheduleParams p, const LayerSpec &spec) {
    if (!p.autoscheduler.empty()) return p;
    if (p.vectorize_channels && !channel_vectorization_supported(spec, p.vector_width)) {
        // Along x, tile_rows counts output channels instead of a row's pixels.
        p.vectorize_channels = 0;
        p.tile_rows = std::min(p.tile_rows, max_tile_rows(spec, p));
    }
    const bool grouped_nchw = spec.kind == LayerKind::Conv && spec.g > 1 && spec.layout == Layout::NCHW;
    if (!grouped_nchw || along_channels(spec, p)) p.parallel_channels = 0;
    if (spec.kind == LayerKind::Conv) p.depthwise_per_task = 0;
    if (!channel_blocks_apply(spec, p)) p.channel_blocks = 1;
    if (!stream_applies(spec, p)) p.stream_input = 0;
    const int group_out = spec.out_channels_per_group();
    while (p.tile_rows > 1 && grouped_nchw && !p.vectorize_channels && group_out % p.tile_rows != 0) --p.tile_rows;
    p.parallel_rows = std::max(1, std::min(p.parallel_rows, spec.out_h() * spec.n));
    // A register tile of more rows than one depthwise computation holds would compute rows past
    // them (1 where the knob does not apply).
    p.depthwise_rows = std::max(1, std::min(p.depthwise_rows, depthwise_rows_at_once(spec, p)));
    if (!transpose_store_applies(spec, p)) p.transpose_store = 0;
    return p;
}

}  // namespace convgen
