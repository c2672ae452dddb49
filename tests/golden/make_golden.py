#!/usr/bin/python3
"""Golden test cases for convgen, with PyTorch as the oracle (DESIGN.md section 2).

Each case is one directory:
  spec.txt             one line: the layer spec text (layers.txt format)
  input.npy            float32, C order; NCHW, or NHWC when the spec says layout=nhwc
  weights.safetensors  the module's state_dict (PyTorch names, PyTorch shapes), F32/F16/BF16,
                       bn.num_batches_tracked as I64, like a real checkpoint
  prefix.txt           optional, one line: where the module sits inside a bigger state_dict
                       (e.g. "model.4."); the file then also holds unrelated modules' tensors
  expected.npy         float32, same layout as input.npy

The modules are written like the seed's: Conv = conv -> bn -> act; DWConv = depthwise -> [dw_bn]
-> dw_act -> pointwise -> [bn] -> act. Expected outputs are computed in eval mode in float64 from
the exact float32 (or F16/BF16-rounded) values stored in the files, then rounded to float32, so
they are the exact answer to within float32 rounding. Every case is read back from disk and
checked against an independent functional computation (F.conv2d + BN folded as in DESIGN.md +
hand-written activations) before the script reports success.

Usage (with /usr/bin/python3, which has Debian's python3-torch):
  make_golden.py --suite bench/layers.txt --out DIR [--seed 0]   one case per suite line (named by name=)
  make_golden.py --random 40 --seed 1 --out DIR                   random small cases r00..r39
  make_golden.py --verify DIR                                     re-check existing case directories
"""

import argparse
import copy
import json
import math
import os
import random
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # a missing oracle must fail loudly, never skip
    sys.stderr.write(
        "make_golden.py: error: cannot import torch/numpy (%s); run it with /usr/bin/python3 "
        "from Debian's python3-torch (or set CONVGEN_GOLDEN_PYTHON to a Python that has torch)\n" % e)
    sys.exit(1)


class GoldenError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Spec text (the layers.txt format); mirrors dsl/layer_spec.cc's rules.

ACTIVATIONS = ["relu", "relu6", "leaky", "silu", "gelu", "gelu_tanh", "hardswish", "sigmoid", "tanh", "identity"]
INT_KEYS = ["n", "c1", "c2", "h", "w", "k", "s", "p", "g"]
KNOWN_KEYS = set(INT_KEYS) | {"name", "act", "alpha", "bn", "dw_act", "dw_bn", "eps", "layout", "dtype"}
REQUIRED_KEYS = ["c1", "c2", "h", "w", "k"]


def f32(x):
    """The float32 value a C++ parser would hold for x, as a Python float."""
    return float(np.float32(x))


class Spec:
    def __init__(self, text):
        self.text = " ".join(text.split())
        tokens = self.text.split(" ")
        if not tokens or not tokens[0]:
            raise GoldenError("empty spec")
        if tokens[0] not in ("conv", "dwconv"):
            raise GoldenError("unknown layer kind %r in %r" % (tokens[0], text))
        self.kind = tokens[0]
        kv = {}
        for tok in tokens[1:]:
            if "=" not in tok or tok.startswith("="):
                raise GoldenError("%r is not key=value in %r" % (tok, text))
            key, value = tok.split("=", 1)
            if key not in KNOWN_KEYS:
                raise GoldenError("unknown key %r in %r" % (key, text))
            if key in kv:
                raise GoldenError("key %r given twice in %r" % (key, text))
            kv[key] = value
        for key in REQUIRED_KEYS:
            if key not in kv:
                raise GoldenError("missing key %r in %r" % (key, text))
        dw = self.kind == "dwconv"
        if dw and "g" in kv:
            raise GoldenError("g on a dwconv in %r" % text)
        if not dw and ("dw_act" in kv or "dw_bn" in kv):
            raise GoldenError("dw_act/dw_bn on a conv in %r" % text)
        if kv.get("dtype", "f32") != "f32":
            raise GoldenError("only dtype=f32 is supported in %r" % text)
        self.name = kv.get("name", "")
        ints = {k: int(kv[k]) for k in INT_KEYS if k in kv}
        self.n = ints.get("n", 1)
        self.c1, self.c2, self.h, self.w, self.k = (ints[k] for k in REQUIRED_KEYS)
        self.s = ints.get("s", 1)
        self.p = ints.get("p", self.k // 2)  # the seed's autopad
        self.g = ints.get("g", 1)
        self.act = kv.get("act", "relu")
        self.dw_act = kv.get("dw_act", self.act)
        for a in (self.act, self.dw_act):
            if a not in ACTIVATIONS:
                raise GoldenError("unknown activation %r in %r" % (a, text))
        uses_alpha = self.act == "leaky" or (dw and self.dw_act == "leaky")
        if "alpha" in kv and not uses_alpha:
            raise GoldenError("alpha without a leaky activation in %r" % text)
        self.alpha = f32(kv.get("alpha", "0.01"))
        self.eps = f32(kv.get("eps", "1e-5"))
        bools = {}
        for key in ("bn", "dw_bn"):
            v = kv.get(key, "1")
            if v not in ("0", "1"):
                raise GoldenError("%s must be 0 or 1 in %r" % (key, text))
            bools[key] = v == "1"
        self.bn, self.dw_bn = bools["bn"], bools["dw_bn"]
        self.layout = kv.get("layout", "nchw")
        if self.layout not in ("nchw", "nhwc"):
            raise GoldenError("unknown layout %r in %r" % (self.layout, text))
        for key in ("n", "c1", "c2", "h", "w", "k", "s", "g"):
            if getattr(self, key) < 1:
                raise GoldenError("%s must be >= 1 in %r" % (key, text))
        if self.p < 0 or not self.eps > 0:
            raise GoldenError("bad p or eps in %r" % text)
        if self.kind == "conv" and (self.c1 % self.g or self.c2 % self.g):
            raise GoldenError("c1 and c2 must be divisible by g in %r" % text)
        if self.out_h() < 1 or self.out_w() < 1:
            raise GoldenError("output size below 1 in %r" % text)

    def out_h(self):
        return (self.h + 2 * self.p - self.k) // self.s + 1

    def out_w(self):
        return (self.w + 2 * self.p - self.k) // self.s + 1

    def input_shape_nchw(self):
        return (self.n, self.c1, self.h, self.w)

    def output_shape_nchw(self):
        return (self.n, self.c2, self.out_h(), self.out_w())


# ----------------------------------------------------------------------------------------------
# The seed's modules.

def make_act(name, alpha=0.01):
    return {
        "relu": lambda: nn.ReLU(),
        "relu6": lambda: nn.ReLU6(),
        "leaky": lambda: nn.LeakyReLU(alpha),
        "silu": lambda: nn.SiLU(),
        "gelu": lambda: nn.GELU(),
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "hardswish": lambda: nn.Hardswish(),
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "identity": lambda: nn.Identity(),
    }[name]()


class Conv(nn.Module):
    """Conv2d(c1, c2, k, s, p, groups=g, bias=False) -> BatchNorm2d(c2, eps) -> act."""

    def __init__(self, c1, c2, k, s, p, g=1, act="relu", alpha=0.01, bn=True, eps=1e-5):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=eps) if bn else nn.Identity()
        self.act = make_act(act, alpha)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """depthwise Conv2d(c1, c1, k, s, p, groups=c1) -> [dw_bn] -> dw_act -> pointwise 1x1 -> [bn] -> act."""

    def __init__(self, c1, c2, k, s, p, act="relu", dw_act="relu", alpha=0.01, bn=True, dw_bn=True, eps=1e-5):
        super().__init__()
        self.depthwise = nn.Conv2d(c1, c1, k, s, p, groups=c1, bias=False)
        self.dw_bn = nn.BatchNorm2d(c1, eps=eps) if dw_bn else nn.Identity()
        self.dw_act = make_act(dw_act, alpha)
        self.pointwise = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=eps) if bn else nn.Identity()
        self.act = make_act(act, alpha)

    def forward(self, x):
        return self.act(self.bn(self.pointwise(self.dw_act(self.dw_bn(self.depthwise(x))))))


def build_module(spec):
    if spec.kind == "conv":
        return Conv(spec.c1, spec.c2, spec.k, spec.s, spec.p, spec.g, spec.act, spec.alpha, spec.bn, spec.eps)
    return DWConv(spec.c1, spec.c2, spec.k, spec.s, spec.p, spec.act, spec.dw_act, spec.alpha, spec.bn, spec.dw_bn,
                  spec.eps)


def randomize_batchnorms(module, rng):
    """Eval-mode BN with non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5))
                m.bias.copy_(torch.empty(c).uniform_(-0.5, 0.5))
                m.running_mean.copy_(torch.empty(c).uniform_(-0.5, 0.5))
                m.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0))
                m.num_batches_tracked.fill_(rng.randrange(1, 100000))


def expected_state_keys(spec):
    """The state_dict names a spec's module has (DESIGN.md section 2)."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    if spec.kind == "conv":
        keys = ["conv.weight"] + (["bn." + b for b in bn] if spec.bn else [])
    else:
        keys = (["depthwise.weight"] + (["dw_bn." + b for b in bn] if spec.dw_bn else []) + ["pointwise.weight"] +
                (["bn." + b for b in bn] if spec.bn else []))
    return set(keys)


# ----------------------------------------------------------------------------------------------
# safetensors (https://github.com/huggingface/safetensors#format), written by hand.

ST_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def tensor_bytes(t, dtype):
    t = t.detach().cpu().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "I64":
        return t.to(torch.int64).numpy().astype("<i8").tobytes()
    raise GoldenError("unsupported dtype " + dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor, dtype). Data laid out like the safetensors library does it
    (larger alignment first, then by name); header JSON padded with spaces to a multiple of 8."""
    order = sorted(tensors, key=lambda e: (-ST_ITEMSIZE[e[2]], e[0]))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t, dtype in order:
        b = tensor_bytes(t, dtype)
        assert len(b) == t.numel() * ST_ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Strict reader (for verification): returns {name: (dtype, float64/int64 torch tensor)}."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise GoldenError(path + ": shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n % 8 or 8 + n > len(data):
        raise GoldenError(path + ": bad header length %d" % n)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= e <= len(body)) or e - b != count * ST_ITEMSIZE[dtype]:
            raise GoldenError("%s: bad offsets for %s" % (path, name))
        spans.append((b, e))
        raw = body[b:e]
        if dtype == "F32":
            arr = np.frombuffer(raw, "<f4").astype(np.float64)
        elif dtype == "F16":
            arr = np.frombuffer(raw, "<f2").astype(np.float64)
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dtype == "I64":
            arr = np.frombuffer(raw, "<i8").copy()
        else:
            raise GoldenError("%s: dtype %s" % (path, dtype))
        out[name] = (dtype, torch.from_numpy(arr.reshape(shape)))
    spans.sort()
    if spans and (spans[0][0] != 0 or spans[-1][1] != len(body) or
                  any(spans[i][1] != spans[i + 1][0] for i in range(len(spans) - 1))):
        raise GoldenError(path + ": data section not tightly packed")
    return out


# ----------------------------------------------------------------------------------------------
# Case writing.

CASE_FILES = ["spec.txt", "input.npy", "weights.safetensors", "prefix.txt", "expected.npy"]

PREFIX_STYLES = [
    # (prefix, distractor module paths): distractors share the module's tensor suffixes, and some
    # share the prefix's leading characters ("model.10." vs "model.1.").
    ("model.4.", ["model.3", "model.5", "model.14"]),
    ("model.1.", ["model.0", "model.10", "model.12"]),
    ("backbone.stage2.0.", ["backbone.stage1.0", "backbone.stage2.1", "head"]),
    ("module.", ["aux"]),
]


def place(root, path, module):
    parent = root
    parts = path.split(".")
    for part in parts[:-1]:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    parent.add_module(parts[-1], module)


def round_module(module, dtypes):
    """Round every floating tensor of module to the dtype it will be stored as."""
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            dt = dtypes(name)
            if t.is_floating_point() and dt in ("F16", "BF16"):
                t.copy_(t.to(torch.float16 if dt == "F16" else torch.bfloat16).to(torch.float32))


def write_case(case_dir, spec, x_nchw, module, weight_dtype="F32", prefix_style=None, rng=None):
    """Computes expected for module(x_nchw) and writes the case directory."""
    rng = rng or random.Random(0)
    os.makedirs(case_dir, exist_ok=True)
    for f in CASE_FILES:  # only our own files: stale prefix.txt must not survive a regeneration
        p = os.path.join(case_dir, f)
        if os.path.exists(p):
            os.remove(p)

    # Per-tensor storage dtype ("mixed": each tensor its own, as a converted checkpoint may have).
    choices = {}

    def dtype_of(name):
        if name.endswith("num_batches_tracked"):
            return "I64"
        if weight_dtype != "mixed":
            return weight_dtype
        if name not in choices:
            choices[name] = rng.choice(["F32", "F16", "BF16"])
        return choices[name]

    module.eval()
    prefix = prefix_style[0] if prefix_style is not None else ""
    round_module(module, lambda n: dtype_of(prefix + n))
    root = module
    if prefix_style is not None:
        distractor_paths = prefix_style[1]
        root = nn.Module()
        own_path = prefix[:-1]
        for path in distractor_paths[:1] + [own_path] + distractor_paths[1:]:
            if path == own_path:
                place(root, path, module)
                continue
            c1, c2 = rng.randint(1, 4), rng.randint(1, 4)
            d = Conv(c1, c2, rng.choice([1, 3]), 1, 0) if rng.random() < 0.6 else DWConv(c1, c2, 3, 1, 1)
            randomize_batchnorms(d, rng)
            d.eval()
            round_module(d, lambda n, path=path: dtype_of(path + "." + n))
            place(root, path, d)

    tensors = [(name, t, dtype_of(name)) for name, t in root.state_dict().items()]
    write_safetensors(os.path.join(case_dir, "weights.safetensors"), tensors, metadata={"format": "pt"})

    with torch.no_grad():
        x64 = x_nchw.to(torch.float64)
        y64 = copy.deepcopy(module).double()(x64)
        y32 = module.float()(x_nchw.to(torch.float32))
    # torch's own float32 result must pass the same tolerance the C++ compare uses.
    tol = 1e-4 * max(1.0, float(y64.abs().max()))
    err32 = float((y32.double() - y64).abs().max())
    if not err32 <= tol / 4:
        raise GoldenError("%s: float32 torch differs from float64 by %g (tol %g)" % (case_dir, err32, tol))

    x_out, y_out = x_nchw.to(torch.float32), y64.to(torch.float32)
    if spec.layout == "nhwc":
        x_out, y_out = x_out.permute(0, 2, 3, 1), y_out.permute(0, 2, 3, 1)
    np.save(os.path.join(case_dir, "input.npy"), np.ascontiguousarray(x_out.numpy(), dtype=np.float32))
    np.save(os.path.join(case_dir, "expected.npy"), np.ascontiguousarray(y_out.numpy(), dtype=np.float32))
    with open(os.path.join(case_dir, "spec.txt"), "w") as f:
        f.write(spec.text + "\n")
    if prefix:
        with open(os.path.join(case_dir, "prefix.txt"), "w") as f:
            f.write(prefix + "\n")
    verify_case(case_dir, module_state=(module.state_dict(), prefix))


# ----------------------------------------------------------------------------------------------
# Independent verification of a case directory.

def reference_activation(name, x, alpha):
    if name == "identity":
        return x
    if name == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if name == "relu6":
        return x.clamp(0.0, 6.0)
    if name == "leaky":
        return torch.where(x >= 0, x, x * alpha)
    if name == "silu":
        return x / (1.0 + torch.exp(-x))
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "hardswish":
        return x * (x + 3.0).clamp(0.0, 6.0) / 6.0
    if name == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-x))
    if name == "tanh":
        return torch.tanh(x)
    raise GoldenError("activation " + name)


def fold_bn(w, sd, bn, eps, have):
    """DESIGN.md: scale = gamma / sqrt(var + eps), w' = w * scale, bias = beta - mean * scale."""
    if not have:
        return w, torch.zeros(w.shape[0], dtype=torch.float64)
    scale = sd[bn + ".weight"] / torch.sqrt(sd[bn + ".running_var"] + eps)
    return w * scale.view(-1, 1, 1, 1), sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale


def load_npy_strict(path):
    arr = np.load(path, allow_pickle=False)
    if arr.dtype != np.dtype("<f4") or not arr.flags.c_contiguous or arr.ndim != 4:
        raise GoldenError(path + ": not a C-order float32 4-d array")
    with open(path, "rb") as f:
        if b"'fortran_order': False" not in f.read(128):
            raise GoldenError(path + ": fortran order")
    return arr


def verify_case(case_dir, module_state=None):
    """Re-reads the files and recomputes expected with F.conv2d + folded BN + hand-written
    activations in float64. Raises GoldenError on any inconsistency."""
    with open(os.path.join(case_dir, "spec.txt")) as f:
        lines = f.read().splitlines()
    if len(lines) != 1:
        raise GoldenError(case_dir + ": spec.txt must be one line")
    spec = Spec(lines[0])
    prefix = ""
    pfile = os.path.join(case_dir, "prefix.txt")
    if os.path.exists(pfile):
        with open(pfile) as f:
            plines = f.read().splitlines()
        if len(plines) != 1 or not plines[0]:
            raise GoldenError(case_dir + ": prefix.txt must be one non-empty line")
        prefix = plines[0]
    st = read_safetensors(os.path.join(case_dir, "weights.safetensors"))
    own = {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}
    if set(own) != expected_state_keys(spec):
        raise GoldenError("%s: tensors under %r are %s, expected %s" %
                          (case_dir, prefix, sorted(own), sorted(expected_state_keys(spec))))
    if not prefix and len(own) != len(st):
        raise GoldenError(case_dir + ": extra tensors without a prefix")
    for name, (dtype, t) in own.items():
        if name.endswith("num_batches_tracked"):
            if dtype != "I64" or t.dim() != 0:
                raise GoldenError(case_dir + ": num_batches_tracked must be a 0-d I64")
    sd = {k: v[1] for k, v in own.items()}
    if module_state is not None:  # round trip: exactly what the module holds
        msd, _ = module_state
        for k, v in msd.items():
            if not torch.equal(sd[k].to(v.dtype), v) or list(sd[k].shape) != list(v.shape):
                raise GoldenError("%s: %s does not round-trip" % (case_dir, k))

    x = torch.from_numpy(load_npy_strict(os.path.join(case_dir, "input.npy"))).to(torch.float64)
    e = torch.from_numpy(load_npy_strict(os.path.join(case_dir, "expected.npy"))).to(torch.float64)
    if spec.layout == "nhwc":
        if tuple(x.shape) != (spec.n, spec.h, spec.w, spec.c1):
            raise GoldenError(case_dir + ": input shape %s" % (tuple(x.shape),))
        x, e = x.permute(0, 3, 1, 2), e.permute(0, 3, 1, 2)
    if tuple(x.shape) != spec.input_shape_nchw() or tuple(e.shape) != spec.output_shape_nchw():
        raise GoldenError("%s: shapes %s -> %s do not match the spec" % (case_dir, tuple(x.shape), tuple(e.shape)))

    if spec.kind == "conv":
        if tuple(sd["conv.weight"].shape) != (spec.c2, spec.c1 // spec.g, spec.k, spec.k):
            raise GoldenError(case_dir + ": conv.weight shape")
        w, b = fold_bn(sd["conv.weight"], sd, "bn", spec.eps, spec.bn)
        y = reference_activation(spec.act, F.conv2d(x, w, b, spec.s, spec.p, 1, spec.g), spec.alpha)
    else:
        if tuple(sd["depthwise.weight"].shape) != (spec.c1, 1, spec.k, spec.k) or \
                tuple(sd["pointwise.weight"].shape) != (spec.c2, spec.c1, 1, 1):
            raise GoldenError(case_dir + ": depthwise/pointwise weight shape")
        wd, bd = fold_bn(sd["depthwise.weight"], sd, "dw_bn", spec.eps, spec.dw_bn)
        t = reference_activation(spec.dw_act, F.conv2d(x, wd, bd, spec.s, spec.p, 1, spec.c1), spec.alpha)
        wp, bp = fold_bn(sd["pointwise.weight"], sd, "bn", spec.eps, spec.bn)
        # the pointwise conv as a plain matrix product (no F.conv2d), per pixel
        z = torch.einsum("oc,nchw->nohw", wp[:, :, 0, 0], t) + bp.view(1, -1, 1, 1)
        y = reference_activation(spec.act, z, spec.alpha)
    err = float((y - e).abs().max())
    tol = 1e-6 * max(1.0, float(e.abs().max()))
    if not err <= tol:
        raise GoldenError("%s: expected.npy differs from the independent computation by %g" % (case_dir, err))
    if not torch.isfinite(e).all():
        raise GoldenError(case_dir + ": non-finite expected values")
    return spec


# ----------------------------------------------------------------------------------------------
# Suite mode.

def suite_specs(path):
    specs = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                spec = Spec(line)
            except GoldenError as e:
                raise GoldenError("%s:%d: %s" % (path, line_no, e))
            if not spec.name:
                raise GoldenError("%s:%d: suite layers need a name=" % (path, line_no))
            specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise GoldenError(path + ": duplicate layer names")
    return specs


def make_suite(path, out, seed):
    for i, spec in enumerate(suite_specs(path)):
        torch.manual_seed(seed * 100003 + i)
        rng = random.Random(seed * 100003 + i)
        module = build_module(spec)
        randomize_batchnorms(module, rng)
        x = torch.empty(spec.input_shape_nchw()).uniform_(-2.0, 2.0)
        write_case(os.path.join(out, spec.name), spec, x, module, rng=rng)
        print("wrote", os.path.join(out, spec.name), "   ", spec.text)


# ----------------------------------------------------------------------------------------------
# Random mode.

CHANNELS = [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 23]
CASE_BYTES_LIMIT = 48 * 1024  # keeps the committed set well under 2 MB


def random_plan(count, rng):
    """Lists of per-case choices, shuffled, so that every option is covered."""
    def spread(options, counts):
        lst = []
        for o, c in zip(options, counts):
            lst += [o] * c
        while len(lst) < count:
            lst += options
        lst = lst[:count]
        rng.shuffle(lst)
        return lst

    q = max(1, count // 10)
    plan = {
        "act": spread(ACTIVATIONS, [count // len(ACTIVATIONS)] * len(ACTIVATIONS)),
        "kind": spread(["conv", "dwconv"], [count - count * 9 // 20, count * 9 // 20]),
        "layout": spread(["nchw", "nhwc"], [count // 2, count - count // 2]),
        "wdtype": spread(["F16", "BF16", "mixed", "F32"], [q, q, max(1, q // 2), count]),
        "prefix": spread([True, False], [max(1, count * 3 // 20), count]),
        "scale": spread([10.0, 1.0], [max(1, count * 3 // 20), count]),
        "shape": spread(["tiny", "k_gt_h", "normal"], [q, q, count]),
        "format": spread(["shuffled", "explicit_defaults", "dtype", "plain"], [count // 4, count // 5, 2, count]),
    }
    # Per-kind choices: group modes for the conv cases; for the dwconv cases, whether dw_act differs
    # from act, and a queue of depthwise activations that visits every activation.
    conv_idx = [i for i in range(count) if plan["kind"][i] == "conv"]
    dw_idx = [i for i in range(count) if plan["kind"][i] == "dwconv"]
    modes = (["depthwise"] * max(1, len(conv_idx) // 5) + ["grouped"] * max(1, len(conv_idx) // 4) +
             ["g1"] * len(conv_idx))[:len(conv_idx)]
    rng.shuffle(modes)
    plan["groups"] = dict(zip(conv_idx, modes))
    distinct = ([True] * (len(dw_idx) * 2 // 3) + [False] * len(dw_idx))[:len(dw_idx)]
    rng.shuffle(distinct)
    plan["dw_distinct"] = dict(zip(dw_idx, distinct))
    queue = []
    while len(queue) < 2 * count:
        acts = list(ACTIVATIONS)
        rng.shuffle(acts)
        queue += acts
    plan["dw_act_queue"] = queue
    return plan


def random_spec_text(i, plan, rng):
    kind, act, layout = plan["kind"][i], plan["act"][i], plan["layout"][i]
    kv = {"name": "r%02d" % i}
    explicit = plan["format"][i] == "explicit_defaults"
    for _ in range(1000):
        n = rng.choice([1, 1, 1, 2, 2, 3])
        k = rng.choice([1, 3, 3, 5, 7]) if plan["shape"][i] != "k_gt_h" else rng.choice([5, 7])
        s = rng.choice([1, 1, 2])
        if plan["shape"][i] == "tiny":
            h, w = rng.choice([(1, rng.randint(1, 9)), (rng.randint(1, 9), 1), (1, 1), (2, 3)])
        elif plan["shape"][i] == "k_gt_h":
            h, w = rng.randint(1, k - 1), rng.randint(1, 19)
        else:
            h, w = rng.randint(3, 19), rng.randint(3, 19)
        # padding: default (autopad k//2) or explicit, incl. 0 and occasionally more than k//2
        p_explicit = explicit or rng.random() < 0.5
        p = rng.choice([0, 0, k // 2, k // 2, min(k // 2 + 1, k)]) if p_explicit else k // 2
        if h + 2 * p < k or w + 2 * p < k:
            continue
        g = 1
        if kind == "conv":
            mode = plan["groups"][i]
            if mode == "depthwise":
                c1 = c2 = g = rng.choice([1, 3, 5, 7, 11, 13, 17, 19, 23])
            elif mode == "grouped":
                g = rng.choice([2, 3, 5, 7])
                c1, c2 = g * rng.randint(1, 4), g * rng.randint(1, 4)
                if c1 % 8 == 0 or c2 % 8 == 0:
                    continue
            else:
                c1, c2 = rng.choice(CHANNELS), rng.choice(CHANNELS)
        else:
            c1, c2 = rng.choice(CHANNELS), rng.choice(CHANNELS)
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        wsize = c2 * (c1 // g) * k * k if kind == "conv" else c1 * k * k + c2 * c1
        size = 4 * (n * c1 * h * w + n * c2 * oh * ow + wsize) + 64 * (c1 + c2)
        if size <= CASE_BYTES_LIMIT:
            break
    else:
        raise GoldenError("cannot draw a small spec")
    kv.update(n=n, c1=c1, c2=c2, h=h, w=w, k=k)
    if s != 1 or explicit or rng.random() < 0.2:
        kv["s"] = s
    if p_explicit:
        kv["p"] = p
    if kind == "conv" and (g != 1 or explicit):
        kv["g"] = g
    if n == 1 and not explicit and rng.random() < 0.5:
        del kv["n"]
    if act != "relu" or explicit or rng.random() < 0.5:
        kv["act"] = act
    bn = rng.random() < 0.7
    if not bn or explicit:
        kv["bn"] = int(bn)
    uses_leaky = act == "leaky"
    if kind == "dwconv":
        dw_bn = rng.random() < 0.6
        if not dw_bn or explicit:
            kv["dw_bn"] = int(dw_bn)
        if plan["dw_distinct"][i]:  # a different depthwise activation
            queue = plan["dw_act_queue"]
            dw_act = next(a for a in queue if a != act)
            queue.remove(dw_act)
            kv["dw_act"] = dw_act
            uses_leaky = uses_leaky or dw_act == "leaky"
        elif explicit:
            kv["dw_act"] = act
    if uses_leaky and rng.random() < 0.6:
        kv["alpha"] = rng.choice(["0.1", "0.2", "0.05", "0.3", "0.125"])
    if (bn or kv.get("dw_bn", 1) == 1 and kind == "dwconv") and rng.random() < 0.2:
        kv["eps"] = rng.choice(["1e-3", "0.001", "1e-4", "2e-5"])
    if layout == "nhwc" or explicit:
        kv["layout"] = layout
    if plan["format"][i] == "dtype":
        kv["dtype"] = "f32"
    items = list(kv.items())
    if plan["format"][i] == "shuffled":
        rng.shuffle(items)
    return kind + " " + " ".join("%s=%s" % (key, v) for key, v in items)


def make_random(count, seed, out, quiet=False):
    rng = random.Random(seed)
    plan = random_plan(count, rng)
    prefix_rng = random.Random(seed + 7)
    for i in range(count):
        spec = Spec(random_spec_text(i, plan, rng))
        case_seed = seed * 100003 + i
        torch.manual_seed(case_seed)
        case_rng = random.Random(case_seed)
        module = build_module(spec)
        if spec.bn or (spec.kind == "dwconv" and spec.dw_bn):
            randomize_batchnorms(module, case_rng)
        x = torch.empty(spec.input_shape_nchw()).uniform_(-2.0, 2.0) * plan["scale"][i]
        prefix_style = prefix_rng.choice(PREFIX_STYLES) if plan["prefix"][i] else None
        write_case(os.path.join(out, spec.name), spec, x, module, plan["wdtype"][i], prefix_style, case_rng)
        extra = []
        if plan["wdtype"][i] != "F32":
            extra.append(plan["wdtype"][i])
        if prefix_style:
            extra.append("prefix " + prefix_style[0])
        if plan["scale"][i] != 1.0:
            extra.append("x%g" % plan["scale"][i])
        if not quiet:
            print("wrote", os.path.join(out, spec.name), "   ", spec.text, ("  [" + ", ".join(extra) + "]") if extra else "")


# ----------------------------------------------------------------------------------------------
# Self-test of the script's own pieces (run by CTest as golden.selftest).

def self_test():
    import filecmp
    import tempfile

    def check(cond, what):
        if not cond:
            raise GoldenError("self-test failed: " + what)

    with tempfile.TemporaryDirectory() as tmp:
        # 1. safetensors: exact bytes for each dtype, header padding, and a round trip.
        path = os.path.join(tmp, "t.safetensors")
        one = torch.ones(1)
        write_safetensors(path, [("b", one, "BF16"), ("h", one, "F16"), ("f", one * -2.5, "F32"),
                                 ("i", torch.tensor(7), "I64")], metadata={"format": "pt"})
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        check(n % 8 == 0 and data[8 + n - 1:8 + n] in (b" ", b"}"), "header padded to 8 bytes")
        header = json.loads(data[8:8 + n])
        check(header["__metadata__"] == {"format": "pt"}, "metadata")
        body = data[8 + n:]

        def raw(name):
            b, e = header[name]["data_offsets"]
            return body[b:e]
        check(raw("i") == struct.pack("<q", 7) and header["i"]["shape"] == [], "I64 scalar")
        check(raw("f") == struct.pack("<f", -2.5), "F32 bytes")
        check(raw("h") == b"\x00\x3c", "F16 bytes")
        check(raw("b") == b"\x80\x3f", "BF16 bytes")
        check(header["i"]["data_offsets"][0] == 0, "8-byte dtype first")
        t = torch.randn(3, 2, 5, 5)
        for dt, tdt in (("F32", torch.float32), ("F16", torch.float16), ("BF16", torch.bfloat16)):
            write_safetensors(path, [("x", t, dt)])
            got = read_safetensors(path)["x"]
            check(got[0] == dt and torch.equal(got[1], t.to(tdt).to(torch.float64)), dt + " round trip")

        # 2. The modules against explicit functional compositions (float64).
        rng = random.Random(5)
        torch.manual_seed(5)
        x = torch.empty(2, 6, 9, 7, dtype=torch.float64).uniform_(-3, 3)
        for act in ACTIVATIONS:
            xs = torch.linspace(-40, 40, 2001, dtype=torch.float64)
            check(torch.allclose(make_act(act, 0.2).double()(xs), reference_activation(act, xs, 0.2),
                                 rtol=1e-12, atol=1e-12), "activation " + act)

        def bn(t, m):
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
        m = DWConv(6, 4, 5, 2, 1, act="silu", dw_act="leaky", alpha=0.2, eps=1e-3)
        randomize_batchnorms(m, rng)
        m = m.double().eval()
        with torch.no_grad():
            t = F.conv2d(x, m.depthwise.weight, None, 2, 1, 1, 6)
            t = F.leaky_relu(bn(t, m.dw_bn), 0.2)
            t = F.conv2d(t, m.pointwise.weight)
            manual = F.silu(bn(t, m.bn))
            check(torch.allclose(m(x), manual, rtol=1e-12, atol=1e-12), "DWConv = manual composition")
            check(sorted(m.state_dict()) == sorted(expected_state_keys(Spec(
                "dwconv c1=6 c2=4 h=9 w=7 k=5 s=2 p=1 act=silu dw_act=leaky alpha=0.2"))), "DWConv state_dict names")
        m = Conv(6, 9, 3, 1, 0, 3, act="hardswish")
        randomize_batchnorms(m, rng)
        m = m.double().eval()
        with torch.no_grad():
            manual = F.hardswish(bn(F.conv2d(x, m.conv.weight, None, 1, 0, 1, 3), m.bn))
            check(torch.allclose(m(x), manual, rtol=1e-12, atol=1e-12), "Conv = manual composition")

        # 3. Spec defaults and NHWC files element by element.
        sp = Spec("dwconv c1=3 c2=5 h=4 w=6 k=5 act=gelu layout=nhwc bn=0")
        check(sp.p == 2 and sp.dw_act == "gelu" and sp.dw_bn and not sp.bn and sp.n == 1, "spec defaults")
        torch.manual_seed(1)
        xin = torch.empty(sp.input_shape_nchw()).uniform_(-2, 2)
        mod = build_module(sp)
        randomize_batchnorms(mod, rng)
        case = os.path.join(tmp, "nhwc")
        write_case(case, sp, xin, mod)
        xi, xe = np.load(os.path.join(case, "input.npy")), np.load(os.path.join(case, "expected.npy"))
        with torch.no_grad():
            y = mod.double()(xin.double()).float().numpy()
        check(xi.shape == (1, 4, 6, 3) and xe.shape == (1, 4, 6, 5), "NHWC shapes")
        for (yy, xx, c) in ((0, 0, 0), (1, 2, 2), (3, 5, 1), (2, 4, 0)):
            check(xi[0, yy, xx, c] == xin[0, c, yy, xx].item(), "NHWC input element")
            check(xe[0, yy, xx, c] == y[0, c, yy, xx] and xe[0, yy, xx, 4] == y[0, 4, yy, xx], "NHWC expected element")

        # 4. A bad expected.npy is caught by verify_case.
        bad = xe.copy()
        bad[0, 1, 1, 1] += 1e-3
        np.save(os.path.join(case, "expected.npy"), bad)
        try:
            verify_case(case)
            check(False, "verify_case catches a wrong expected value")
        except GoldenError:
            pass

        # 5. Random mode is deterministic for a seed, and the seed matters.
        a, b, c = (os.path.join(tmp, d) for d in "abc")
        for d, seed in ((a, 3), (b, 3), (c, 4)):
            make_random(6, seed, d, quiet=True)
        for i in range(6):
            for f in ("spec.txt", "input.npy", "weights.safetensors", "expected.npy"):
                check(filecmp.cmp(os.path.join(a, "r%02d" % i, f), os.path.join(b, "r%02d" % i, f), shallow=False),
                      "deterministic " + f)
        check(not filecmp.cmp(os.path.join(a, "r00", "input.npy"), os.path.join(c, "r00", "input.npy"),
                              shallow=False), "seed changes the cases")
    print("make_golden.py self-test passed")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--suite", metavar="FILE", help="one case per layer of a suite file (layers.txt format)")
    mode.add_argument("--random", metavar="N", type=int, help="N random small cases named r00, r01, ...")
    mode.add_argument("--verify", metavar="DIR", help="re-check every case directory under DIR")
    mode.add_argument("--self-test", action="store_true", help="test this script's own pieces")
    ap.add_argument("--out", metavar="DIR", help="output directory (one subdirectory per case)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: 0 for --suite, 1 for --random)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    try:
        if args.self_test:
            self_test()
            return 0
        if args.verify:
            dirs = sorted(d for d in os.listdir(args.verify) if os.path.isfile(os.path.join(args.verify, d, "spec.txt")))
            if not dirs:
                raise GoldenError("no case directories under " + args.verify)
            for d in dirs:
                verify_case(os.path.join(args.verify, d))
            print("verified %d cases under %s" % (len(dirs), args.verify))
            return 0
        if not args.out:
            ap.error("--out is required with --suite and --random")
        os.makedirs(args.out, exist_ok=True)
        if args.suite:
            make_suite(args.suite, args.out, 0 if args.seed is None else args.seed)
        else:
            if not 1 <= args.random <= 100:
                ap.error("--random takes 1..100 (case names are r00..r99)")
            make_random(args.random, 1 if args.seed is None else args.seed, args.out)
    except (GoldenError, OSError, ValueError) as e:
        sys.stderr.write("make_golden.py: error: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
