// Randomized differential testing: seeded random VALID LayerSpecs (and, for half of the cases,
// random ScheduleParams) compiled with the JIT and compared with the double-precision reference.
//
// The run is split into kShards TEST_P shards (case i belongs to shard i % kShards) so that ctest
// can run them in parallel. Environment:
//   CONVGEN_RANDOM_COUNT  total number of cases over all shards (default 300: a CI-sized run)
//   CONVGEN_RANDOM_SEED   base seed (default 20240611); case i is generated from (seed, i) alone
//   CONVGEN_RANDOM_CASE   optional: run only this case index (to reproduce one failure)
//
// Thousands on demand:
//   CONVGEN_RANDOM_COUNT=10000 CONVGEN_RANDOM_SEED=123 build/bin/test_random_specs
//   build/bin/test_random_specs --count 10000 --seed 123          (the same, as flags)
// Reproduce one failure (the message prints the exact command):
//   CONVGEN_RANDOM_COUNT=10000 CONVGEN_RANDOM_SEED=123 CONVGEN_RANDOM_CASE=4711 build/bin/test_random_specs
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/jit.h"
#include "runtime/errors.h"
#include "runtime/reference.h"

namespace convgen {
namespace {

constexpr int kShards = 8;

long env_long(const char *name, long fallback) {
    const char *v = std::getenv(name);
    if (!v || !*v) return fallback;
    char *end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (end == v || *end != '\0') {
        ADD_FAILURE() << name << "='" << v << "' is not an integer";
        return fallback;
    }
    return x;
}

long random_count() { return env_long("CONVGEN_RANDOM_COUNT", 300); }
unsigned random_seed() { return static_cast<unsigned>(env_long("CONVGEN_RANDOM_SEED", 20240611)); }

int uniform_int(std::mt19937 &gen, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
bool coin(std::mt19937 &gen) { return uniform_int(gen, 0, 1) == 1; }

// Channel counts 1..40, half of the time a prime (odd counts that no vector width divides).
int random_channels(std::mt19937 &gen) {
    static const int primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
    if (coin(gen)) return primes[uniform_int(gen, 0, int(sizeof(primes) / sizeof(primes[0])) - 1)];
    return uniform_int(gen, 1, 40);
}

// Spatial sizes 1..23, mostly odd.
int random_size(std::mt19937 &gen) {
    const int v = uniform_int(gen, 1, 23);
    return (v % 2 == 0 && uniform_int(gen, 0, 3) != 0) ? v - 1 : v;
}

std::vector<int> divisors_of_both(int a, int b) {
    std::vector<int> d;
    for (int g = 1; g <= std::min(a, b); ++g)
        if (a % g == 0 && b % g == 0) d.push_back(g);
    return d;
}

Activation random_activation(std::mt19937 &gen) {
    const auto &acts = all_activations();
    return acts[static_cast<size_t>(uniform_int(gen, 0, int(acts.size()) - 1))];
}

// One random spec that passes convgen::validate (regenerated until it does).
LayerSpec random_spec(std::mt19937 &gen) {
    static const int kernels[] = {1, 2, 3, 4, 5, 7};
    for (;;) {
        LayerSpec s;
        s.kind = coin(gen) ? LayerKind::Conv : LayerKind::DepthwisePointwise;
        s.layout = coin(gen) ? Layout::NCHW : Layout::NHWC;
        s.n = uniform_int(gen, 1, 3);
        s.h = random_size(gen);
        s.w = random_size(gen);
        s.k = kernels[uniform_int(gen, 0, 5)];
        s.s = uniform_int(gen, 1, 3);
        s.p = uniform_int(gen, 0, s.k);
        s.c1 = random_channels(gen);
        s.c2 = random_channels(gen);
        if (s.kind == LayerKind::Conv) {
            const int shape = uniform_int(gen, 0, 2);  // 0 dense, 1 grouped, 2 depthwise
            if (shape == 2) {
                s.c2 = s.c1;
                s.g = s.c1;
            } else if (shape == 1) {
                const std::vector<int> d = divisors_of_both(s.c1, s.c2);
                s.g = d[static_cast<size_t>(uniform_int(gen, 0, int(d.size()) - 1))];
            }
        }
        s.act = random_activation(gen);
        s.bn = coin(gen);
        if (s.kind == LayerKind::DepthwisePointwise) {
            do s.dw_act = random_activation(gen);
            while (s.dw_act == s.act);
            s.dw_bn = coin(gen);
        }
        // Leaky slope: mostly small positive, sometimes 0, negative or above 1.
        s.alpha = std::uniform_real_distribution<float>(-0.5f, 1.5f)(gen);
        if (coin(gen)) s.alpha = std::uniform_real_distribution<float>(0.0f, 0.3f)(gen);
        s.eps = std::pow(10.0f, std::uniform_real_distribution<float>(-6.0f, -1.0f)(gen));
        try {
            validate(s);
        } catch (const Error &) {
            continue;  // e.g. kernel larger than the padded input
        }
        return s;
    }
}

ScheduleParams random_schedule(std::mt19937 &gen) {
    static const int widths[] = {4, 8, 16};
    ScheduleParams p;
    p.vector_width = widths[uniform_int(gen, 0, 2)];
    p.tile_vectors = uniform_int(gen, 1, 4);
    p.tile_rows = uniform_int(gen, 1, 6);
    p.parallel_rows = uniform_int(gen, 1, 4);
    p.vectorize_channels = uniform_int(gen, 0, 1);
    p.parallel_channels = uniform_int(gen, 0, 1);
    p.depthwise_per_task = uniform_int(gen, 0, 1);
    p.tile_y = uniform_int(gen, 1, 3);
    p.flat_rows = uniform_int(gen, 0, 1);
    return p;
}

struct RandomCase {
    LayerSpec spec;
    bool has_schedule = false;
    ScheduleParams schedule;
    unsigned data_seed = 0;
};

// Case `index` depends only on (seed, index), so any case can be regenerated on its own.
RandomCase make_case(unsigned seed, long index) {
    std::seed_seq seq{seed, static_cast<unsigned>(index), static_cast<unsigned>(static_cast<unsigned long>(index) >> 32)};
    std::mt19937 gen(seq);
    RandomCase c;
    c.spec = random_spec(gen);
    c.has_schedule = coin(gen);
    if (c.has_schedule) c.schedule = random_schedule(gen);
    c.data_seed = static_cast<unsigned>(gen());
    return c;
}

std::string describe(const RandomCase &c, unsigned seed, long index, long count, const std::string &used_schedule) {
    std::ostringstream os;
    os << "case " << index << " of CONVGEN_RANDOM_SEED=" << seed << " CONVGEN_RANDOM_COUNT=" << count << "\n  spec:     "
       << c.spec.to_string() << "\n  schedule: " << (c.has_schedule ? c.schedule.to_string() + " (random)" : "heuristic")
       << (used_schedule.empty() ? "" : " -> kernel schedule " + used_schedule) << "\n  reproduce: CONVGEN_RANDOM_COUNT=" << count
       << " CONVGEN_RANDOM_SEED=" << seed << " CONVGEN_RANDOM_CASE=" << index << " build/bin/test_random_specs";
    return os.str();
}

void run_case(unsigned seed, long index, long count) {
    const RandomCase c = make_case(seed, index);
    std::string used_schedule;
    try {
        CompileOptions options;
        options.has_schedule = c.has_schedule;
        options.schedule = c.schedule;
        const RawWeights raw = random_raw_weights(c.spec, c.data_seed);
        Tensor input = random_input(c.spec, c.data_seed + 1);
        // Scaled so that pre-activations reach the saturating parts of every activation.
        for (float &v : input.data) v *= 3.0f;
        const CompiledKernel compiled = jit_compile(c.spec, options);
        used_schedule = compiled.kernel->info().schedule;
        const PackedWeights packed = compiled.kernel->pack(fold_batchnorm(c.spec, raw));
        const Tensor actual = compiled.kernel->run(input, packed);
        const Tensor expected = reference_forward(c.spec, raw, input);
        ASSERT_EQ(actual.shape, expected.shape) << describe(c, seed, index, count, used_schedule);
        double err = 0, limit = 0;
        EXPECT_TRUE(within_tolerance(expected, actual, &err, &limit))
            << "max_abs_err " << err << " > " << limit << "\n"
            << describe(c, seed, index, count, used_schedule);
    } catch (const std::exception &e) {
        ADD_FAILURE() << "threw: " << e.what() << "\n" << describe(c, seed, index, count, used_schedule);
    }
}

class RandomSpecs : public ::testing::TestWithParam<int> {};

TEST_P(RandomSpecs, MatchReference) {
    const int shard = GetParam();
    const long count = random_count();
    const unsigned seed = random_seed();
    const long only = env_long("CONVGEN_RANDOM_CASE", -1);
    long ran = 0;
    for (long i = shard; i < count; i += kShards) {
        if (only >= 0 && i != only) continue;
        run_case(seed, i, count);
        ++ran;
        if (::testing::Test::HasFatalFailure()) return;
    }
    RecordProperty("cases", static_cast<int>(ran));
}

INSTANTIATE_TEST_SUITE_P(Shards, RandomSpecs, ::testing::Range(0, kShards),
                         [](const ::testing::TestParamInfo<int> &info) { return "shard" + std::to_string(info.param); });

// The generator itself: deterministic per (seed, index), always valid, and covering the space.
TEST(RandomSpecGenerator, DeterministicValidAndCovering) {
    bool conv = false, dw = false, nchw = false, nhwc = false, grouped = false, depthwise = false, batch = false;
    bool sched = false, heuristic = false;
    std::vector<bool> acts(all_activations().size(), false);
    for (long i = 0; i < 2000; ++i) {
        const RandomCase a = make_case(99, i), b = make_case(99, i);
        ASSERT_EQ(a.spec.to_string(), b.spec.to_string());
        ASSERT_EQ(a.has_schedule, b.has_schedule);
        ASSERT_EQ(a.schedule.to_string(), b.schedule.to_string());
        ASSERT_NO_THROW(validate(a.spec)) << a.spec.to_string();
        // The normalised form parses back to the same layer.
        ASSERT_EQ(parse_layer_spec(a.spec.to_string()).to_string(), a.spec.to_string());
        const LayerSpec &s = a.spec;
        conv |= s.kind == LayerKind::Conv;
        dw |= s.kind == LayerKind::DepthwisePointwise;
        nchw |= s.layout == Layout::NCHW;
        nhwc |= s.layout == Layout::NHWC;
        grouped |= s.kind == LayerKind::Conv && s.g > 1 && !s.is_depthwise_conv();
        depthwise |= s.is_depthwise_conv() && s.c1 > 1;
        batch |= s.n > 1;
        sched |= a.has_schedule;
        heuristic |= !a.has_schedule;
        for (size_t j = 0; j < acts.size(); ++j) acts[j] = acts[j] || all_activations()[j] == s.act;
        if (s.kind == LayerKind::DepthwisePointwise) {
            EXPECT_NE(s.act, s.dw_act);
        }
    }
    EXPECT_TRUE(conv && dw && nchw && nhwc && grouped && depthwise && batch && sched && heuristic);
    for (size_t j = 0; j < acts.size(); ++j) EXPECT_TRUE(acts[j]) << activation_name(all_activations()[j]);
}

}  // namespace
}  // namespace convgen

// Own main (instead of gtest_main) for the on-demand flags: --count N --seed S [--case I] are the
// same as CONVGEN_RANDOM_COUNT / _SEED / _CASE (the flags win); every other argument goes to
// GoogleTest (e.g. --gtest_filter=*shard0*:*shard1* to split a long run across processes).
int main(int argc, char **argv) {
    std::vector<char *> rest = {argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const char *var = a == "--count" ? "CONVGEN_RANDOM_COUNT" : a == "--seed" ? "CONVGEN_RANDOM_SEED" : a == "--case" ? "CONVGEN_RANDOM_CASE" : nullptr;
        if (var) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "test_random_specs: %s needs a value\n", a.c_str());
                return 2;
            }
            ::setenv(var, argv[++i], 1);
        } else {
            rest.push_back(argv[i]);
        }
    }
    // argv must stay null-terminated: GoogleTest shifts argv[argc] down when it removes its flags.
    int rest_argc = static_cast<int>(rest.size());
    rest.push_back(nullptr);
    ::testing::InitGoogleTest(&rest_argc, rest.data());
    return RUN_ALL_TESTS();
}
