#include "schedules/default_schedules.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "runtime/errors.h"
#include "schedules/schedule_db.h"

namespace convgen {

using namespace Halide;

// One reading of targets for the JIT, the AOT generator and the schedule database's lookup.
IsaFamily isa_family_of(const Target &target) { return isa_family_of_target_string(target.to_string()); }

namespace {

// A tile along a vectorised dimension: whole vectors (at most `max_vectors`, never more than
// the extent holds), or the whole extent when it is shorter than one vector.
struct VectorTile {
    int size;   // elements in the tile
    int lanes;  // vector width used inside it
};

VectorTile vector_tile(int extent, int vector_width, int max_vectors) {
    if (extent < vector_width) return {extent, extent};
    return {vector_width * std::max(1, std::min(max_vectors, extent / vector_width)), vector_width};
}

// The depthwise stage's tile along an NCHW row: up to 4 vectors, chosen to cover the row with the
// fewest vectors computed, counting half a vector per tile for reloading the tile's k*k weights.
// Tiles are ShiftInwards (the depthwise buffer's rows stay exactly out_w wide, which flat_rows
// needs), so a tile wider than the row's remainder recomputes pixels: four-vector tiles over a
// 28-wide row compute 48 pixels, two-vector tiles 32.
VectorTile depthwise_row_tile(int out_w, int vector_width) {
    if (out_w < vector_width) return {out_w, out_w};
    int best = 1;
    double best_cost = 0;
    for (int t = 1; t <= 4 && t * vector_width <= out_w; ++t) {
        const double cost = ceil_div(out_w, t * vector_width) * (t + 0.5);
        if (t == 1 || cost <= best_cost) best = t, best_cost = cost;
    }
    return {best * vector_width, vector_width};
}

// channel_blocks: the channel tile loop `co` (of `tiles` tiles) is split into blocks, and each
// parallel task `t` is one block of one row block `yo` of one image. `inner` are the output's
// loops inside `co`, innermost first; `between` those between `co` and `yo` (a conv's rows of
// the task, when its channel tiles stay inside the rows).
void split_channel_tiles_into_tasks(LayerAlgorithm &a, const ScheduleParams &p, const Var &co, int tiles,
                                    std::vector<VarOrRVar> inner, const std::vector<VarOrRVar> &between, const Var &yo,
                                    const Var &t) {
    Var cb("cb"), yb("yb");
    a.output.split(co, cb, co, ceil_div(tiles, channel_blocks_of(a.spec, p)), TailStrategy::GuardWithIf);
    inner.push_back(co);
    inner.insert(inner.end(), between.begin(), between.end());
    inner.insert(inner.end(), {yo, cb, a.n});
    a.output.reorder(inner).fuse(yo, cb, yb).fuse(yb, a.n, t);
}

// With round_up_short_rows: the staged input covers every column a vector-wide accumulator row
// reads (the columns past the image are the zero padding).
void bound_staged_to_vector_rows(LayerAlgorithm &a, const ScheduleParams &p) {
    const LayerSpec &s = a.spec;
    auto floor_div = [](int num, int den) { return num >= 0 ? num / den : -((-num + den - 1) / den); };
    const int lo = floor_div(-s.p, s.s), hi = p.vector_width - 1 + floor_div(s.k - 1 - s.p, s.s);
    a.staged.bound(a.xq, lo, hi - lo + 1);
}

// Vectorises the innermost `lanes` of `v` and unrolls the rest of the tile, so that each
// accumulator of the register tile is its own vector register.
template <typename StageOrFunc>
void vectorize_tile(StageOrFunc &s, const VarOrRVar &v, int lanes, TailStrategy tail) {
    if (lanes <= 1) return;
    Var vo(v.name() + "_vo"), vi(v.name() + "_vi");
    s.split(v, vo, vi, lanes, tail).vectorize(vi).unroll(vo);
}

// Vector lanes for a row of `row` floats copied from the input through the zero padding: at
// least three vectors where the width allows. The first and last straddle the padding, the ones
// between are plain loads once the row loop is partitioned (see the algorithm's padding); with
// fewer, every vector is a gather: measured 1.1x on the public suite at 1 thread, 2x on a batch-8
// grouped conv (staged rows), and 40% of a stride-2 grouped conv's time in 30-float padded rows
// copied as two 16-lane vectors (512 channels of 28x28, 1 thread, Zen 4).
int boundary_row_lanes(int row, int vector_width) {
    int lanes = vector_width;
    while (lanes > 4 && row < 3 * lanes) lanes /= 2;
    return lanes;
}

// The lanes of a zero-padded row copy (vectorize_padded_rows): boundary_row_lanes, or half of 16
// where that divides the image's width and 16 does not.
int padded_row_lanes(const LayerSpec &s, const ScheduleParams &p) {
    int lanes = boundary_row_lanes(s.w + 2 * s.p, p.vector_width);
    if (s.w % lanes != 0 && lanes >= 16 && s.w % (lanes / 2) == 0) lanes /= 2;
    return lanes;
}

// Vectorises a copy of the zero-padded rows (`padded`, or `staged` at stride 1) along its x, in
// boundary_row_lanes vectors that start at multiples of the lanes from column 0 (align_bounds)
// where the lanes, or half of 16, divide the image's width: each vector is then inside the image
// or wholly padding, and none is a gather. 56 columns at vec=16 take 8 lanes for that (3.5
// vectors of 16 would straddle the end).
void vectorize_padded_rows(const LayerSpec &s, Func rows, const Var &x, const ScheduleParams &p) {
    const int lanes = padded_row_lanes(s, p);
    if (s.w % lanes == 0) rows.align_bounds(x, lanes);
    rows.vectorize(x, lanes, TailStrategy::RoundUp);
}

// Stages the task's zero-padded input (`staged`) once per parallel task, vectorised along its
// innermost dimension, so the reduction loops do plain loads with no boundary select.
void stage_input(LayerAlgorithm &a, const ScheduleParams &p, const Var &task) {
    const LayerSpec &s = a.spec;
    if (reads_padded_rows_strided(s, p)) {
        a.padded.compute_at(a.output, task);
        vectorize_padded_rows(s, a.padded, a.x, p);
        return;
    }
    a.staged.compute_at(a.output, task);
    if (s.layout == Layout::NCHW) {
        const int row = (s.w + 2 * s.p) / s.s;
        const int lanes = boundary_row_lanes(row, p.vector_width);
        const bool aligned = s.w % padded_row_lanes(s, p) == 0;
        if (row >= lanes && s.kind == LayerKind::Conv && s.s == 1 && aligned && !round_up_short_rows(s, p)) {
            // At stride 1 the staged rows are the padded rows: copied in aligned vectors where the
            // lanes divide the width, none a gather. Interleaved against unaligned, Zen 4, 1 / 2 threads: depthwise_only's shape
            // 1.05x / 1.04x (its record; the unaligned copy's vectors were inserted element by
            // element), resnext_g32's 1.007x / 1.006x. Not a dwconv's depthwise stage, whose
            // aligned rows (144 floats for 112 pixels) measured 0.89x on mbv1_b1's shape, nor rows
            // rounded up to a vector (bound_staged_to_vector_rows bounds them). Flat rows (1x1,
            // unpadded) read the staged rows at x + y * w, so those must stay w wide, which they do
            // where the lanes divide w; rounded up to whole vectors otherwise, the read became a
            // gather (shufflenet_g3's 28-wide record ran 6x slower).
            vectorize_padded_rows(s, a.staged, a.xq, p);
        } else if (row >= lanes) {
            a.staged.vectorize(a.xq, lanes);
        }
    } else {
        // A task that is one block of a grouped conv's channel tiles stages only its groups'
        // input channels, as few as c1/g: a vector wider than that would read past the last
        // group's channels (ShiftInwards needs the extent to hold one vector).
        if (channel_blocks_of(s, p) > 1) {
            int lanes = p.vector_width;
            while (lanes > 4 && lanes > s.c1 / s.g) lanes /= 2;
            if (lanes <= s.c1 / s.g) a.staged.vectorize(a.c, lanes);
        } else if (s.c1 >= p.vector_width) {
            a.staged.vectorize(a.c, p.vector_width);
        }
    }
}

// Output tiles of `tile_vectors` channel vectors x `tile_rows` pixels along x, channel vectors
// innermost, for NHWC and for NCHW layers whose rows are too short for x vectors (the NCHW store is
// then a scatter, once per output after the whole reduction). `acc` (a pure definition plus one
// update over `reduction`) is accumulated per tile in registers, stored channel-innermost.
// Loops, outermost first: the parallel task `t` (blocks of rows x batch), rows `yi`, channel
// tiles, x tiles: a channel tile's weights are reused across the x tiles of a row. With
// `channel_tiles_outer` the channel tiles go outside the task's rows instead, so that a tile's
// weights are reused across all the task's pixels (the producer of the reduced operand must then
// be computed per task, not per row).
void tile_along_channels(LayerAlgorithm &a, const ScheduleParams &p, Func acc, const std::vector<VarOrRVar> &reduction,
                         const Var &yi, const Var &t, bool channel_tiles_outer = false) {
    const LayerSpec &s = a.spec;
    Var xo("xo"), xi("xi"), co("co"), ci("ci"), yo("yo");
    const int tc_size = output_channel_tile(s, p);
    const VectorTile tc{tc_size, std::min(p.vector_width, tc_size)};
    const int tx = channel_tile_pixels(p, s);
    const int rows = task_rows(p, s);
    a.output.split(a.c, co, ci, tc.size, TailStrategy::ShiftInwards)
        .split(a.x, xo, xi, tx, TailStrategy::ShiftInwards)
        .split(a.y, yo, yi, rows, TailStrategy::ShiftInwards)
        .reorder(ci, xi, xo, co, yi, yo, a.n);
    if (channel_tiles_outer) a.output.reorder(ci, xi, xo, yi, co, yo, a.n);
    if (channel_blocks_of(s, p) > 1) {
        // Without channel_tiles_outer (convs) the channel tiles stay inside the task's rows: a
        // task is one block of tiles over its rows, which balances tasks where rows alone do not
        // (27 rows in 2 tasks is 14 + 13), and a block within one group stages only its input.
        const int tiles = ceil_div(s.c2, tc.size);
        if (channel_tiles_outer) {
            split_channel_tiles_into_tasks(a, p, co, tiles, {ci, xi, xo, yi}, {}, yo, t);
        } else {
            split_channel_tiles_into_tasks(a, p, co, tiles, {ci, xi, xo}, {yi}, yo, t);
        }
    } else {
        a.output.fuse(yo, a.n, t);
    }
    if (a.output_transpose.on()) {
        // The tile is activated as channel vectors, transposed in registers, and stored as rows
        // of the tile's pixels (see OutputTranspose).
        const OutputTranspose &ot = a.output_transpose;
        a.output.reorder(xi, ci).parallel(t).unroll(ci);
        vectorize_tile(a.output, xi, ot.pixels, TailStrategy::ShiftInwards);
        for (Func f : a.output_tiles) {
            Var io("io"), ii("ii");
            f.compute_at(a.output, xo).split(a.ti, io, ii, ot.lanes).vectorize(ii).unroll(io).unroll(a.ct);
        }
    } else {
        a.output.parallel(t).unroll(xi);
        vectorize_tile(a.output, ci, tc.lanes, TailStrategy::ShiftInwards);
    }
    acc.compute_at(a.output, xo).reorder_storage(a.c, a.x, a.y, a.n).unroll(a.x);
    vectorize_tile(acc, a.c, tc.lanes, TailStrategy::GuardWithIf);
    // Weight vectors of the tile are loaded once per reduction step and reused across its pixels.
    std::vector<VarOrRVar> order = {a.c, a.x};
    order.insert(order.end(), reduction.begin(), reduction.end());
    order.push_back(a.y);
    order.push_back(a.n);
    Stage upd = acc.update();
    upd.reorder(order).unroll(a.x);
    vectorize_tile(upd, a.c, tc.lanes, TailStrategy::GuardWithIf);
}

// The accumulator of an NCHW output tile vectorised along x (`lanes` wide, rows of channels
// unrolled, and `tile_y` output rows when above 1), computed per x tile in registers.
Stage accumulate_along_x(LayerAlgorithm &a, const ScheduleParams &p, Func acc, const std::vector<VarOrRVar> &reduction,
                         const Var &xo, int lanes, int tile_y) {
    acc.compute_at(a.output, xo).unroll(a.c);
    if (tile_y > 1) acc.unroll(a.y);
    TailStrategy tail = TailStrategy::GuardWithIf;
    if (round_up_short_rows(a.spec, p)) {
        lanes = p.vector_width;
        tail = TailStrategy::RoundUp;
    }
    vectorize_tile(acc, a.x, lanes, tail);
    // One row: the tile's input vectors stream past the channels' broadcast weights (tr broadcasts
    // held). Several rows: channels outermost, each broadcast weight feeds all the tile's input
    // vectors (tile_vectors * tile_y held) and is then dead, so tiles of 12 fit 16 registers.
    std::vector<VarOrRVar> order = {a.c, a.x};
    if (tile_y > 1) order = {a.x, a.y, a.c};
    order.insert(order.end(), reduction.begin(), reduction.end());
    if (tile_y == 1) order.push_back(a.y);
    order.push_back(a.n);
    Stage upd = acc.update();
    upd.reorder(order).unroll(a.c);
    if (tile_y > 1) upd.unroll(a.y);
    vectorize_tile(upd, a.x, lanes, tail);
    return upd;
}

// How the parallel tasks split the rows. ShiftInwards makes the last task overlap its neighbour,
// which is harmless when every row is computed by the same code. With several rows unrolled in
// the register tile (tile_y > 1) an overlapping row is computed at another position of the tile,
// where LLVM may contract a multiply-add differently (1 ulp), and the two tasks race to store it:
// the output would differ from run to run. GuardWithIf gives every row to exactly one task.
TailStrategy task_tail(int tile_y) { return tile_y > 1 ? TailStrategy::GuardWithIf : TailStrategy::ShiftInwards; }

// The parallel tasks `t` over the row blocks `yo` (of `rows` rows, split with task_tail(ty)) of
// every image: one loop, the row blocks fused with the batch. Where the image's last row block is
// guarded and there is a batch, the fused loop's row block is t % blocks, and Halide 14 does not
// partition the task loop around that guard: every task then ran the guarded loops, whose register
// tile is a dynamically sized accumulator in memory. There the images are a parallel loop of their
// own around the row blocks' (nested parallel loops), and the row block loop is partitioned into
// unguarded tasks and the last one (as at batch 1). mbv1_batch8's shape with 8 rows a task and
// row tiles of 4, 1 thread, same host: 31 ms fused, 12-13 ms nested (8-11 ms with 4 rows a task,
// which divide the image; the heuristic prefers those, see heuristic_schedule).
void make_row_tasks(LayerAlgorithm &a, const Var &yo, const Var &t, int rows, int ty) {
    const bool guarded = ty > 1 && a.spec.out_h() % rows != 0;
    if (guarded && a.spec.n > 1) {
        a.output.rename(yo, t).parallel(a.n);
    } else {
        a.output.fuse(yo, a.n, t);
    }
}

// NCHW with flat_rows (see ScheduleParams): tasks of `parallel_rows` rows, row tiles of tile_y
// rows (`yt`). Per row tile, `acc` covers all output channels: its tile_y rows are fused into one
// run of pixels, cut into register tiles of tile_vectors vectors x tile_rows channels; the pixel
// tiles are the outer loop so that one tile's input panel is reused from L1 by every channel
// tile. The output then activates the row tile, vectorised along x.
void tile_flat_rows(LayerAlgorithm &a, const ScheduleParams &p, Func acc, const std::vector<VarOrRVar> &reduction,
                    const Var &t, const Var &yt) {
    const LayerSpec &s = a.spec;
    const int V = p.vector_width;
    const int rows = task_rows(p, s);
    const int ty = tile_y_for(p, rows);
    const int tc = output_channel_tile(s, p);
    Var yo("yo"), yi("yi"), yr("yr");
    a.output.split(a.y, yo, yi, rows, task_tail(ty))
        .split(yi, yt, yr, ty, TailStrategy::ShiftInwards)
        .reorder(a.x, yr, a.c, yt, yo, a.n);
    make_row_tasks(a, yo, t, rows, ty);
    a.output.parallel(t);
    if (s.out_w() >= V) a.output.vectorize(a.x, V, TailStrategy::ShiftInwards);

    // The pixel run is rounded up to whole register tiles (RoundUp, here and in the pure
    // definition so that every accumulator read is initialised): a guarded partial tile is
    // scalarised by Halide 14, ten times slower than computing a few pixels of the next row.
    acc.compute_at(a.output, yt);
    const int tile = V * std::max(1, p.tile_vectors);
    Var f("f"), fo("fo"), fi("fi"), co("co"), ci("ci");
    acc.fuse(a.x, a.y, f).split(f, fo, fi, tile, TailStrategy::RoundUp).vectorize(fi);
    Stage upd = acc.update();
    upd.fuse(a.x, a.y, f)
        .split(f, fo, fi, tile, TailStrategy::RoundUp)
        .split(a.c, co, ci, tc, TailStrategy::GuardWithIf);
    std::vector<VarOrRVar> order = {fi, ci};
    order.insert(order.end(), reduction.begin(), reduction.end());
    order.insert(order.end(), {co, fo, a.n});
    // One vector of tile_vectors * V lanes (LLVM splits it into registers): with the tile's
    // vectors unrolled instead, Halide's simplifier canonicalises each one's offset modulo the
    // row width and no longer sees that x + y * width is the fused index (a gather).
    upd.reorder(order).unroll(ci).vectorize(fi);
}

// Register-tiled direct convolution. Each output tile (whole vectors along the vectorised dim x
// a few rows of the other dim) is accumulated in registers over the whole reduction, then
// activated and stored. The zero-padded input of one parallel task is staged first, so the
// inner loop does plain loads with no boundary select.
void schedule_conv(LayerAlgorithm &a, const ScheduleParams &p) {
    const LayerSpec &s = a.spec;
    Var xo("xo"), xi("xi"), co("co"), ci("ci"), yo("yo"), yi("yi"), t("t");
    RVar rx = a.r.x, ry = a.r.y, rc = a.r.z;
    const int rows = task_rows(p, s);
    if (along_channels(s, p)) {
        tile_along_channels(a, p, a.conv, {rx, ry, rc}, yi, t);
        stage_input(a, p, t);
    } else if (p.flat_rows && flat_rows_supported(s)) {
        Var yt("yt");
        tile_flat_rows(a, p, a.conv, {rx, ry, rc}, t, yt);
        // In place, `staged` and `padded` are inlined: every run lies inside the image, and the
        // zero-padding select of `padded` folds away (plain vector loads, as from the copy).
        if (!flat_reads_input_in_place(s, p)) stage_input(a, p, t);
    } else {
        // NCHW: vectorise along output x; the tile's output channels share each input vector load.
        const VectorTile tx = vector_tile(s.out_w(), p.vector_width, p.tile_vectors);
        const int tc = output_channel_tile(s, p);
        Var yt("yt"), yr("yr");
        a.output.split(a.x, xo, xi, tx.size, TailStrategy::ShiftInwards)
            .split(a.c, co, ci, tc, TailStrategy::ShiftInwards);
        int ty = 1;
        if (p.parallel_channels && s.g > 1) {
            ty = tile_y_for(p, s.out_h());
            a.output.split(a.y, yt, yr, ty, TailStrategy::ShiftInwards).reorder(xi, ci, yr, xo, yt, co, a.n).fuse(co, a.n, t);
        } else {
            ty = tile_y_for(p, rows);
            a.output.split(a.y, yo, yi, rows, task_tail(ty))
                .split(yi, yt, yr, ty, TailStrategy::ShiftInwards)
                .reorder(xi, ci, yr, xo, yt, co, yo, a.n);
            make_row_tasks(a, yo, t, rows, ty);
        }
        a.output.parallel(t).unroll(ci).unroll(yr);
        vectorize_tile(a.output, xi, tx.lanes, TailStrategy::ShiftInwards);
        stage_input(a, p, t);
        if (stream_applies(s, p) && p.stream_input) {
            // Sliding window over the task's rows: each row tile computes only the rows it adds,
            // so their loads overlap the tile's FMAs instead of streaming the whole task's input
            // through L2 first.
            Func rows = reads_padded_rows_strided(s, p) ? a.padded : a.staged;
            rows.store_at(a.output, t).compute_at(a.output, yt);
        }
        if (round_up_short_rows(s, p) && !reads_padded_rows_strided(s, p)) bound_staged_to_vector_rows(a, p);
        Stage upd = accumulate_along_x(a, p, a.conv, {rx, ry, rc}, xo, tx.lanes, ty);
        if (s.k <= 7) upd.unroll(rx);
    }
}

// Fused depthwise -> pointwise: the depthwise result of one task's output rows (all c1 channels)
// is computed inside the parallel row loop and consumed there by the pointwise register tiles,
// so it stays in cache and is never written out whole.
void schedule_dwconv(LayerAlgorithm &a, const ScheduleParams &p) {
    const LayerSpec &s = a.spec;
    Var xo("xo"), xi("xi"), co("co"), ci("ci"), yo("yo"), yi("yi"), t("t"), dxo("dxo"), dxi("dxi");
    RVar rx = a.r.x, ry = a.r.y, rp = a.r_pw.x;
    const int rows = task_rows(p, s);
    const bool channels = along_channels(s, p);
    Var row_tile = yi;
    if (channels) {
        // Each depthwise value is broadcast to a few output channel vectors. Per task, channel
        // tiles outermost: a big pointwise weight matrix is then read once per task, not per row.
        tile_along_channels(a, p, a.pointwise, {rp}, yi, t, p.depthwise_per_task);
        if (p.depthwise_per_task && a.weight_layout == WeightLayout::ChannelsInnermost) {
            // The tile's weights, packed contiguously once per channel tile: read in a row of
            // c2 floats they are a few vectors every c2*4 bytes, which the prefetchers serve badly.
            Var co("co");
            Func packed = a.pw_weight.in(a.pointwise);
            packed.compute_at(a.output, co);
            vectorize_tile(packed, packed.args()[0], std::min(p.vector_width, output_channel_tile(s, p)), TailStrategy::GuardWithIf);
        }
    } else if (p.flat_rows) {
        Var yt("yt");
        tile_flat_rows(a, p, a.pointwise, {rp}, t, yt);
        row_tile = yt;
    } else {
        const VectorTile tx = vector_tile(s.out_w(), p.vector_width, p.tile_vectors);
        const int tc = output_channel_tile(s, p);
        const int ty = tile_y_for(p, rows);
        Var yr("yr");
        a.output.split(a.x, xo, xi, tx.size, TailStrategy::ShiftInwards)
            .split(a.c, co, ci, tc, TailStrategy::ShiftInwards)
            .split(a.y, yo, yi, rows, task_tail(ty))
            .split(yi, yi, yr, ty, TailStrategy::ShiftInwards)
            .reorder(xi, ci, yr, xo, co, yi, yo, a.n);
        // Large pointwise weights: loop channel tiles outside the rows of the task, so each
        // tile's weights are reused across those rows (the task's depthwise rows are then
        // all computed first, see below).
        if (p.depthwise_per_task) a.output.reorder(xi, ci, yr, xo, yi, co, yo, a.n);
        if (channel_blocks_of(s, p) > 1) {
            split_channel_tiles_into_tasks(a, p, co, ceil_div(s.c2, tc), {xi, ci, yr, xo, yi}, {}, yo, t);
        } else {
            make_row_tasks(a, yo, t, rows, ty);
        }
        a.output.parallel(t).unroll(ci).unroll(yr);
        vectorize_tile(a.output, xi, tx.lanes, TailStrategy::ShiftInwards);
        accumulate_along_x(a, p, a.pointwise, {rp}, xo, tx.lanes, ty);
    }
    stage_input(a, p, t);

    const bool reads_padded = reads_padded_rows_strided(s, p);
    Func rows_read = reads_padded ? a.padded : a.staged;
    if (stream_applies(s, p) && p.stream_input) {
        if (p.depthwise_per_task && reads_padded) {
            // Each channel's padded rows stored in a two-channel ring, not a buffer of one
            // channel: Halide 14 miscompiles a stride-2 load from an internal buffer whose index
            // is an exact constant with an odd value (CodeGen_LLVM, Load with stride 2 to 4: the
            // base is moved down to even and its alignment remainder becomes mod_imp(r - 1, 0),
            // which is 0, so the load is emitted aligned). One channel's rows of a one-row task
            // have constant indices, and the kernel faulted on an aligned 256-bit load 6 floats
            // past an aligned row (6 of 837 mbv1_b2 / mbv1_b4 tuning candidates: along channels,
            // channel blocks, one or two rows a task). The ring's channel index keeps every index
            // a variable (0 of 969 candidates faulted), at the cost of one more channel's rows.
            rows_read.store_at(a.output, t).compute_at(a.depthwise, a.c).fold_storage(a.c, 2);
        } else if (p.depthwise_per_task) {
            rows_read.compute_at(a.depthwise, a.c);
        } else {
            rows_read.store_at(a.output, t).compute_at(a.output, row_tile);  // sliding window
        }
    }
    // Per row tile (yi: tile_y rows in NCHW along x, one row otherwise) or per task.
    a.depthwise.compute_at(a.output, p.depthwise_per_task ? t : row_tile);
    const bool round_up_rows = !channels && !p.flat_rows && round_up_short_rows(s, p);
    if (round_up_rows) {
        // The pointwise accumulator reads whole vector rows of the depthwise result.
        a.depthwise.bound(a.x, 0, p.vector_width);
        if (!reads_padded) bound_staged_to_vector_rows(a, p);
    }
    if (s.layout == Layout::NCHW) {
        // Depthwise tile: up to 4 vectors of one row (of depthwise_rows rows), all k*k taps
        // unrolled, in registers. The rows are unrolled inside each tap, so LLVM loads a vector
        // of an input row once for all the tile's rows that read it.
        const VectorTile dtx = round_up_rows ? VectorTile{p.vector_width, p.vector_width}
                                             : depthwise_row_tile(s.out_w(), p.vector_width);
        const int dw_rows = depthwise_rows_apply(s, p) ? p.depthwise_rows : 1;
        a.depthwise.split(a.x, dxo, dxi, dtx.size, TailStrategy::ShiftInwards);
        if (dw_rows > 1) {
            // ShiftInwards: the last tile of a task's rows overlaps the one before it, computed
            // again by the same thread with the same code (the depthwise is per task).
            Var dyo("dyo"), dyi("dyi");
            a.depthwise.split(a.y, dyo, dyi, dw_rows, TailStrategy::ShiftInwards).reorder(dxi, dyi, dxo, dyo).unroll(dyi);
        }
        vectorize_tile(a.depthwise, dxi, dtx.lanes, TailStrategy::ShiftInwards);
        a.dw_acc.compute_at(a.depthwise, dxo);
        vectorize_tile(a.dw_acc, a.x, dtx.lanes, TailStrategy::GuardWithIf);
        Stage dw = a.dw_acc.update();
        if (dw_rows > 1) {
            a.dw_acc.unroll(a.y);
            dw.reorder(a.x, a.y, rx, ry, a.c, a.n).unroll(a.y);
        } else {
            dw.reorder(a.x, rx, ry, a.c, a.y, a.n);
        }
        if (s.k <= 7) dw.unroll(rx).unroll(ry);
        vectorize_tile(dw, a.x, dtx.lanes, TailStrategy::GuardWithIf);
    } else {
        // NHWC depthwise: one vector of channels per pixel, all taps unrolled.
        const VectorTile dwc = vector_tile(s.c1, p.vector_width, 1);
        vectorize_tile(a.depthwise, a.c, dwc.lanes, TailStrategy::GuardWithIf);
        a.dw_acc.compute_at(a.depthwise, a.x);
        vectorize_tile(a.dw_acc, a.c, dwc.lanes, TailStrategy::GuardWithIf);
        Stage dw = a.dw_acc.update();
        dw.reorder(a.c, rx, ry, a.x, a.y, a.n);
        if (s.k <= 7) dw.unroll(rx).unroll(ry);
        vectorize_tile(dw, a.c, dwc.lanes, TailStrategy::GuardWithIf);
    }
}

}  // namespace

namespace {

// The autoscheduler plugins ship with Halide (paths baked in by schedules/CMakeLists.txt); each is
// loaded once per process, on first use.
void load_autoscheduler(const std::string &name) {
    static std::mutex mutex;
    static std::set<std::string> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    if (loaded.count(name)) return;
    const std::map<std::string, std::string> plugins = {{"Mullapudi2016", CONVGEN_AUTOSCHEDULER_MULLAPUDI2016},
                                                        {"Li2018", CONVGEN_AUTOSCHEDULER_LI2018},
                                                        {"Adams2019", CONVGEN_AUTOSCHEDULER_ADAMS2019}};
    auto it = plugins.find(name);
    if (it == plugins.end()) throw Error("unknown autoscheduler '" + name + "'");
    Halide::load_plugin(it->second);
    loaded.insert(name);
}

// The constant extents define_algorithm constrained a buffer to (every convgen size is one).
std::vector<int> constant_extents(const OutputImageParam &p) {
    std::vector<int> extents;
    for (int d = 0; d < p.dimensions(); ++d) {
        const int64_t *e = Halide::Internal::as_const_int(p.parameter().extent_constraint(d));
        if (!e) throw Error("buffer '" + p.name() + "' has no constant size to estimate from");
        extents.push_back(static_cast<int>(*e));
    }
    return extents;
}

// Halide's autoschedulers need size estimates for every input and the output; convgen's sizes are
// constants, so the estimates are exactly the constrained bounds.
void estimate_from_constraints(OutputImageParam p) {
    const std::vector<int> extents = constant_extents(p);
    for (size_t d = 0; d < extents.size(); ++d) p.dim(static_cast<int>(d)).set_estimate(0, extents[d]);
}

void apply_autoscheduler(LayerAlgorithm &alg, const std::string &name, const Target &target) {
    load_autoscheduler(name);
    estimate_from_constraints(alg.input);
    estimate_from_constraints(alg.weight);
    estimate_from_constraints(alg.bias);
    if (alg.spec.kind == LayerKind::DepthwisePointwise) {
        estimate_from_constraints(alg.pw_weight);
        estimate_from_constraints(alg.pw_bias);
    }
    Region region;
    for (int extent : constant_extents(alg.output.output_buffer())) region.push_back(Range(0, extent));
    alg.output.set_estimates(region);
    const int cores = std::max(1u, std::thread::hardware_concurrency());
    // Halide's documented defaults for the last-level cache and balance of a desktop x86 CPU.
    const MachineParams machine(cores, 16 * 1024 * 1024, 40);
    alg.pipeline().auto_schedule(name, target, machine);
}

}  // namespace

void apply_schedule(LayerAlgorithm &alg, const ScheduleParams &params, const Target &target) {
    if (!params.autoscheduler.empty()) {
        apply_autoscheduler(alg, params.autoscheduler, target);
        return;
    }
    if (alg.spec.kind == LayerKind::Conv) {
        schedule_conv(alg, params);
    } else {
        schedule_dwconv(alg, params);
    }
}

}  // namespace convgen
