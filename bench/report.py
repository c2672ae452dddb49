#!/usr/bin/python3
"""Turns convgen_bench's JSON (--benchmark_format=json or --benchmark_out=FILE) into a markdown
table and a PNG roofline plot (see bench/README.md).

Usage: /usr/bin/python3 bench/report.py RESULTS.json [--pytorch PYTORCH.json] [--md OUT.md]
                                        [--png OUT.png]
  Defaults: OUT.md and OUT.png beside RESULTS.json (RESULTS.md, RESULTS_roofline.png).
  --pytorch takes bench/pytorch_bench.py's JSON and adds a PyTorch column and geomean.

Speedups are peer time / convgen time (> 1: convgen is faster); geomeans are over the layers
both ran. The roofline's intensity is FLOPs (2 x MACs) per minimal byte (input + weights +
output, float32, each read or written once); its roofs are the FMA peak and the triad bandwidth
that convgen_bench measured in the same process.
"""

import argparse
import json
import math
import os
import sys

PEERS = ["onednn", "xnnpack"]
LABEL = {"convgen": "convgen", "onednn": "oneDNN", "xnnpack": "XNNPACK", "pytorch": "PyTorch"}


def load_bench(path):
    with open(path) as f:
        doc = json.load(f)
    ctx = doc.get("context", {})
    rows = {}  # (layer, impl, threads) -> dict
    order = []
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        parts = b["name"].split("/")
        if len(parts) < 3 or not parts[2].startswith("threads:"):
            continue
        layer, impl, threads = parts[0], parts[1], int(parts[2].split(":")[1])
        if layer not in order:
            order.append(layer)
        key = (layer, impl, threads)
        if key in rows and rows[key].get("run_type") == "aggregate":
            continue  # keep the median aggregate over single repetitions
        r = {"run_type": b.get("run_type"), "label": b.get("label", "")}
        if b.get("error_occurred"):
            r["error"] = b.get("error_message", "error")
        else:
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
            r["ms"] = b["real_time"] * scale
            for k in ("GFLOPS", "pct_peak", "flops", "bytes", "check_ok", "max_err", "act_fused", "ref_ok",
                      "cpu_cores", "other_cores", "canary_pct"):
                if k in b:
                    r[k] = b[k]
        rows[key] = r
    threads = sorted({k[2] for k in rows})
    machine = {}
    for t in threads:
        machine[t] = {
            "peak": float(ctx.get("fma_peak_gflops_t%d" % t, "nan")),
            "bw": float(ctx.get("triad_gbs_t%d" % t, "nan")),
        }
    return ctx, rows, order, threads, machine


def load_pytorch(path):
    with open(path) as f:
        doc = json.load(f)
    for r in doc["results"]:
        if r.get("other_cores", 0) > 0.15:
            sys.stderr.write("report.py: warning: PyTorch %s threads=%d was contended (%.1f CPU busy elsewhere)\n" %
                             (r["name"], r["threads"], r["other_cores"]))
    return {(r["name"], r["threads"]): r["median_ms"] for r in doc["results"]}, doc.get("context", {})


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def markdown(ctx, rows, order, threads, machine, torch_ms, torch_ctx):
    out = []
    out.append("# convgen_bench results\n")
    out.append("- host: %s CPU(s) at %s MHz (%s), convgen target `%s`" %
               (ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"), ctx.get("host_name", "?"),
                ctx.get("convgen_target", "?")))
    out.append("- suite: `%s`; %s s of timed passes per entry; time = %s" %
               (ctx.get("convgen_suite", "?"), ctx.get("convgen_seconds_per_entry", "?"),
                ctx.get("timing", "median")))
    if torch_ctx:
        out.append("- PyTorch %s (%s)" % (torch_ctx.get("torch", "?"), torch_ctx.get("mode", "")))
    out.append("- speedup = peer time / convgen time (> 1: convgen faster); `*` = XNNPACK ran the activation as "
               "separate operator(s) (it fuses only min/max clamps); check = peer output vs convgen's "
               "(convgen's tolerance)\n")
    have = {impl: any(k[1] == impl for k in rows) for impl in PEERS}
    first = threads[0] if threads else None
    for t in threads:
        m = machine[t]
        out.append("## %d thread%s — FMA peak %.1f GFLOP/s, triad %.1f GB/s\n" %
                   (t, "s" if t > 1 else "", m["peak"], m["bw"]))
        head = ["layer", "MFLOP", "convgen ms", "GFLOP/s", "% peak"]
        for impl in PEERS:
            if have[impl]:
                head += ["%s ms" % LABEL[impl], "% peak", "speedup"]
        if torch_ms:
            head += ["PyTorch ms", "speedup"]
        if t != first:
            head += ["convgen %dt/%dt" % (t, first)]
        head += ["check"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
        ratios = {impl: [] for impl in PEERS + ["pytorch"]}
        for layer in order:
            cg = rows.get((layer, "convgen", t))
            cg_ok = cg is not None and "ms" in cg
            flops = cg.get("flops") if cg_ok else None
            for impl in PEERS:
                r = rows.get((layer, impl, t))
                if flops is None and r and "flops" in r:
                    flops = r["flops"]
            cells = [layer, "%.1f" % (flops * 1e-6) if flops else "-"]
            checks = []
            if cg_ok:
                cells += ["%.3f" % cg["ms"], "%.1f" % cg["GFLOPS"], "%.1f%%" % cg["pct_peak"]]
                if cg.get("ref_ok") == 0:
                    checks.append("**convgen != reference**")
                if cg.get("cpu_cores", 0) > t + 0.25:
                    checks.append("**convgen used %.1f cores**" % cg["cpu_cores"])
                if cg.get("other_cores", 0) > 0.15 or cg.get("canary_pct", 100) < 90:
                    checks.append("**convgen contended**")
            else:
                cells += [("error" if cg else "-"), "", ""]
            for impl in PEERS:
                if not have[impl]:
                    continue
                r = rows.get((layer, impl, t))
                if r and "ms" in r:
                    star = "" if r.get("act_fused", 1) else "*"
                    sp = ""
                    if cg_ok:
                        sp = "%.2fx" % (r["ms"] / cg["ms"])
                        ratios[impl].append(r["ms"] / cg["ms"])
                    cells += ["%.3f%s" % (r["ms"], star), "%.1f%%" % r["pct_peak"], sp]
                    if r.get("cpu_cores", 0) > t + 0.25:
                        checks.append("**%s used %.1f cores**" % (LABEL[impl], r["cpu_cores"]))
                    if r.get("other_cores", 0) > 0.15 or r.get("canary_pct", 100) < 90:
                        checks.append("**%s contended**" % LABEL[impl])
                    if r.get("check_ok") == 0:
                        checks.append("**%s MISMATCH** (max err %.2g)" % (LABEL[impl], r.get("max_err", float("nan"))))
                else:
                    err = r.get("error", "") if r else ""
                    cells += ["n/a" if err.startswith("n/a") else ("error" if r else "-"), "", ""]
                    if err and not err.startswith("n/a"):
                        checks.append("%s error: %s" % (LABEL[impl], err))
            if torch_ms:
                pt = torch_ms.get((layer, t))
                if pt is not None:
                    sp = ""
                    if cg_ok:
                        sp = "%.2fx" % (pt / cg["ms"])
                        ratios["pytorch"].append(pt / cg["ms"])
                    cells += ["%.3f" % pt, sp]
                else:
                    cells += ["-", ""]
            if t != first:
                base = rows.get((layer, "convgen", first))
                cells += ["%.2fx" % (base["ms"] / cg["ms"]) if cg_ok and base and "ms" in base else "-"]
            cells += ["; ".join(checks) if checks else "ok"]
            out.append("| " + " | ".join(cells) + " |")
        gm = []
        for impl in PEERS + (["pytorch"] if torch_ms else []):
            if impl == "pytorch" or have[impl]:
                xs = ratios[impl]
                gm.append("vs %s **%.2fx** (%d layers)" % (LABEL[impl], geomean(xs), len(xs)) if xs else
                          "vs %s -" % LABEL[impl])
        out.append("\nGeomean convgen speedup at %d thread%s: %s\n" % (t, "s" if t > 1 else "", ", ".join(gm)))
    return "\n".join(out) + "\n"


def roofline(path, rows, order, threads, machine, torch_ms):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(threads), figsize=(7.5 * len(threads), 6), squeeze=False)
    style = {"convgen": ("o", "tab:red"), "onednn": ("s", "tab:blue"), "xnnpack": ("^", "tab:green"),
             "pytorch": ("v", "tab:gray")}
    for ax, t in zip(axes[0], threads):
        info = {}  # layer -> (flops, bytes)
        for (layer, impl, tt), r in rows.items():
            if "flops" in r and "bytes" in r:
                info[layer] = (r["flops"], r["bytes"])
        pts = {impl: [] for impl in style}
        for layer in order:
            if layer not in info:
                continue
            flops, nbytes = info[layer]
            ai = flops / nbytes
            for impl in ("convgen", "onednn", "xnnpack"):
                r = rows.get((layer, impl, t))
                if r and "ms" in r:
                    pts[impl].append((ai, flops / (r["ms"] * 1e-3) * 1e-9, layer))
            if torch_ms and (layer, t) in torch_ms:
                pts["pytorch"].append((ai, flops / (torch_ms[(layer, t)] * 1e-3) * 1e-9, layer))
        all_ai = [p[0] for v in pts.values() for p in v] or [1.0, 100.0]
        lo, hi = min(all_ai) / 2, max(all_ai) * 2
        peak, bw = machine[t]["peak"], machine[t]["bw"]
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        if bw == bw and peak == peak:
            ax.plot(xs, [min(peak, bw * x) for x in xs], "k-", lw=1.5, label="roof")
            ax.plot(xs, [bw * x for x in xs], "k:", lw=0.8, label="triad %.1f GB/s" % bw)
            ax.axhline(peak, color="k", ls="--", lw=0.8, label="FMA peak %.0f GFLOP/s" % peak)
        for impl, v in pts.items():
            if v:
                ax.scatter([p[0] for p in v], [p[1] for p in v], marker=style[impl][0], color=style[impl][1],
                           label=LABEL[impl], zorder=3, s=36 if impl == "convgen" else 28,
                           alpha=1.0 if impl == "convgen" else 0.75)
        for ai, g, layer in pts["convgen"]:
            ax.annotate(layer, (ai, g), fontsize=6.5, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        all_g = [p[1] for v in pts.values() for p in v]
        if peak == peak and all_g:
            ax.set_ylim(min(all_g + [peak]) / 2, peak * 2)
        ax.set_xlabel("arithmetic intensity (FLOPs per minimal byte: input + weights + output)")
        ax.set_ylabel("GFLOP/s")
        ax.set_title("%d thread%s" % (t, "s" if t > 1 else ""))
        ax.grid(True, which="both", ls=":", lw=0.4)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("convgen_bench roofline (f32, batch as in the suite)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--pytorch")
    ap.add_argument("--md")
    ap.add_argument("--png")
    args = ap.parse_args(argv)
    stem = os.path.splitext(args.results)[0]
    md_path = args.md or stem + ".md"
    png_path = args.png or stem + "_roofline.png"
    ctx, rows, order, threads, machine = load_bench(args.results)
    if not rows:
        sys.stderr.write("report.py: error: no convgen_bench entries in %s\n" % args.results)
        return 2
    torch_ms, torch_ctx = load_pytorch(args.pytorch) if args.pytorch else ({}, {})
    text = markdown(ctx, rows, order, threads, machine, torch_ms, torch_ctx)
    with open(md_path, "w") as f:
        f.write(text)
    roofline(png_path, rows, order, threads, machine, torch_ms)
    sys.stdout.write(text)
    sys.stderr.write("report.py: wrote %s and %s\n" % (md_path, png_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
