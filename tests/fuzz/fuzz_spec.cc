// libFuzzer target: the layer spec parser (dsl/layer_spec.h), one line and whole suite files.
// A spec that parses must round-trip through its normalised form (with and without the name),
// and its derived sizes and the heuristic schedule must be computable without overflow (UBSan).
#include <cstddef>
#include <cstdint>
#include <string>

#include "dsl/layer_spec.h"
#include "fuzz_common.h"
#include "runtime/errors.h"
#include "schedules/schedule_params.h"

namespace {

void check_parsed(const convgen::LayerSpec &spec) {
    const std::string normal = spec.to_string();
    const convgen::LayerSpec again = convgen::parse_layer_spec(normal);  // must not throw
    FUZZ_CHECK(again.to_string() == normal);
    const convgen::LayerSpec named = convgen::parse_layer_spec(spec.to_string_with_name());
    FUZZ_CHECK(named == spec && named.name == spec.name);
    FUZZ_CHECK(spec.out_h() >= 1 && spec.out_w() >= 1);
    FUZZ_CHECK(spec.macs() > 0);
    FUZZ_CHECK(spec.input_shape().size() == 4 && spec.output_shape().size() == 4);
    for (convgen::IsaFamily isa : {convgen::IsaFamily::Generic, convgen::IsaFamily::AVX2, convgen::IsaFamily::AVX512,
                                   convgen::IsaFamily::NEON}) {
        for (bool split_wide_fma : {false, true}) {
            const convgen::ScheduleParams p = convgen::heuristic_schedule(spec, isa, split_wide_fma);
            FUZZ_CHECK(convgen::ScheduleParams::parse(p.to_string()) == p);
            (void)convgen::weight_layout_for(spec, p);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    try {
        check_parsed(convgen::parse_layer_spec(text));
    } catch (const convgen::Error &) {
    }
    try {
        for (const convgen::LayerSpec &spec : convgen::parse_suite_text(text, "<fuzz>")) check_parsed(spec);
    } catch (const convgen::Error &) {
    }
    return 0;
}
