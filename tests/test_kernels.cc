// Every kernel against the double-precision C++ reference: all activations x layer kinds x
// layouts x strides, odd shapes, explicit padding, batches, schedule variants and ISA families.
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "codegen/jit.h"
#include "runtime/reference.h"

namespace convgen {
namespace {

// Compiles `spec` with `options`, runs it on random data and compares with the reference.
void expect_matches_reference(const LayerSpec &spec, const CompileOptions &options = {}) {
    const unsigned seed = 7;
    const RawWeights raw = random_raw_weights(spec, seed);
    Tensor input = random_input(spec, seed + 1);
    // Scale the input so that pre-activations reach the saturating parts of every activation.
    for (float &v : input.data) v *= 3.0f;
    const CompiledKernel compiled = jit_compile(spec, options);
    const Tensor actual = compiled.kernel->run(input, fold_batchnorm(spec, raw));
    const Tensor expected = reference_forward(spec, raw, input);
    ASSERT_EQ(actual.shape, expected.shape);
    double err = 0, limit = 0;
    EXPECT_TRUE(within_tolerance(expected, actual, &err, &limit))
        << spec.to_string() << " schedule " << compiled.kernel->info().schedule << " target "
        << compiled.kernel->info().target << ": max_abs_err " << err << " > " << limit;
}

// ---- The full matrix: activation x {g=1, grouped, depthwise conv, dwconv} x layout x stride.

struct MatrixCase {
    Activation act;
    int shape;  // index into kShapes
    Layout layout;
    int stride;
};

// Odd sizes and channel counts that are not multiples of 8 or 16.
const char *kShapes[] = {
    "conv c1=5 c2=12 h=11 w=13 k=3",          // plain conv
    "conv c1=12 c2=18 h=9 w=15 k=3 g=3",      // grouped conv
    "conv c1=20 c2=20 h=10 w=17 k=3 g=20",    // depthwise through conv
    "dwconv c1=12 c2=20 h=11 w=9 k=3",        // fused depthwise -> pointwise
};
const char *kShapeNames[] = {"dense", "grouped", "depthwise", "dwconv"};

std::string matrix_spec(const MatrixCase &c) {
    std::string s = kShapes[c.shape];
    s += std::string(" act=") + activation_name(c.act);
    s += " s=" + std::to_string(c.stride);
    s += std::string(" layout=") + layout_name(c.layout);
    if (c.shape == 3) {
        // A different depthwise activation, so both stages' activations are exercised.
        const auto &acts = all_activations();
        size_t i = 0;
        while (acts[i] != c.act) ++i;
        s += std::string(" dw_act=") + activation_name(acts[(i + 3) % acts.size()]);
    }
    return s;
}

class KernelMatrix : public ::testing::TestWithParam<MatrixCase> {};

TEST_P(KernelMatrix, MatchesReference) { expect_matches_reference(parse_layer_spec(matrix_spec(GetParam()))); }

std::vector<MatrixCase> matrix_cases() {
    std::vector<MatrixCase> cases;
    for (Activation act : all_activations())
        for (int shape = 0; shape < 4; ++shape)
            for (Layout layout : {Layout::NCHW, Layout::NHWC})
                for (int stride : {1, 2}) cases.push_back({act, shape, layout, stride});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(All, KernelMatrix, ::testing::ValuesIn(matrix_cases()),
                         [](const ::testing::TestParamInfo<MatrixCase> &info) {
                             const MatrixCase &c = info.param;
                             return std::string(activation_name(c.act)) + "_" + kShapeNames[c.shape] + "_" +
                                    layout_name(c.layout) + "_s" + std::to_string(c.stride);
                         });

// ---- Edge shapes: batches, explicit padding (incl. 0), 1x1 images, even kernels, big strides.

class KernelEdgeShapes : public ::testing::TestWithParam<const char *> {};

TEST_P(KernelEdgeShapes, MatchesReference) { expect_matches_reference(parse_layer_spec(GetParam())); }

INSTANTIATE_TEST_SUITE_P(
    All, KernelEdgeShapes,
    ::testing::Values("conv n=2 c1=3 c2=5 h=7 w=9 k=3 p=0 act=relu",
                      "conv n=3 c1=8 c2=16 h=5 w=5 k=1 p=0 act=identity bn=0",
                      "conv c1=1 c2=1 h=1 w=1 k=1",
                      "conv c1=4 c2=4 h=1 w=1 k=3",
                      "conv c1=7 c2=9 h=23 w=37 k=5 act=silu",
                      "conv c1=6 c2=6 h=13 w=13 k=7 p=3 g=2 layout=nhwc",
                      "conv c1=16 c2=32 h=19 w=21 k=3 s=2 g=4 layout=nhwc act=gelu",
                      "conv c1=33 c2=33 h=9 w=9 k=3 g=33 layout=nhwc",
                      "conv c1=24 c2=40 h=6 w=50 k=3 p=2 act=leaky alpha=0.2",
                      "conv c1=4 c2=8 h=10 w=10 k=4 s=3 p=1",
                      "conv c1=2 c2=2 h=8 w=8 k=2 s=2 p=0",
                      "conv c1=3 c2=64 h=17 w=17 k=3 s=2 layout=nhwc act=hardswish",
                      "conv c1=10 c2=70 h=5 w=5 k=3 layout=nhwc",
                      "conv c1=8 c2=8 h=3 w=40 k=3 p=0 act=relu6 eps=0.001",
                      "conv n=2 c1=64 c2=64 h=6 w=6 k=3 g=16 layout=nhwc act=tanh",
                      "conv c1=3 c2=3 h=5 w=5 k=5 p=4 act=sigmoid",
                      "conv c1=9 c2=6 h=16 w=16 k=3 s=4 g=3 layout=nhwc p=0",
                      "dwconv n=2 c1=5 c2=7 h=9 w=11 k=3 p=0",
                      "dwconv c1=17 c2=3 h=12 w=12 k=5 s=2 layout=nhwc act=tanh dw_act=relu6",
                      "dwconv c1=40 c2=24 h=7 w=7 k=3 layout=nhwc bn=0 dw_bn=0 dw_act=identity",
                      "dwconv c1=8 c2=16 h=1 w=1 k=3",
                      "dwconv c1=3 c2=5 h=30 w=33 k=7 p=3 act=sigmoid dw_act=leaky alpha=0.3",
                      "dwconv n=3 c1=9 c2=10 h=6 w=6 k=1 p=0 layout=nhwc",
                      "dwconv c1=32 c2=64 h=14 w=14 k=3 s=2 act=gelu_tanh",
                      "dwconv c1=64 c2=20 h=4 w=4 k=3 p=2",
                      "dwconv c1=20 c2=36 h=10 w=26 k=3 s=3 p=1 layout=nhwc act=hardswish bn=0"));

// ---- Schedule variants: every template parameter combination class must stay correct.

struct ScheduleCase {
    const char *spec;
    ScheduleParams params;
};

// The transposed store of channel-vector tiles (transpose=1): tiles of 2 to 16 pixels (powers of
// two and not), one or two channel vectors a tile, whole rows, strided and grouped convs with
// channel blocks, a batch, and the dwconv's pointwise per task (with channel blocks) or per row.
std::vector<ScheduleCase> transpose_cases() {
    std::vector<ScheduleCase> cases;
    struct TransposeCase {
        const char *spec;
        int tile_vectors, tile_pixels, parallel_rows, channel_blocks, dw_per_task;
    };
    for (const TransposeCase &t : std::vector<TransposeCase>{{"conv c1=8 c2=32 h=9 w=16 k=3 act=silu", 2, 8, 3, 1, 0},
                                                             {"conv c1=8 c2=32 h=9 w=16 k=3 act=silu", 1, 16, 9, 1, 0},
                                                             {"conv c1=8 c2=32 h=9 w=16 k=3 act=silu", 1, 2, 2, 1, 0},
                                                             {"conv c1=32 c2=64 h=7 w=12 k=3 g=2 act=leaky", 2, 6, 7, 2, 0},
                                                             {"conv c1=32 c2=64 h=7 w=12 k=3 g=2 act=leaky", 1, 4, 3, 4, 0},
                                                             {"conv c1=8 c2=16 h=16 w=20 k=3 s=2 act=relu", 1, 10, 2, 1, 0},
                                                             {"conv n=2 c1=8 c2=16 h=6 w=8 k=1 act=relu6", 1, 8, 4, 1, 0},
                                                             {"conv n=2 c1=8 c2=16 h=6 w=8 k=1 act=relu6", 1, 4, 1, 1, 0},
                                                             {"dwconv c1=12 c2=32 h=9 w=14 k=3 act=silu", 2, 14, 4, 1, 1},
                                                             {"dwconv c1=12 c2=32 h=9 w=14 k=3 act=silu", 1, 2, 3, 2, 1},
                                                             {"dwconv c1=12 c2=32 h=9 w=14 k=3 act=silu", 1, 14, 2, 1, 0},
                                                             {"dwconv n=2 c1=8 c2=16 h=12 w=24 k=3 s=2 act=relu", 1, 4, 5, 1, 1},
                                                             {"dwconv n=2 c1=8 c2=16 h=12 w=24 k=3 s=2 act=relu", 1, 12, 6, 1, 0}}) {
        ScheduleParams p;
        p.vector_width = 16;
        p.vectorize_channels = 1;
        p.tile_vectors = t.tile_vectors;
        p.tile_rows = t.tile_pixels;
        p.parallel_rows = t.parallel_rows;
        p.channel_blocks = t.channel_blocks;
        p.depthwise_per_task = t.dw_per_task;
        p.transpose_store = 1;
        cases.push_back({t.spec, adapt_to_spec(p, parse_layer_spec(t.spec))});
    }
    return cases;
}

// Cases written as (spec, schedule text) pairs.
std::vector<ScheduleCase> parsed_cases(std::initializer_list<std::pair<const char *, const char *>> cases) {
    std::vector<ScheduleCase> out;
    for (const auto &c : cases) out.push_back({c.first, ScheduleParams::parse(c.second)});
    return out;
}

// Strided NCHW dwconvs whose depthwise stage reads the zero-padded rows with strided loads, per
// task and streamed per channel (the two-channel ring of schedule_dwconv), along channels with
// channel blocks and along x, flat rows, one or two rows a task. The first three faulted without
// the ring (Halide 14's aligned load of an odd constant index); the others cover the same path.
std::vector<ScheduleCase> strided_depthwise_cases() {
    return parsed_cases({
        {"dwconv c1=16 c2=32 h=28 w=28 k=3 s=2 act=relu",
         "vec=8 tile_vectors=3 tile_rows=2 parallel_rows=1 channels=1 channel_tasks=0 dw_per_task=1 channel_blocks=4 stream=1"},
        {"dwconv c1=8 c2=32 h=56 w=56 k=3 s=2",
         "vec=8 tile_vectors=3 tile_rows=2 parallel_rows=1 channels=1 channel_tasks=0 dw_per_task=1 channel_blocks=4 stream=1"},
        {"dwconv c1=8 c2=16 h=30 w=30 k=3 s=2 act=silu",
         "vec=8 tile_vectors=2 tile_rows=4 parallel_rows=2 channels=1 channel_tasks=0 dw_per_task=1 channel_blocks=2 stream=1 dw_rows=2"},
        {"dwconv c1=16 c2=32 h=28 w=28 k=3 s=2 act=relu",
         "vec=16 tile_vectors=2 tile_rows=5 parallel_rows=1 channels=1 channel_tasks=0 dw_per_task=1 channel_blocks=2 stream=1"},
        {"dwconv c1=6 c2=10 h=29 w=29 k=5 s=2",
         "vec=8 tile_vectors=2 tile_rows=4 parallel_rows=1 channels=0 channel_tasks=0 dw_per_task=1 stream=1"},
        {"dwconv n=2 c1=6 c2=20 h=28 w=28 k=3 s=2",
         "vec=16 tile_vectors=1 tile_rows=4 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=1 tile_y=2 flat=1 stream=1"},
        {"dwconv c1=8 c2=24 h=14 w=30 k=3 s=2 act=relu6",
         "vec=8 tile_vectors=2 tile_rows=3 parallel_rows=3 channels=0 channel_tasks=0 dw_per_task=0 stream=1"},
    });
}

// Flat rows of 1x1 convs (flat_rows): the input read in place where the row tiles' runs are whole
// register tiles and the tasks whole row tiles (flat_reads_input_in_place), staged otherwise;
// grouped ones with tiles of 2 to 5 of a group's channels (one input load for all of them).
std::vector<ScheduleCase> flat_input_cases() {
    return parsed_cases({
        {"conv c1=24 c2=40 h=8 w=12 k=1 g=2 act=relu", "vec=16 tile_vectors=1 tile_rows=4 parallel_rows=4 tile_y=4 flat=1"},
        {"conv c1=24 c2=40 h=8 w=12 k=1 g=2 act=relu", "vec=8 tile_vectors=3 tile_rows=5 parallel_rows=2 tile_y=2 flat=1"},
        {"conv n=2 c1=10 c2=12 h=6 w=8 k=1 act=silu", "vec=16 tile_vectors=1 tile_rows=3 parallel_rows=6 tile_y=2 flat=1"},
        {"conv c1=24 c2=40 h=8 w=12 k=1 g=2 act=relu", "vec=8 tile_vectors=2 tile_rows=5 parallel_rows=2 tile_y=2 flat=1"},
        {"conv c1=24 c2=40 h=7 w=12 k=1 g=2", "vec=16 tile_vectors=1 tile_rows=4 parallel_rows=4 tile_y=4 flat=1"},
        {"conv c1=9 c2=12 h=8 w=12 k=1 g=3 act=leaky", "vec=8 tile_vectors=1 tile_rows=2 parallel_rows=4 tile_y=3 flat=1"},
    });
}

std::vector<ScheduleCase> schedule_cases() {
    const char *specs[] = {
        "conv c1=6 c2=10 h=9 w=29 k=3 g=2",
        "conv c1=12 c2=36 h=7 w=7 k=3 s=2 layout=nhwc",
        "dwconv c1=11 c2=21 h=13 w=27 k=3",
        "dwconv c1=24 c2=35 h=6 w=9 k=5 layout=nhwc",
    };
    std::vector<ScheduleParams> params;
    for (int vec : {4, 8, 16})
        for (int tv : {1, 3})
            for (int tr : {1, 5}) {
                ScheduleParams p;
                p.vector_width = vec;
                p.tile_vectors = tv;
                p.tile_rows = tr;
                p.parallel_rows = 1 + (vec + tv + tr) % 4;  // 1..4 rows per parallel task
                params.push_back(p);
            }
    std::vector<ScheduleCase> cases;
    for (const char *s : specs)
        for (const auto &p : params) cases.push_back({s, p});
    // NCHW vectorised over output channels (weights packed channels-innermost): dense convs and
    // dwconv's pointwise stage, with odd channel counts and short rows.
    const char *channel_specs[] = {"conv c1=6 c2=10 h=9 w=5 k=3", "conv c1=12 c2=37 h=7 w=7 k=3 s=2 act=silu",
                                   "dwconv c1=11 c2=21 h=13 w=6 k=3", "dwconv c1=24 c2=35 h=6 w=9 k=5 s=2 act=hardswish"};
    // Grouped NCHW convs with one parallel task per channel tile.
    for (const char *s : {"conv c1=12 c2=18 h=9 w=15 k=3 g=3", "conv c1=10 c2=10 h=11 w=20 k=3 s=2 g=10 act=silu"})
        for (int tr : {1, 2, 3}) {
            ScheduleParams p;
            p.tile_vectors = 2;
            p.tile_rows = tr;
            p.parallel_channels = 1;
            cases.push_back({s, p});
        }
    // dwconv computing a whole task's depthwise rows before the pointwise channel tiles.
    for (const char *s : {"dwconv c1=11 c2=21 h=13 w=27 k=3", "dwconv c1=6 c2=9 h=12 w=10 k=3 s=2 act=tanh"})
        for (int rows : {1, 3, 5}) {
            ScheduleParams p;
            p.tile_vectors = 1;
            p.tile_rows = 3;
            p.parallel_rows = rows;
            p.depthwise_per_task = 1;
            cases.push_back({s, p});
        }
    // NCHW register tiles holding several output rows (tile_y), with row counts that do not
    // divide the image or the task: plain, grouped with channel tasks, strided, and dwconv with
    // the depthwise rows per tile or per task.
    for (const char *s : {"conv c1=6 c2=10 h=9 w=29 k=3 g=2", "conv c1=12 c2=18 h=9 w=15 k=3 g=3 act=silu",
                          "conv c1=8 c2=12 h=13 w=11 k=3 s=2 act=relu", "dwconv c1=11 c2=21 h=13 w=27 k=3",
                          "dwconv c1=6 c2=9 h=7 w=7 k=5 s=1 act=tanh"})
        for (int ty : {2, 3})
            for (int variant = 0; variant < 3; ++variant) {
                ScheduleParams p;
                p.tile_vectors = 1 + variant % 2;
                p.tile_rows = 2 + variant;
                p.tile_y = ty;
                p.parallel_rows = variant == 0 ? 1 : ty * variant + 1;
                p.parallel_channels = variant == 2 && std::string(s).find("g=") != std::string::npos;
                p.depthwise_per_task = variant == 2 && std::string(s).rfind("dwconv", 0) == 0;
                cases.push_back({s, p});
            }
    // Batches whose image's last row block is guarded (tile_y > 1, tasks that do not divide the
    // image): the images are then a parallel loop around the row blocks' (make_row_tasks). Plain
    // and strided convs along x, dwconv per row tile and per task, flat rows (dwconv and 1x1).
    for (const char *s : {"conv n=2 c1=6 c2=10 h=9 w=29 k=3", "conv n=3 c1=8 c2=12 h=13 w=11 k=3 s=2 act=relu",
                          "dwconv n=2 c1=11 c2=21 h=13 w=27 k=3", "dwconv n=3 c1=6 c2=9 h=7 w=7 k=5 act=tanh",
                          "conv n=2 c1=12 c2=17 h=9 w=14 k=1 p=0 act=silu"})
        for (int variant = 0; variant < 3; ++variant) {
            ScheduleParams p;
            p.vector_width = 8;
            p.tile_vectors = 1 + variant % 2;
            p.tile_rows = 3;
            p.tile_y = 2;
            p.parallel_rows = 4;
            p.depthwise_per_task = variant == 1 && std::string(s).rfind("dwconv", 0) == 0;
            p.flat_rows = variant == 2;
            cases.push_back({s, p});
        }
    // Flattened row tiles (flat_rows): row widths that are not a multiple of the vector, pixel
    // runs rounded up into the next row (and past the image), tasks and row tiles that do not
    // divide the image, channel tiles that do not divide c2; dwconv and 1x1 convs, dense, grouped
    // (tiles within a group and, where the group's channels are odd, across two) and depthwise.
    for (const char *s : {"dwconv c1=11 c2=21 h=13 w=27 k=3", "dwconv c1=6 c2=9 h=7 w=7 k=5 s=1 act=tanh",
                          "dwconv c1=8 c2=13 h=15 w=14 k=3 s=2 act=relu", "conv c1=12 c2=17 h=9 w=14 k=1 p=0 act=silu",
                          "conv c1=5 c2=7 h=3 w=5 k=1 p=0", "conv c1=12 c2=24 h=9 w=14 k=1 p=0 g=3 act=relu",
                          "conv c1=10 c2=15 h=7 w=11 k=1 p=0 g=5", "conv c1=9 c2=9 h=6 w=13 k=1 p=0 g=9 act=relu"})
        for (int ty : {1, 2, 4})
            for (int variant = 0; variant < 3; ++variant) {
                ScheduleParams p;
                p.vector_width = variant == 2 ? 4 : 8;
                p.tile_vectors = 1 + variant;
                p.tile_rows = 2 + 2 * variant;
                p.tile_y = ty;
                p.parallel_rows = variant == 0 ? ty : ty * variant + 1;
                p.depthwise_per_task = variant == 1;
                p.flat_rows = 1;
                cases.push_back({s, p});
            }
    // dwconv tasks split by output channel blocks (channel_blocks) as well as rows: along x and
    // along channels, blocks that do not divide the channel tiles, more blocks than tiles.
    for (const char *s : {"dwconv c1=11 c2=21 h=13 w=27 k=3", "dwconv c1=6 c2=37 h=7 w=7 k=5 s=2 act=tanh",
                          "dwconv n=2 c1=9 c2=20 h=6 w=10 k=3 act=relu"})
        for (int blocks : {2, 3, 16})
            for (int channels : {0, 1}) {
                ScheduleParams p;
                p.tile_vectors = 1 + channels;
                p.tile_rows = 3;
                p.parallel_rows = blocks == 3 ? 2 : 7;
                p.vectorize_channels = channels;
                p.depthwise_per_task = 1;
                p.channel_blocks = blocks;
                cases.push_back({s, p});
            }
    // NCHW rows a little shorter than the vector (9..15 floats at vec=16): accumulators one whole
    // vector wide over zero columns past the image; plain, strided, grouped with channel tasks,
    // depthwise, and dwconv with the depthwise per row tile and per task.
    for (const char *s : {"conv c1=16 c2=24 h=15 w=15 k=3 p=0 act=relu", "conv c1=8 c2=12 h=19 w=19 k=7 s=2 p=3",
                          "conv c1=12 c2=12 h=13 w=11 k=3 g=12 act=relu6", "conv c1=8 c2=16 h=12 w=12 k=3 g=4",
                          "dwconv c1=10 c2=12 h=12 w=12 k=5 p=2 act=silu", "dwconv c1=8 c2=12 h=26 w=26 k=3 s=2"})
        for (int variant = 0; variant < 3; ++variant) {
            ScheduleParams p;
            p.vector_width = 16;
            p.tile_vectors = 1;
            p.tile_rows = 2 + variant;
            p.tile_y = 1 + variant % 2;
            p.parallel_rows = 1 + 2 * variant;
            p.parallel_channels = variant == 2 && std::string(s).find("g=") != std::string::npos;
            p.depthwise_per_task = variant == 2 && std::string(s).rfind("dwconv", 0) == 0;
            cases.push_back({s, p});
        }
    for (const char *s : channel_specs)
        for (int vec : {4, 8})
            for (int tv : {1, 3})
                for (int tr : {1, 4}) {
                    ScheduleParams p;
                    p.vector_width = vec;
                    p.tile_vectors = tv;
                    p.tile_rows = tr;
                    p.parallel_rows = 1 + (tv + tr) % 3;
                    p.vectorize_channels = 1;
                    cases.push_back({s, p});
                }
    // Along channels with weights in blocks of the channel tile (tiles that divide c2): dense and
    // 1x1 convs, dwconv with the depthwise per row and per task (with channel blocks), NHWC.
    for (const char *s : {"conv c1=6 c2=24 h=9 w=5 k=3", "conv c1=5 c2=32 h=6 w=7 k=1 p=0 act=silu",
                          "dwconv c1=11 c2=32 h=7 w=6 k=3", "dwconv c1=6 c2=16 h=5 w=9 k=3 s=2 layout=nhwc act=relu"})
        for (int variant = 0; variant < 3; ++variant) {
            ScheduleParams p;
            p.vector_width = variant == 2 ? 4 : 8;
            p.tile_vectors = 1 + variant % 2;
            p.tile_rows = 3;
            p.parallel_rows = 1 + variant;
            p.vectorize_channels = 1;
            p.depthwise_per_task = variant > 0 && std::string(s).rfind("dwconv", 0) == 0;
            p.channel_blocks = variant == 2 ? 2 : 1;
            cases.push_back({s, p});
        }
    // Grouped convs along channels (their groups hold whole vectors of output channels): tiles
    // cut to divide the group's vectors (tile_vectors 3 of 2 or 4), strided, 1x1, rows shorter
    // than the tile; and a group of 6 channels, which stays along x (a vector would straddle groups).
    for (const char *s : {"conv c1=16 c2=32 h=9 w=11 k=3 g=2 act=relu", "conv c1=24 c2=48 h=11 w=9 k=3 s=2 g=3 act=silu",
                          "conv c1=12 c2=24 h=5 w=9 k=1 p=0 g=3 act=leaky", "conv n=2 c1=8 c2=64 h=6 w=5 k=5 p=2 g=2",
                          "conv c1=12 c2=12 h=6 w=7 k=3 g=2"})
        for (int variant = 0; variant < 4; ++variant) {
            ScheduleParams p;
            p.vector_width = variant == 3 ? 16 : (variant == 2 ? 4 : 8);
            p.tile_vectors = 1 + 2 * (variant % 2);
            p.tile_rows = 2 + variant;
            p.parallel_rows = 1 + variant;
            p.vectorize_channels = 1;
            cases.push_back({s, p});
        }
    // Convs along channels whose tasks are blocks of channel tiles (channel_blocks): one block
    // per group, blocks that straddle groups or do not divide the tiles, more blocks than tiles,
    // a batch, strided, NHWC (also with groups of fewer input channels than a vector, whose
    // staged input is narrower than the vector), and a dense conv.
    for (const char *s : {"conv c1=16 c2=32 h=9 w=11 k=3 g=2 act=relu", "conv n=2 c1=24 c2=48 h=11 w=9 k=3 s=2 g=3 act=silu",
                          "conv c1=16 c2=32 h=7 w=6 k=3 g=2 layout=nhwc act=leaky",
                          "conv c1=16 c2=32 h=9 w=7 k=3 s=2 g=4 layout=nhwc act=gelu", "conv c1=6 c2=40 h=9 w=5 k=3"})
        for (int blocks : {2, 3, 16}) {
            ScheduleParams p;
            p.vector_width = 8;
            p.tile_vectors = blocks == 3 ? 1 : 2;
            p.tile_rows = 3;
            p.parallel_rows = blocks == 2 ? 4 : 11;
            p.vectorize_channels = 1;
            p.channel_blocks = blocks;
            cases.push_back({s, p});
        }
    // The input staged as it is consumed (stream_input): a sliding window of rows per row tile
    // (NCHW convs along x: plain, strided, channel tasks, several rows per tile, rows shorter than
    // the vector; dwconv per row along x and along channels, NHWC), and per depthwise channel
    // when the depthwise is per task (with channel blocks, strided).
    for (const char *s : {"conv c1=6 c2=10 h=9 w=29 k=3 g=2", "conv c1=8 c2=12 h=13 w=11 k=3 s=2 act=relu",
                          "conv c1=12 c2=12 h=13 w=11 k=3 g=12 act=relu6", "conv c1=8 c2=16 h=12 w=12 k=5 p=2",
                          "dwconv c1=11 c2=21 h=13 w=27 k=3", "dwconv c1=8 c2=12 h=26 w=26 k=3 s=2",
                          "dwconv c1=6 c2=16 h=5 w=9 k=3 s=2 layout=nhwc act=relu", "dwconv n=2 c1=9 c2=20 h=6 w=10 k=5 act=silu"})
        for (int variant = 0; variant < 4; ++variant) {
            ScheduleParams p;
            p.vector_width = variant == 3 ? 16 : 8;
            p.tile_vectors = 1 + variant % 2;
            p.tile_rows = 2 + variant;
            p.tile_y = variant == 1 ? 2 : 1;
            p.parallel_rows = 1 + 3 * variant;
            const bool dwconv = std::string(s).rfind("dwconv", 0) == 0;
            p.parallel_channels = variant == 2 && std::string(s).find("g=") != std::string::npos;
            p.depthwise_per_task = dwconv && variant >= 2;
            p.vectorize_channels = dwconv && variant == 0;
            if (p.vectorize_channels) p.tile_y = 1;
            p.channel_blocks = dwconv && variant == 3 ? 2 : 1;
            p.stream_input = 1;
            cases.push_back({s, p});
        }
    // Strided NCHW rows whose last 16-wide tile is shifted in to x = 12 of 28 (its padded input at
    // a 32-byte offset), one or two rows a task, streamed, the depthwise per task (with channel
    // blocks) or per row: reading the padded rows with strided loads there made Halide 14 emit an
    // aligned 512-bit load at that offset, which faulted (the first two dwconv variants).
    for (const char *s : {"dwconv c1=6 c2=10 h=9 w=56 k=3 s=2 act=relu", "conv c1=4 c2=8 h=9 w=56 k=3 s=2 g=2"})
        for (int variant = 0; variant < 4; ++variant) {
            const bool dwconv = std::string(s).rfind("dwconv", 0) == 0;
            ScheduleParams p;
            p.vector_width = 16;
            p.tile_vectors = variant < 2 ? 3 : variant - 1;
            p.tile_rows = variant == 1 ? 6 : 3;
            p.parallel_rows = variant == 2 ? 2 : 1;
            p.depthwise_per_task = dwconv && variant < 3;
            p.channel_blocks = dwconv && variant < 2 ? 2 * (variant + 1) : 1;
            p.stream_input = 1;
            cases.push_back({s, p});
        }
    // The depthwise register tile over several rows (dw_rows): per task (along channels, along x,
    // flat rows, streamed, strided, with channel blocks, a batch), per row tile along x, tiles that
    // do not divide the rows (shifted inwards) and a last task with fewer rows than the tile.
    for (const char *s : {"dwconv c1=6 c2=10 h=13 w=27 k=5 act=silu", "dwconv n=2 c1=8 c2=12 h=11 w=20 k=3 s=2 act=relu",
                          "dwconv c1=9 c2=16 h=7 w=14 k=3 act=relu6", "dwconv c1=5 c2=7 h=6 w=9 k=3 s=2"})
        for (int variant = 0; variant < 6; ++variant) {
            ScheduleParams p;
            p.vector_width = variant == 5 ? 16 : 8;
            p.tile_vectors = 1 + variant % 2;
            p.tile_rows = 3;
            p.parallel_rows = variant == 4 ? 4 : 5;
            p.vectorize_channels = variant == 0 || variant == 3;
            p.depthwise_per_task = variant != 4;
            p.flat_rows = variant == 2;
            p.tile_y = variant == 2 ? 3 : variant == 4 ? 4 : 1;
            p.stream_input = variant == 1 || variant == 3;
            p.channel_blocks = variant == 3 ? 2 : 1;
            p.depthwise_rows = variant == 4 ? 4 : 2 + variant % 3;
            cases.push_back({s, adapt_to_spec(p, parse_layer_spec(s))});
        }
    // Strided NCHW convs along x reading zero-padded rows whose vectors start at multiples of the
    // lanes (align_bounds, where the lanes divide the width: 16 lanes of 48 and 64 columns, 8 of 40
    // and of 56 at vec=16) or not (46, 41 columns), per task and per row tile (stream_input), with
    // channel tasks and several rows a tile.
    for (const char *s : {"conv c1=4 c2=8 h=10 w=48 k=3 s=2 g=2 act=relu", "conv c1=3 c2=8 h=11 w=64 k=5 s=2 p=2",
                          "conv c1=8 c2=8 h=9 w=40 k=3 s=2 g=8", "conv c1=8 c2=16 h=7 w=56 k=3 s=2 g=4 act=relu",
                          "conv c1=6 c2=6 h=9 w=46 k=3 s=2 g=6", "conv c1=4 c2=4 h=8 w=41 k=3 s=3 g=2"})
        for (int variant = 0; variant < 4; ++variant) {
            ScheduleParams p;
            p.vector_width = variant == 3 ? 8 : 16;
            p.tile_vectors = 1 + variant % 2;
            p.tile_rows = std::string(s).find("g=") != std::string::npos ? 1 : 4;
            p.tile_y = variant == 1 ? 2 : 1;
            p.parallel_rows = 1 + 2 * variant;
            p.parallel_channels = variant >= 2 && std::string(s).find("g=") != std::string::npos;
            p.stream_input = variant % 3 != 0;
            cases.push_back({s, p});
        }
    for (const ScheduleCase &c : transpose_cases()) cases.push_back(c);
    for (const ScheduleCase &c : strided_depthwise_cases()) cases.push_back(c);
    for (const ScheduleCase &c : flat_input_cases()) cases.push_back(c);
    return cases;
}

class KernelScheduleVariants : public ::testing::TestWithParam<ScheduleCase> {};

TEST_P(KernelScheduleVariants, MatchesReference) {
    CompileOptions options;
    options.has_schedule = true;
    options.schedule = GetParam().params;
    expect_matches_reference(parse_layer_spec(GetParam().spec), options);
}

INSTANTIATE_TEST_SUITE_P(All, KernelScheduleVariants, ::testing::ValuesIn(schedule_cases()));

// Every transposed-store case keeps the knob through adapt_to_spec (which drops it where it does
// not apply), so the variants above really run the transposed store.
TEST(KernelScheduleVariantsCases, TransposeCasesRunTheTransposedStore) {
    const std::vector<ScheduleCase> cases = transpose_cases();
    EXPECT_EQ(cases.size(), 13u);
    for (const ScheduleCase &c : cases) {
        EXPECT_TRUE(output_transpose_for(parse_layer_spec(c.spec), c.params).on()) << c.spec << " | " << c.params.to_string();
    }
}

// A case's parameters as the kernel compiles them, checked to be the case's own (adapt_to_spec drops
// knobs that do not apply, so a case that lost one would not test it).
ScheduleParams adapted_unchanged(const ScheduleCase &c, const LayerSpec &spec) {
    const ScheduleParams p = adapt_to_spec(c.params, spec);
    EXPECT_EQ(p.to_string(), c.params.to_string()) << c.spec;
    return p;
}

// The strided depthwise cases above really read the padded rows strided, per task and streamed
// (all but the last), as the tuned records of mbv1_b2 and mbv1_b4 do.
TEST(KernelScheduleVariantsCases, StridedDepthwiseCasesReadThePaddedRowsStrided) {
    const std::vector<ScheduleCase> cases = strided_depthwise_cases();
    ASSERT_EQ(cases.size(), 7u);
    for (size_t i = 0; i < cases.size(); ++i) {
        const LayerSpec spec = parse_layer_spec(cases[i].spec);
        const ScheduleParams p = adapted_unchanged(cases[i], spec);
        EXPECT_TRUE(reads_padded_rows_strided(spec, p)) << cases[i].spec << " | " << p.to_string();
        EXPECT_EQ(p.depthwise_per_task == 1 && stream_applies(spec, p) && p.stream_input == 1, i + 1 < cases.size())
            << cases[i].spec << " | " << p.to_string();
    }
}

// The first three flat cases above read the input in place, the rest stage it: a run of 24
// pixels in tiles of 16, a task of 7 rows in tiles of 4, a task of 4 rows in tiles of 3.
TEST(KernelScheduleVariantsCases, FlatCasesReadTheInputInPlaceWhereTheTilesDivide) {
    const std::vector<ScheduleCase> cases = flat_input_cases();
    ASSERT_EQ(cases.size(), 6u);
    for (size_t i = 0; i < cases.size(); ++i) {
        const LayerSpec spec = parse_layer_spec(cases[i].spec);
        const ScheduleParams p = adapted_unchanged(cases[i], spec);
        EXPECT_TRUE(flat_rows_supported(spec)) << cases[i].spec;
        EXPECT_EQ(flat_reads_input_in_place(spec, p), i < 3) << cases[i].spec << " | " << p.to_string();
    }
}

// ---- ISA families runnable on any x86-64 host: SSE4.1 and baseline x86-64 (Generic).

class KernelTargets : public ::testing::TestWithParam<std::tuple<const char *, const char *>> {};

TEST_P(KernelTargets, MatchesReference) {
    CompileOptions options;
    options.target = std::get<1>(GetParam());
    expect_matches_reference(parse_layer_spec(std::get<0>(GetParam())), options);
}

INSTANTIATE_TEST_SUITE_P(All, KernelTargets,
                         ::testing::Combine(::testing::Values("conv c1=12 c2=18 h=9 w=15 k=3 g=3 act=silu",
                                                              "dwconv c1=12 c2=20 h=11 w=9 k=3 layout=nhwc act=gelu"),
                                            ::testing::Values("x86-64-linux-sse41", "x86-64-linux")));

}  // namespace
}  // namespace convgen
