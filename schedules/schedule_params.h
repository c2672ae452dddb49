// ScheduleParams: the knobs of convgen's schedule templates. A heuristic fills them from the
// spec and the target; the autotuner searches the same space. Their text form is part of a
// compiled kernel's identity (JIT cache key, schedule database).
#pragma once

#include <string>
#include <vector>

#include "dsl/layer_spec.h"
#include "dsl/weight_layout.h"

namespace convgen {

enum class IsaFamily { Generic, AVX2, AVX512, NEON };

const char *isa_family_name(IsaFamily f);

struct ScheduleParams {
    // Vector lanes of float32: 8 on AVX2, 4 on NEON, 16 or 8 on AVX-512 (see vector_widths).
    int vector_width = 8;
    // Register tile: vectors along the vectorised dimension x rows/channels of accumulators.
    int tile_vectors = 1;
    int tile_rows = 1;
    // NCHW vectorised along x only: output rows (y) in the register tile. Rows shorter than a few
    // vectors (14, 7, 27 wide) fill the tile with rows instead of wasting ShiftInwards tiles along
    // x; each broadcast weight then feeds tile_vectors * tile_y accumulators. Text form omits 1.
    int tile_y = 1;
    // Parallel tasks per output: rows of output grouped into one task.
    int parallel_rows = 1;
    // NCHW only (NHWC always vectorises channels): 0 vectorises along output x, 1 along output
    // channels (for small images, where rows are shorter than a few vectors). Grouped convs can
    // take 1 when each group has whole vectors of output channels (channel_vectorization_supported).
    int vectorize_channels = 0;
    // Grouped NCHW convs vectorised along x: 1 makes each parallel task one channel tile over the
    // whole image, staging only its group's input (small, cache-resident, and its loads overlap
    // with compute); 0 makes each task a block of rows over all channels.
    int parallel_channels = 0;
    // dwconv: 1 computes the depthwise rows of a whole parallel task first (still in cache, never
    // the whole image), so that pointwise channel tiles can be the outer loop and reuse their
    // weights across the task's rows; 0 computes one row at a time.
    int depthwise_per_task = 0;
    // NCHW along x, for the dwconv pointwise and 1x1 stride-1 unpadded convs (whose operand rows
    // are contiguous): the tile_y rows of a row tile are one flattened run of pixels, cut into
    // register tiles of tile_vectors vectors x tile_rows channels, so rows that are not a
    // multiple of the vector (28, 14, 7 wide) waste no lanes; the row tile's accumulators cover
    // all output channels, so each pixel tile's input panel stays in L1 across the channel
    // tiles. Ignored elsewhere. Text form omits 0.
    int flat_rows = 0;
    // dwconv with depthwise_per_task, NCHW along x or along channels: the output channel tiles are
    // split into this many blocks, and the parallel tasks are blocks x row blocks x images. Each
    // task computes its rows' depthwise itself (so the depthwise work is repeated per block), and
    // reads only its block's part of the pointwise weights: a weight matrix bigger than one
    // core's L2 (1024x1024 floats is 4 MiB) is then split between the cores instead of every
    // core streaming all of it for every row block. Convs along channels: the same blocks of
    // channel tiles, each task one block over its rows (a grouped conv's block is one group,
    // whose input alone is staged). Ignored elsewhere. Text form omits 1.
    int channel_blocks = 1;
    // 1 stages the zero-padded input as it is consumed instead of all of a task's rows first:
    // NCHW dwconv with depthwise_per_task, per channel of the task's depthwise; dwconv per row tile
    // (not flat_rows) and NCHW convs along x, per row tile, Halide's sliding window keeping the
    // task's rows in one buffer and computing only the rows each tile adds (strided convs: their
    // zero-padded rows, per channel tile and row tile, so a grouped conv's tile copies only its
    // groups' rows; a dense conv's tiles each copy all of them). The copy's loads then overlap
    // the compute, and a task's staged rows (up to 1.7 MB) no longer stream through L2 before
    // they are read. Ignored elsewhere (stream_applies). Text form omits 0.
    int stream_input = 0;
    // NCHW dwconv whose depthwise is computed for several rows at once (per task with
    // depthwise_per_task, else per row tile of tile_y rows along x): output rows in the depthwise
    // register tile, at most those rows. Its taps are all unrolled, so rows that read the same
    // input row share that row's vector loads (a 5x5 depthwise of 2 vectors a row: 50 loads and 25
    // broadcasts for 50 FMAs with one row, 80 loads and 25 broadcasts for 200 FMAs with four).
    // Ignored elsewhere (depthwise_rows_apply). Text form dw_rows, omitted at 1.
    int depthwise_rows = 1;
    // NCHW along channels with 16-lane vectors: 1 activates each register tile as channel vectors,
    // transposes it in registers and stores rows of the tile's pixels (OutputTranspose in
    // dsl/weight_layout.h); 0 stores each channel vector as 16 scalars. Needs tiles of an even
    // number of pixels that divide the rows (transpose_store_applies). Text form transpose,
    // omitted at 0.
    int transpose_store = 0;
    // Not convgen's templates but one of Halide 14's autoschedulers (Mullapudi2016, Li2018,
    // Adams2019) on the same algorithm; the knobs above are then unused. Text form: auto=<name>.
    std::string autoscheduler;

    std::string to_string() const;
    // Inverse of to_string; throws convgen::Error on malformed text.
    static ScheduleParams parse(const std::string &text);
    bool operator==(const ScheduleParams &o) const { return to_string() == o.to_string(); }
};

// The vector widths the templates take on an ISA family, the heuristic's first: AVX-512 16 (zmm) or
// 8 (ymm, still with 32 registers), AVX2 8, NEON 4. A CPU that splits 512-bit FMAs in two halves (the
// AMD EPYC Zen 4 here: the same FMA peak with 256- and 512-bit vectors) wastes fewer lanes with 8 on
// rows of 56 or 40 pixels (resnext_g32's 56-wide rows: 7 vectors of 8 against 4 of 16, 1.08x at 1
// thread); one with two 512-bit FMA units loses half its peak. Only the tuner, which measures,
// picks 8 there.
std::vector<int> vector_widths(IsaFamily isa);

// `p` at `width` lanes, its register tile's vectors scaled to cover the same pixels (or channels),
// made valid for `spec` (adapt_to_spec).
ScheduleParams with_vector_width(ScheduleParams p, int width, const LayerSpec &spec);

// The autoschedulers a ScheduleParams may name: Mullapudi2016, Li2018, Adams2019.
const std::vector<std::string> &halide_autoschedulers();

// The weight layout a kernel with these parameters takes (output channels innermost when the
// schedule vectorises over them).
WeightLayout weight_layout_for(const LayerSpec &spec, const ScheduleParams &params);

// How the output reads the last accumulator (see OutputTranspose in dsl/weight_layout.h): the
// transposed tiles of transpose_store, else directly.
OutputTranspose output_transpose_for(const LayerSpec &spec, const ScheduleParams &params);

// Whether a spec supports vectorising NCHW output channels `vector_width` at a time: dense convs,
// the dwconv's pointwise, and grouped convs whose groups have whole vectors of output channels.
bool channel_vectorization_supported(const LayerSpec &spec, int vector_width);

// Whether flat_rows applies: NCHW, and the reduced operand's rows are contiguous (the dwconv
// pointwise, or a 1x1 stride-1 unpadded conv, dense or grouped).
bool flat_rows_supported(const LayerSpec &spec);

// Flat rows' register tiles of 1, 2 or 4 vectors. A flat tile is one vector of tile_vectors * V
// lanes (see tile_flat_rows), and LLVM splits one of 3 x 16 lanes into single-element inserts:
// the reduction loop of a 3-vector x 8-channel tile had 800 instructions for 24 FMAs
// (shufflenet_g3's shape 0.50 ms against 0.30 with 1 vector; mbv1_b6's 1.26-1.33 ms against 1.14
// with 2). The heuristic and the tuner propose only these; an explicit schedule may still ask.
bool flat_tile_vectors_supported(int tile_vectors);

// Flat rows of a 1x1 conv (stride 1, unpadded: its input rows are the operand rows) that read the
// input where it is instead of staging a copy per task: the row tiles' runs are whole register
// tiles and the tasks whole row tiles, so no tile reads past the image (a RoundUp run that did
// read through the zero-padding select, and its loads became gathers: 10x slower). Staging was
// 5% of shufflenet_g3's samples; its 1-thread record, interleaved against the code before this and
// the one-load grouped tile (dsl/algorithms.cc) together, Zen 4: 1.03x.
bool flat_reads_input_in_place(const LayerSpec &spec, const ScheduleParams &params);

// Whether channel_blocks splits the parallel tasks: convs along channels, and dwconv with
// dw_per_task, along channels or along x without flat_rows (the channel tiles dw_per_task puts
// outside a task's rows).
bool channel_blocks_apply(const LayerSpec &spec, const ScheduleParams &params);

// NCHW along x with output rows a little shorter than one vector (9 to 15 floats on AVX-512): the
// accumulator is computed one whole vector wide (RoundUp) over zero-padded operand rows bounded
// to that width, instead of a row-wide odd vector that LLVM assembles from 8-, 4- and 2-lane loads
// and inserts, which compete with the FMAs for the shuffle port (1.15x on a 14x14 1x1 conv at
// 1 thread on AVX-512). Rows of half a vector or less would waste over half the lanes: flat_rows
// or channel vectorisation serve those.

bool round_up_short_rows(const LayerSpec &spec, const ScheduleParams &params);

// Output rows per parallel task (parallel_rows, at most the image).
int task_rows(const ScheduleParams &params, const LayerSpec &spec);

// Rows of the NCHW register tile along y: at most the rows one loop over y holds.
int tile_y_for(const ScheduleParams &params, int rows);

// Rows of one depthwise computation of an NCHW dwconv (a task's, a row tile's, or 1), which bound
// depthwise_rows; and whether depthwise_rows changes the schedule (those rows are over 1).
int depthwise_rows_at_once(const LayerSpec &spec, const ScheduleParams &params);
bool depthwise_rows_apply(const LayerSpec &spec, const ScheduleParams &params);

// NCHW along channels: the pixels of a row in one register tile (tile_rows, at most the row).
int channel_tile_pixels(const ScheduleParams &params, const LayerSpec &spec);

// Whether transpose_store changes the schedule (see ScheduleParams::transpose_store).
bool transpose_store_applies(const LayerSpec &spec, const ScheduleParams &params);

// Whether stream_input changes the schedule (see ScheduleParams::stream_input).
bool stream_applies(const LayerSpec &spec, const ScheduleParams &params);

// Strided NCHW layers (rows at least a vector wide): the conv's reduction, or the dwconv's
// depthwise stage, reads the zero-padded input rows (`padded`, computed per task, or per row tile
// or per channel with stream_input) with strided loads, not a stride-phase split (`staged`):
// splitting the phases into a buffer first was a second pass over the input, 14% of
// resnext_g32_s2's samples; without it, same tuned schedules, interleaved, 5 rounds:
// resnext_g32_s2 1.037x / 1.045x, yolo_g4_s2 1.016x / 1.038x at 1 / 2 threads; the dwconvs'
// records, 5-7 rounds, Zen 4: mbv1_b2 1.04x / 1.11x, mbv1_b4 1.04x / 1.23x, their heuristic
// schedules 1.05x and 1.04x at 1 thread. See schedule_dwconv for the Halide 14 bug that its
// per-channel rows work around.
bool reads_padded_rows_strided(const LayerSpec &spec, const ScheduleParams &params);

// Parallel tasks per row block of one image: channel_blocks (at most the output channel tiles)
// where it applies, else 1.
int channel_blocks_of(const LayerSpec &spec, const ScheduleParams &params);

int ceil_div(int a, int b);

// Whether the templates vectorise the output along channels (NHWC, or NCHW with
// vectorize_channels where supported) rather than along x.
bool along_channels(const LayerSpec &spec, const ScheduleParams &params);

// Largest tile_rows the tuner proposes: along x it counts output channels (up to 8), along
// channels pixels of a row (up to 16, so that rows like 27 or 14 split into equal tiles).
int max_tile_rows(const LayerSpec &spec, const ScheduleParams &params);

// Output channels in one register tile of the templates: along channels, whole channel vectors
// (at most tile_vectors of them; all of c2 when it is under one vector); along x, tile_rows (at
// most c2). The blocked weight layout is blocked by this, so both come from here.
int output_channel_tile(const LayerSpec &spec, const ScheduleParams &params);

// Another layer's (or target's) parameters made valid for `spec` at their vector width: knobs its
// shape does not support are turned off or clamped (channel vectorisation, channel tasks, the
// depthwise per task, channel_blocks, stream, tile rows that must divide a group).
ScheduleParams adapt_to_spec(ScheduleParams p, const LayerSpec &spec);

// Default parameters chosen from the spec and ISA family (no layer names, only sizes).
// `split_wide_fma`: the CPU runs AVX-512 FMAs as two 256-bit halves, so 8-lane vectors are as
// fast as 16-lane ones and the heuristic may take either (host_heuristic_schedule passes
// HostCpu::splits_wide_fma).
//
// `family` other than Heuristic takes the heuristic's parameters within one NCHW template family
// instead of the one its scores pick (the tuner seeds its search with each: resnet_3x3's record is
// along channels, three mutations away from the heuristic's rows along x). A family the spec does
// not support (channel vectors of a grouped conv whose groups are not whole vectors, flat rows of
// a 3x3 conv) gives rows along x; NHWC layers have one family.
enum class TemplateFamily { Heuristic, AlongX, FlatRows, AlongChannels };
ScheduleParams heuristic_schedule(const LayerSpec &spec, IsaFamily isa, bool split_wide_fma = false,
                                  TemplateFamily family = TemplateFamily::Heuristic);

}  // namespace convgen
