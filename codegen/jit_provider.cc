// Registers the JIT with the runtime's load_kernel(), so apps that link convgen_jit compile specs
// that have no AOT kernel instead of failing.
#include "codegen/jit.h"
#include "runtime/registry.h"

namespace {

std::shared_ptr<const convgen::Kernel> jit_provide(const convgen::LayerSpec &spec) { return convgen::jit_compile(spec).kernel; }

const bool kRegistered = (convgen::set_jit_provider(&jit_provide), true);

}  // namespace

// Referenced by convgen_jit's link option -Wl,--undefined=..., which keeps this object linked.
extern "C" int convgen_jit_provider_anchor() { return kRegistered ? 1 : 0; }
