#!/usr/bin/python3
"""PyTorch 1.13 eager baseline for convgen_bench (see bench/README.md).

Runs every layer of a suite with the seed's modules exactly as tests/golden/make_golden.py builds
them (Conv = Conv2d(bias=False) -> BatchNorm2d -> act; DWConv = depthwise -> [BN] -> act ->
pointwise -> [BN] -> act), in eval mode under torch.no_grad(), NCHW float32 input (channels_last
for a layout=nhwc spec), at each thread count (torch.set_num_threads), and prints one JSON object:

  {"context": {...}, "results": [{"name", "threads", "median_ms", "runs", "gflops"}, ...]}

Timing: a warm-up (at least 2 calls and 10% of the budget), then timed calls module(x) until both
--seconds and 5 calls are reached; the median of the per-call wall times (time.perf_counter).
Like convgen_bench, it records other_cores (CPUs kept busy by other processes meanwhile, from
/proc/stat) and times an entry again (at most 3 times) while that is above 0.15.
bench/report.py --pytorch FILE adds these as a column and a geomean convgen/PyTorch ratio.

Usage: /usr/bin/python3 bench/pytorch_bench.py [--suite FILE] [--threads 1,2] [--seconds 0.5]
                                              [--filter REGEX] [--out FILE]
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

import make_golden  # noqa: E402  (the seed's modules and the spec parser; needs torch + numpy)
import torch  # noqa: E402


def default_suite():
    shared = os.path.join(ROOT, "..", "shared", "bench", "layers.txt")
    return shared if os.path.exists(shared) else os.path.join(ROOT, "bench", "layers.txt")


def macs(spec):
    """DESIGN.md section 4: conv n*c2*oh*ow*(c1/g)*k^2; dwconv n*c1*oh*ow*k^2 + n*c2*oh*ow*c1."""
    oh, ow = spec.out_h(), spec.out_w()
    if spec.kind == "conv":
        return spec.n * spec.c2 * oh * ow * (spec.c1 // spec.g) * spec.k * spec.k
    return spec.n * spec.c1 * oh * ow * spec.k * spec.k + spec.n * spec.c2 * oh * ow * spec.c1


def system_busy_seconds():
    """Busy CPU seconds of the whole machine (all processes), from /proc/stat; None if unreadable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds():
    t = os.times()
    return t.user + t.system


def time_median(fn, seconds):
    """Returns (median seconds, runs, other_cores): other_cores = CPUs kept busy by other processes
    during the timed calls (as convgen_bench measures it)."""
    start = time.perf_counter()
    warm = 0
    while warm < 2 or time.perf_counter() - start < 0.1 * seconds:
        fn()
        warm += 1
    samples = []
    total = 0.0
    busy0, cpu0, wall0 = system_busy_seconds(), process_cpu_seconds(), time.perf_counter()
    while (len(samples) < 5 or total < seconds) and len(samples) < 100000:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
    wall = time.perf_counter() - wall0
    others = 0.0
    if busy0 is not None:
        others = max(0.0, (system_busy_seconds() - busy0 - (process_cpu_seconds() - cpu0)) / wall)
    return statistics.median(samples), len(samples), others


def time_entry(fn, seconds):
    """time_median, timed again (after a 1 s pause, at most 3 times in all) while other processes
    kept more than 0.15 CPU busy; keeps the first undisturbed timing, else the least disturbed."""
    best = time_median(fn, seconds)
    attempts = 1
    while best[2] > 0.15 and attempts < 3:
        time.sleep(1)
        t = time_median(fn, seconds)
        attempts += 1
        if t[2] < best[2]:
            best = t
    return best + (attempts,)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=default_suite())
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--filter", default="", help="only layers whose name matches this regex")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t]
    specs = [s for s in make_golden.suite_specs(args.suite) if re.search(args.filter, s.name)]

    torch.manual_seed(0)
    import random
    rng = random.Random(0)
    cases = []
    for spec in specs:
        module = make_golden.build_module(spec)
        make_golden.randomize_batchnorms(module, rng)
        module.eval()
        x = torch.empty(spec.input_shape_nchw()).uniform_(-1, 1)
        if spec.layout == "nhwc":
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        cases.append((spec, module, x))

    results = []
    with torch.no_grad():
        for t in threads:
            torch.set_num_threads(t)
            for spec, module, x in cases:
                median, runs, others, attempts = time_entry(lambda: module(x), args.seconds)
                results.append({
                    "name": spec.name,
                    "threads": t,
                    "median_ms": median * 1e3,
                    "runs": runs,
                    "gflops": 2.0 * macs(spec) / median * 1e-9,
                    "other_cores": others,
                    "attempts": attempts,
                })
                sys.stderr.write("pytorch %-16s threads=%d %10.3f ms %7.1f GFLOP/s (%d runs)%s\n" %
                                 (spec.name, t, median * 1e3, results[-1]["gflops"], runs,
                                  " CONTENDED (other processes used %.1f CPU)" % others if others > 0.15 else ""))
    doc = {
        "context": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(),
            "python": sys.executable + " " + platform.python_version(),
            "torch": torch.__version__,
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
            "parallel_info": torch.__config__.parallel_info(),
            "suite": os.path.abspath(args.suite),
            "seconds_per_entry": args.seconds,
            "mode": "eager, eval(), torch.no_grad(), float32, NCHW (channels_last for layout=nhwc)",
            "timing": "median wall time of one module(x) call",
        },
        "results": results,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
