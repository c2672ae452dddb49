// The JIT compiler: caching, thread safety, targets, errors, explain.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "runtime/kernel_allocator.h"
#include "runtime/reference.h"

namespace convgen {
namespace {

TEST(Jit, SecondCompileComesFromTheCache) {
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=6 h=7 w=9 k=3 act=tanh");
    CompiledKernel a = jit_compile(spec);
    CompiledKernel b = jit_compile(spec);
    EXPECT_FALSE(a.from_cache);
    EXPECT_GT(a.compile_seconds, 0.0);
    EXPECT_TRUE(b.from_cache);
    EXPECT_EQ(a.kernel.get(), b.kernel.get());
    // A different schedule is a different kernel.
    CompileOptions o;
    o.has_schedule = true;
    o.schedule.vector_width = 4;
    CompiledKernel c = jit_compile(spec, o);
    EXPECT_FALSE(c.from_cache);
    EXPECT_NE(a.kernel.get(), c.kernel.get());
    EXPECT_EQ(c.kernel->info().schedule, o.schedule.to_string());
}

// ---- The kernels' allocator (runtime/kernel_allocator.h).

TEST(KernelAllocator, FreedBlocksAreReusedAndWhatItKeepsIsBounded) {
    const size_t before = kernel_allocator_cached_bytes();
    char *p = static_cast<char *>(kernel_malloc(nullptr, 100000));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kKernelAllocatorAlignment, 0u);
    std::fill(p, p + 100000, char(7));
    kernel_free(nullptr, p);
    EXPECT_GE(kernel_allocator_cached_bytes(), before + 100000);
    // The same size gets the same block back; a request under half its size does not take it.
    char *q = static_cast<char *>(kernel_malloc(nullptr, 100000));
    EXPECT_EQ(q, p);
    EXPECT_EQ(kernel_allocator_cached_bytes(), before);
    kernel_free(nullptr, q);
    char *small = static_cast<char *>(kernel_malloc(nullptr, 30000));
    EXPECT_NE(small, p);
    kernel_free(nullptr, small);
    // At the bound, the thread's oldest blocks make room for the newest: of three blocks of a third
    // of the bound (rounded up to whole pages, so only two fit), the last two freed are kept.
    std::vector<void *> big;
    for (int i = 0; i < 3; ++i) big.push_back(kernel_malloc(nullptr, kKernelAllocatorCacheBytes / 3));
    for (void *b : big) {
        ASSERT_NE(b, nullptr);
        kernel_free(nullptr, b);
    }
    EXPECT_LE(kernel_allocator_cached_bytes(), kKernelAllocatorCacheBytes);
    void *again1 = kernel_malloc(nullptr, kKernelAllocatorCacheBytes / 3);
    void *again2 = kernel_malloc(nullptr, kKernelAllocatorCacheBytes / 3);
    EXPECT_TRUE((again1 == big[1] && again2 == big[2]) || (again1 == big[2] && again2 == big[1]));
    kernel_free(nullptr, again1);
    kernel_free(nullptr, again2);
    // A block bigger than the whole bound is never kept, and evicts nothing.
    const size_t kept = kernel_allocator_cached_bytes();
    kernel_free(nullptr, kernel_malloc(nullptr, kKernelAllocatorCacheBytes + 1));
    EXPECT_EQ(kernel_allocator_cached_bytes(), kept);
    EXPECT_EQ(kernel_malloc(nullptr, SIZE_MAX), nullptr);
    EXPECT_EQ(kernel_malloc(nullptr, SIZE_MAX / 2), nullptr);
    kernel_free(nullptr, nullptr);
}

// Many threads allocating, filling and freeing blocks of assorted sizes at once (run under TSan
// and ASan by .ci/sanitizers): every block keeps what its thread wrote, and the blocks a thread
// kept go back to the system when it exits.
TEST(KernelAllocator, ConcurrentUseKeepsBlocksApart) {
    const size_t before = kernel_allocator_cached_bytes();
    std::atomic<int> corrupted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([t, &corrupted] {
            for (int i = 0; i < 300; ++i) {
                const size_t bytes = 1000 + size_t((t * 7919 + i * 104729) % 300000);
                char *p = static_cast<char *>(kernel_malloc(nullptr, bytes));
                if (!p) {
                    ++corrupted;
                    continue;
                }
                std::fill(p, p + bytes, char(t));
                std::this_thread::yield();
                if (std::count(p, p + bytes, char(t)) != std::ptrdiff_t(bytes)) ++corrupted;
                kernel_free(nullptr, p);
            }
        });
    }
    for (auto &th : threads) th.join();
    EXPECT_EQ(corrupted.load(), 0);
    EXPECT_EQ(kernel_allocator_cached_bytes(), before);
}

// A kernel whose pointwise accumulator covers all output channels of 8 rows (256 x 28 x 8 floats,
// on the heap) takes it from convgen's allocator, which keeps it when the kernel frees it.
TEST(KernelAllocator, JitKernelsAllocateThroughIt) {
    const LayerSpec spec = parse_layer_spec("dwconv c1=256 c2=256 h=16 w=28 k=3");
    CompileOptions o;
    o.disk_cache = false;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=8 parallel_rows=8 channels=0 channel_tasks=0 dw_per_task=0 tile_y=8 flat=1");
    const CompiledKernel k = jit_compile(spec, o);
    ASSERT_EQ(k.kernel->info().origin, "jit");
    const size_t before = kernel_allocator_cached_bytes();
    const RawWeights raw = random_raw_weights(spec, 3);
    const Tensor input = random_input(spec, 4);
    const Tensor y = k.kernel->run(input, fold_batchnorm(spec, raw));
    EXPECT_TRUE(within_tolerance(reference_forward(spec, raw, input), y));
    EXPECT_GE(kernel_allocator_cached_bytes(), before + 256 * 28 * 8 * sizeof(float));
}

TEST(Jit, KernelInfoDescribesWhatRan) {
    LayerSpec spec = parse_layer_spec("dwconv c1=4 c2=6 h=7 w=9 k=3");
    CompiledKernel k = jit_compile(spec);
    EXPECT_EQ(k.kernel->info().origin, "jit");
    EXPECT_EQ(k.kernel->info().target, host_target_string());
    EXPECT_EQ(k.kernel->spec().to_string(), spec.to_string());
}

TEST(Jit, ConcurrentCompileAndRunGiveIdenticalResults) {
    // Same and different specs from many threads at once; results must be bit-identical to a
    // single-threaded run.
    std::vector<LayerSpec> specs = {parse_layer_spec("conv c1=6 c2=9 h=11 w=13 k=3 g=3 act=silu"),
                                    parse_layer_spec("dwconv c1=5 c2=7 h=9 w=10 k=3 layout=nhwc"),
                                    parse_layer_spec("conv c1=3 c2=4 h=5 w=5 k=1 act=gelu")};
    std::vector<RawWeights> raws;
    std::vector<Tensor> inputs, serial;
    for (size_t i = 0; i < specs.size(); ++i) {
        raws.push_back(random_raw_weights(specs[i], 10 + i));
        inputs.push_back(random_input(specs[i], 20 + i));
    }
    std::vector<std::thread> threads;
    std::vector<Tensor> results(16);
    std::atomic<int> errors{0}, unstable{0};
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&, t] {
            try {
                const size_t i = t % specs.size();
                auto k = jit_compile(specs[i]);
                const PackedWeights packed = k.kernel->pack(fold_batchnorm(specs[i], raws[i]));
                results[t] = k.kernel->run(inputs[i], packed);
                // Runs racing with the other threads' runs: a kernel whose parallel tasks store
                // the same output twice with different bits shows up here (it did, 1 ulp, when
                // tile_y tasks overlapped).
                for (int again = 0; again < 100; ++again) {
                    if (k.kernel->run(inputs[i], packed).data != results[t].data) unstable++;
                }
            } catch (...) {
                errors++;
            }
        });
    }
    for (auto &th : threads) th.join();
    ASSERT_EQ(errors.load(), 0);
    EXPECT_EQ(unstable.load(), 0) << "runs of one kernel gave different bits";
    for (size_t i = 0; i < specs.size(); ++i) {
        Tensor one = jit_compile(specs[i]).kernel->run(inputs[i], fold_batchnorm(specs[i], raws[i]));
        EXPECT_TRUE(within_tolerance(reference_forward(specs[i], raws[i], inputs[i]), one));
        for (int t = static_cast<int>(i); t < 16; t += static_cast<int>(specs.size())) {
            EXPECT_EQ(results[t].data, one.data) << "thread " << t;
        }
    }
}

TEST(Jit, InvalidTargetIsAClearError) {
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=4 h=4 w=4 k=3");
    CompileOptions o;
    o.target = "x86-64-linux-nonsense";
    try {
        jit_compile(spec, o);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("not a valid Halide target"), std::string::npos) << e.what();
    }
}

TEST(Jit, ForeignTargetIsRefusedNotRun) {
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=4 h=4 w=4 k=3");
    CompileOptions o;
    o.target = "arm-64-linux";
    try {
        jit_compile(spec, o);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("cannot run on this host"), std::string::npos) << e.what();
    }
}

TEST(Jit, WrongInputShapeIsAClearError) {
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=4 h=6 w=6 k=3");
    auto k = jit_compile(spec);
    Tensor bad({1, 4, 6, 5});
    try {
        k.kernel->run(bad, fold_batchnorm(spec, random_raw_weights(spec, 1)));
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("[1, 4, 6, 5]"), std::string::npos) << e.what();
    }
}

TEST(Jit, WrongWeightSizeIsAClearError) {
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=4 h=6 w=6 k=3");
    auto k = jit_compile(spec);
    FoldedWeights w = fold_batchnorm(spec, random_raw_weights(spec, 1));
    w.weight.pop_back();
    EXPECT_THROW(k.kernel->run(random_input(spec, 1), w), Error);
}

TEST(Jit, WeightLayoutFollowsTheScheduleAndIsChecked) {
    // NCHW along x: the register tile's output channels are packed side by side.
    const LayerSpec spec = parse_layer_spec("conv c1=6 c2=10 h=9 w=20 k=3 g=2");
    ScheduleParams p;
    p.tile_rows = 4;
    EXPECT_EQ(weight_layout_for(spec, p), WeightLayout::output_blocked(4));
    p.tile_rows = 16;  // at most c2
    EXPECT_EQ(weight_layout_for(spec, p), WeightLayout::output_blocked(10));
    p.tile_rows = 1;
    EXPECT_EQ(weight_layout_for(spec, p), WeightLayout::PyTorch);
    ScheduleParams channels;
    channels.vectorize_channels = 1;
    EXPECT_EQ(weight_layout_for(parse_layer_spec("conv c1=6 c2=10 h=9 w=20 k=3"), channels), WeightLayout::ChannelsInnermost);
    // Along channels, blocks of the register tile's channels when the tile divides c2.
    channels.vector_width = 8;
    channels.tile_vectors = 2;
    const LayerSpec c32 = parse_layer_spec("dwconv c1=6 c2=32 h=9 w=20 k=3");
    EXPECT_EQ(weight_layout_for(c32, channels), WeightLayout::output_blocked(16));
    channels.tile_vectors = 4;  // one tile holds all channels
    EXPECT_EQ(weight_layout_for(c32, channels), WeightLayout::ChannelsInnermost);
    channels.tile_vectors = 3;  // 24 does not divide 32
    EXPECT_EQ(weight_layout_for(c32, channels), WeightLayout::ChannelsInnermost);
    // Grouped convs along channels only when a group holds whole vectors, with a tile that
    // divides the group's vectors (6 vectors of 8 per group: 4 becomes 3), so no vector of
    // output channels straddles two groups.
    const LayerSpec g2 = parse_layer_spec("conv c1=16 c2=96 h=9 w=20 k=3 g=2");
    channels.tile_vectors = 4;
    EXPECT_TRUE(along_channels(g2, channels));
    EXPECT_EQ(output_channel_tile(g2, channels), 24);
    EXPECT_EQ(weight_layout_for(g2, channels), WeightLayout::output_blocked(24));
    channels.tile_vectors = 5;
    EXPECT_EQ(output_channel_tile(g2, channels), 24);
    channels.tile_vectors = 2;
    EXPECT_EQ(output_channel_tile(g2, channels), 16);
    const LayerSpec g6 = parse_layer_spec("conv c1=12 c2=12 h=6 w=7 k=3 g=2");
    EXPECT_FALSE(channel_vectorization_supported(g6, 8));
    EXPECT_TRUE(channel_vectorization_supported(g6, 2));
    EXPECT_FALSE(along_channels(g6, channels));
    channels.tile_rows = 3;
    EXPECT_EQ(weight_layout_for(g6, channels), WeightLayout::output_blocked(3));

    CompileOptions o;
    o.has_schedule = true;
    o.schedule.tile_rows = 4;
    auto k = jit_compile(spec, o);
    EXPECT_EQ(k.kernel->info().weight_layout, WeightLayout::output_blocked(4));
    EXPECT_NE(explain(spec, o).find("output_blocked4 layout"), std::string::npos);
    const FoldedWeights folded = fold_batchnorm(spec, random_raw_weights(spec, 5));
    const Tensor input = random_input(spec, 6);
    double err = 0, limit = 0;
    EXPECT_TRUE(within_tolerance(reference_forward(spec, random_raw_weights(spec, 5), input), k.kernel->run(input, k.kernel->pack(folded)),
                                 &err, &limit))
        << err << " > " << limit;
    // Weights packed for another layout are refused with the layout named.
    try {
        k.kernel->run(input, pack_weights(spec, folded, WeightLayout::PyTorch));
        ADD_FAILURE() << "PyTorch-ordered weights were accepted by an output_blocked4 kernel";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("output_blocked4"), std::string::npos) << e.what();
    }
}

TEST(Jit, ExplainShowsFusedDepthwiseInsideTheRowLoop) {
    std::string text = explain(parse_layer_spec("dwconv c1=32 c2=64 h=16 w=16 k=3"));
    EXPECT_NE(text.find("spec:     dwconv n=1 c1=32"), std::string::npos);
    EXPECT_NE(text.find("target:"), std::string::npos);
    EXPECT_NE(text.find("schedule:"), std::string::npos);
    // The depthwise stage is produced inside the parallel loop over output rows, not at root.
    const size_t par = text.find("parallel");
    const size_t dw = text.find("produce depthwise");
    ASSERT_NE(par, std::string::npos) << text;
    ASSERT_NE(dw, std::string::npos) << text;
    EXPECT_LT(par, dw) << text;
}

// flat=1 must change the loop nest where it applies (the pointwise accumulator's pixels as one
// fused run inside the row tile), and is not a template where the operand rows are not contiguous.
TEST(Jit, FlatRowsFuseThePixelRunWhereSupported) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=8 tile_vectors=2 tile_rows=4 parallel_rows=4 channels=0 channel_tasks=0 dw_per_task=0 tile_y=2 flat=1");
    for (const char *s : {"dwconv c1=16 c2=24 h=14 w=14 k=3", "conv c1=16 c2=24 h=14 w=14 k=1 p=0"}) {
        const std::string text = explain(parse_layer_spec(s), o);
        EXPECT_NE(text.find("x.f.fo"), std::string::npos) << s << "\n" << text;
    }
    const std::string k3 = explain(parse_layer_spec("conv c1=16 c2=24 h=14 w=14 k=3"), o);
    EXPECT_EQ(k3.find("x.f.fo"), std::string::npos) << k3;
    o.schedule.flat_rows = 0;
    const std::string plain = explain(parse_layer_spec("dwconv c1=16 c2=24 h=14 w=14 k=3"), o);
    EXPECT_EQ(plain.find("x.f.fo"), std::string::npos) << plain;
}

// channel_blocks=2 makes each parallel task one block of output channels of one row block (twice
// the tasks), and rows of 14 at vec=16 accumulate in whole 16-lane vectors (the output stores 14);
// rows of half a vector or less keep their own width.
TEST(Jit, ChannelBlocksAndShortRowsShapeTheLoopNest) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=1 tile_rows=4 parallel_rows=7 channels=0 channel_tasks=0 dw_per_task=1");
    const LayerSpec spec = parse_layer_spec("dwconv c1=64 c2=64 h=14 w=14 k=3");
    const std::string rows_only = explain(spec, o);
    EXPECT_NE(rows_only.find("parallel y.yo.t in [0, 1]"), std::string::npos) << rows_only;
    EXPECT_NE(rows_only.find("vectorized x.x_vi in [0, 15]"), std::string::npos) << rows_only;
    EXPECT_NE(rows_only.find("vectorized x.xi.xi_vi in [0, 13]"), std::string::npos) << rows_only;
    o.schedule.channel_blocks = 2;
    const std::string blocks = explain(spec, o);
    EXPECT_NE(blocks.find("parallel y.yo.yb.t in [0, 3]"), std::string::npos) << blocks;
    o.schedule.channel_blocks = 1;
    const std::string seven = explain(parse_layer_spec("dwconv c1=64 c2=64 h=7 w=7 k=3"), o);
    EXPECT_EQ(seven.find("vectorized x.x_vi in [0, 15]"), std::string::npos) << seven;
    EXPECT_NE(seven.find("vectorized x.x_vi in [0, 6]"), std::string::npos) << seven;
}

// A strided conv's zero-padded rows are copied in vectors of which at least three fit a row where
// the row allows: the first and last straddle the padding and the ones between are plain loads.
// 30-float rows (28 + padding) at vec=16 take 8 lanes (two 16-lane vectors would both be gathers),
// 60-float rows keep 16. Where the lanes (or half of 16) divide the image's width, the vectors
// start at multiples of the lanes from column 0, none straddling: 56 columns (of which a stride-2
// 3x3 reads -1 to 55) take 8 vectors of 8, one of padding and seven of the image; 48 columns take
// 4 vectors of 16.
TEST(Jit, PaddedRowsHoldAtLeastThreeVectors) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=1 tile_rows=8 parallel_rows=2 tile_y=2");
    // The extents of the copy's loop over vectors and of its vector: "[0, 3] [0, 15]".
    auto padded_loop = [&](const char *spec) {
        const std::string text = explain(parse_layer_spec(spec), o);
        const size_t produce = text.find("produce padded:");
        EXPECT_NE(produce, std::string::npos) << text;
        if (produce == std::string::npos) return std::string();
        const size_t loop = text.find("for x.x", produce), v = text.find("vectorized", produce);
        EXPECT_NE(loop, std::string::npos) << text;
        EXPECT_NE(v, std::string::npos) << text;
        if (loop == std::string::npos || v == std::string::npos || v < loop) return std::string();
        auto extent = [&](size_t line) {
            const size_t open = text.find('[', line), close = text.find(']', line);
            return open < close && close != std::string::npos ? text.substr(open, close - open + 1) : std::string("?");
        };
        return extent(loop) + " " + extent(v);
    };
    EXPECT_EQ(padded_loop("conv c1=32 c2=32 h=28 w=28 k=3 s=2 g=2"), "[0, 3] [0, 7]");
    EXPECT_EQ(padded_loop("conv c1=32 c2=32 h=58 w=58 k=3 s=2 g=2"), "[0, 3] [0, 15]");
    EXPECT_EQ(padded_loop("conv c1=32 c2=32 h=56 w=56 k=3 s=2 g=2"), "[0, 7] [0, 7]");
    EXPECT_EQ(padded_loop("conv c1=32 c2=32 h=48 w=48 k=3 s=2 g=2"), "[0, 3] [0, 15]");
    // A 5x5 kernel's reads of 48 columns, -2 to 48, in vectors from -16 (five) rather than from -2 (four).
    EXPECT_EQ(padded_loop("conv c1=32 c2=32 h=48 w=48 k=5 p=2 s=2 g=2"), "[0, 4] [0, 15]");
}

// `explain` of a spec under the given schedule text.
std::string explain_with(const char *spec, const std::string &schedule) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse(schedule);
    return explain(parse_layer_spec(spec), o);
}

// A grouped conv along channels with channel_blocks=2: one parallel task per group and row block
// (its two channel tiles inside the task's rows); more blocks than tiles give one task per tile.
TEST(Jit, ChannelBlocksSplitGroupedConvTasksByGroup) {
    const char *grouped = "conv c1=32 c2=128 h=12 w=12 k=3 g=2";  // 4 tiles of 32 channels
    const std::string along = "vec=16 tile_vectors=2 tile_rows=6 parallel_rows=6 channels=1";
    const std::string blocks = explain_with(grouped, along + " channel_blocks=2");
    EXPECT_NE(blocks.find("parallel y.yo.yb.t in [0, 3]"), std::string::npos) << blocks;
    const size_t tiles = blocks.find("for c.co"), rows = blocks.find("for y.yi");
    ASSERT_NE(tiles, std::string::npos) << blocks;
    ASSERT_NE(rows, std::string::npos) << blocks;
    EXPECT_LT(rows, tiles) << blocks;
    const std::string rows_only = explain_with(grouped, along);
    EXPECT_NE(rows_only.find("parallel y.yo.t in [0, 1]"), std::string::npos) << rows_only;
    const std::string capped = explain_with(grouped, along + " channel_blocks=16");
    EXPECT_NE(capped.find("parallel y.yo.yb.t in [0, 7]"), std::string::npos) << capped;
}

// stream=1: the staged rows slide along the task's row tiles (stored per task, computed per row
// tile), or with the depthwise per task are staged per depthwise channel; 0 stages a whole task
// first. The knob takes 0 or 1.
TEST(Jit, StreamInputStagesRowsAsTheyAreConsumed) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=4 parallel_rows=8 channels=0 tile_y=2 stream=1");
    const LayerSpec spec = parse_layer_spec("dwconv c1=16 c2=24 h=16 w=32 k=3");
    const std::string sliding = explain(spec, o);
    const size_t store = sliding.find("store staged:"), produce = sliding.find("produce staged:");
    ASSERT_NE(store, std::string::npos) << sliding;
    ASSERT_NE(produce, std::string::npos) << sliding;
    EXPECT_NE(sliding.substr(store, produce - store).find("for y.yi"), std::string::npos) << sliding;
    o.schedule.stream_input = 0;
    const std::string whole = explain(spec, o);
    EXPECT_EQ(whole.find("store staged:"), std::string::npos) << whole;
    EXPECT_LT(whole.find("produce staged:"), whole.find("produce depthwise:")) << whole;
    o.schedule.depthwise_per_task = 1;
    o.schedule.stream_input = 1;
    const std::string per_channel = explain(spec, o);
    // The depthwise's channel loop encloses the staging.
    const size_t dw = per_channel.find("produce depthwise:"), staged = per_channel.find("produce staged:");
    ASSERT_NE(dw, std::string::npos) << per_channel;
    ASSERT_NE(staged, std::string::npos) << per_channel;
    EXPECT_LT(dw, staged) << per_channel;
    EXPECT_NE(per_channel.substr(dw, staged - dw).find("for c in"), std::string::npos) << per_channel;
    EXPECT_THROW(ScheduleParams::parse("vec=16 stream=2"), Error);
    EXPECT_NE(ScheduleParams::parse("vec=16 stream=1").to_string().find("stream=1"), std::string::npos);
}

// dw_rows: the depthwise register tile holds that many output rows (unrolled inside each tap);
// where the depthwise is computed one row at a time the knob is ignored, and a tile of more rows
// than one depthwise computation holds is clamped to them. The knob takes 1..8.
TEST(Jit, DepthwiseRowsTileTheDepthwiseRows) {
    CompileOptions o;
    o.has_schedule = true;
    const LayerSpec spec = parse_layer_spec("dwconv c1=16 c2=24 h=16 w=32 k=5 act=silu");
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=1 tile_rows=4 parallel_rows=6 channels=1 dw_per_task=1 dw_rows=3");
    const std::string tiled = explain(spec, o);
    const size_t dw = tiled.find("produce depthwise:"), consume = tiled.find("consume dw_acc:");
    ASSERT_NE(dw, std::string::npos) << tiled;
    ASSERT_NE(consume, std::string::npos) << tiled;
    EXPECT_NE(tiled.find("unrolled y.dyi in [0, 2]", consume), std::string::npos) << tiled;
    EXPECT_NE(tiled.substr(dw, consume - dw).find("unrolled y:"), std::string::npos) << tiled;
    EXPECT_NE(o.schedule.to_string().find("dw_rows=3"), std::string::npos) << o.schedule.to_string();
    // One row a computation (along channels, the depthwise per row): no row tile.
    ScheduleParams per_row = o.schedule;
    per_row.depthwise_per_task = 0;
    EXPECT_FALSE(depthwise_rows_apply(spec, per_row));
    EXPECT_EQ(adapt_to_spec(per_row, spec).depthwise_rows, 1);
    o.schedule = per_row;
    EXPECT_EQ(explain(spec, o).find("y.dyi"), std::string::npos);
    // Along x the depthwise is per row tile of tile_y rows: dw_rows up to tile_y.
    ScheduleParams along_x = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=4 parallel_rows=8 tile_y=2 dw_rows=8");
    EXPECT_EQ(depthwise_rows_at_once(spec, along_x), 2);
    EXPECT_EQ(adapt_to_spec(along_x, spec).depthwise_rows, 2);
    EXPECT_THROW(ScheduleParams::parse("vec=16 dw_rows=0"), Error);
    EXPECT_THROW(ScheduleParams::parse("vec=16 dw_rows=9"), Error);
    EXPECT_EQ(ScheduleParams::parse("vec=16 dw_rows=1").to_string().find("dw_rows"), std::string::npos);
}

// transpose=1: the channel-vector tile is activated, deinterleaved log2(16) = 4 times in
// registers and stored as rows of its 8 pixels; without it the output stores channel vectors.
// The knob takes 0..1 and is omitted at 0.
TEST(Jit, TransposeStoreDeinterleavesTheTileBeforeStoringRows) {
    CompileOptions o;
    o.has_schedule = true;
    const LayerSpec spec = parse_layer_spec("conv c1=8 c2=32 h=9 w=16 k=3 act=silu");
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=2 tile_rows=8 parallel_rows=3 channels=1 transpose=1");
    const std::string transposed = explain(spec, o);
    const size_t tile = transposed.find("produce activated_tile:"), last = transposed.find("produce deinterleaved4:");
    ASSERT_NE(tile, std::string::npos) << transposed;
    ASSERT_NE(last, std::string::npos) << transposed;
    EXPECT_EQ(transposed.find("deinterleaved5"), std::string::npos) << transposed;
    EXPECT_NE(transposed.find("vectorized x.xi.xi_vi in [0, 7]", last), std::string::npos) << transposed;
    o.schedule.transpose_store = 0;
    const std::string scalar = explain(spec, o);
    EXPECT_EQ(scalar.find("activated_tile"), std::string::npos) << scalar;
    EXPECT_NE(scalar.find("vectorized c.ci.ci_vi in [0, 15]"), std::string::npos) << scalar;
    EXPECT_THROW(ScheduleParams::parse("vec=16 transpose=2"), Error);
    EXPECT_EQ(ScheduleParams::parse("vec=16 transpose=0").to_string().find("transpose"), std::string::npos);
}

TEST(Jit, StrideOneConvsCopyThePaddedRowsInAlignedVectors) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=8 tile_vectors=2 tile_rows=1 parallel_rows=2");
    // Columns -1..32 of a 32-wide image: aligned to 8 lanes from column 0 they are the 6 vectors
    // of -8..39 (the first and last wholly padding); unaligned, 5 vectors from -1 whose last
    // straddles the image's end.
    const std::string conv = explain(parse_layer_spec("conv c1=16 c2=16 h=10 w=32 k=3 g=16 act=relu"), o);
    EXPECT_NE(conv.find("for xq.xq in [0, 5]:"), std::string::npos) << conv;
    o.schedule.vectorize_channels = 1;  // along channels the staged rows are read by broadcasts: aligned too
    const std::string dense = explain(parse_layer_spec("conv c1=16 c2=16 h=10 w=32 k=3 act=relu"), o);
    EXPECT_NE(dense.find("for xq.xq in [0, 5]:"), std::string::npos) << dense;
}

TEST(Jit, FlatRowsOfA1x1ConvReadTheStagedRowsAsVectors) {
    // Flat rows read the staged rows at x + y * w: rows copied into aligned 32-float rows (28 at 8
    // lanes rounded up) made that read a gather, one vinsertps per float (shufflenet_g3's 1-thread
    // record ran 6x slower).
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=16 tile_vectors=1 tile_rows=4 parallel_rows=4 tile_y=4 flat=1");
    o.target = "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41";
    const std::string path = ::testing::TempDir() + "flat_rows_1x1.s";
    write_assembly(parse_layer_spec("conv c1=16 c2=16 h=10 w=28 k=1 p=0 g=2 act=relu"), o, path);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    ASSERT_GT(text.str().size(), 1000u);
    EXPECT_EQ(text.str().find("vinsertps"), std::string::npos);
    std::remove(path.c_str());
}

TEST(Jit, GuardedRowTasksOfABatchNestInsideAParallelImageLoop) {
    CompileOptions o;
    o.has_schedule = true;
    o.schedule = ScheduleParams::parse("vec=8 tile_vectors=1 tile_rows=3 parallel_rows=4 tile_y=2");
    // 13 rows in tasks of 4 rows: the last task is guarded, so a batch's images get their own loop.
    for (const char *text : {"dwconv n=2 c1=11 c2=21 h=13 w=27 k=3", "conv n=3 c1=8 c2=8 h=13 w=20 k=3"}) {
        const std::string nest = explain(parse_layer_spec(text), o);
        const size_t images = nest.find("parallel n in"), rows = nest.find("parallel y.yo.t in");
        ASSERT_NE(images, std::string::npos) << text << "\n" << nest;
        ASSERT_NE(rows, std::string::npos) << text << "\n" << nest;
        EXPECT_LT(images, rows) << text << "\n" << nest;
    }
    // Tasks that divide the image, or one image: the row blocks and images are one fused loop.
    for (const char *text : {"dwconv n=2 c1=11 c2=21 h=12 w=27 k=3", "dwconv n=1 c1=11 c2=21 h=13 w=27 k=3"}) {
        const std::string nest = explain(parse_layer_spec(text), o);
        EXPECT_EQ(nest.find("parallel n in"), std::string::npos) << text << "\n" << nest;
        EXPECT_NE(nest.find("parallel y.yo.t in"), std::string::npos) << text << "\n" << nest;
    }
}

TEST(Jit, ExplainWorksForForeignTargets) {
    CompileOptions arm;
    arm.target = "arm-64-linux";
    std::string text = explain(parse_layer_spec("conv c1=8 c2=8 h=8 w=8 k=3"), arm);
    EXPECT_NE(text.find("neon"), std::string::npos) << text;
}

// ARM64 code cannot run here, but it must compile and its inner loops must be NEON FMAs.
class ArmAssembly : public ::testing::TestWithParam<const char *> {};

TEST_P(ArmAssembly, InnerLoopsUseNeonFma) {
    CompileOptions o;
    o.target = "arm-64-linux";
    const std::string path = ::testing::TempDir() + "/convgen_arm_" + std::to_string(::getpid()) + ".s";
    write_assembly(parse_layer_spec(GetParam()), o, path);
    std::ifstream f(path);
    std::stringstream text;
    text << f.rdbuf();
    std::remove(path.c_str());
    const std::string assembly = text.str();
    const std::regex fmla(R"(fmla\s+v[0-9]+\.4s)");
    const auto count = std::distance(std::sregex_iterator(assembly.begin(), assembly.end(), fmla), std::sregex_iterator());
    EXPECT_GE(count, 4) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, ArmAssembly,
                         ::testing::Values("conv c1=64 c2=64 h=20 w=20 k=3", "conv c1=32 c2=32 h=20 w=20 k=3 g=8 layout=nhwc",
                                           "conv c1=16 c2=16 h=20 w=20 k=3 g=16 s=2", "dwconv c1=16 c2=24 h=20 w=20 k=3",
                                           "dwconv c1=16 c2=24 h=20 w=20 k=5 layout=nhwc act=silu"));

TEST(Jit, ThreadCountCanBeSet) {
    EXPECT_THROW(set_num_threads(-1), Error);
    set_num_threads(1);
    LayerSpec spec = parse_layer_spec("conv c1=4 c2=4 h=6 w=6 k=3");
    auto raw = random_raw_weights(spec, 3);
    auto in = random_input(spec, 4);
    Tensor one = jit_compile(spec).kernel->run(in, fold_batchnorm(spec, raw));
    set_num_threads(2);
    Tensor two = jit_compile(spec).kernel->run(in, fold_batchnorm(spec, raw));
    EXPECT_EQ(one.data, two.data);
    set_num_threads(0);
}

}  // namespace
}  // namespace convgen
