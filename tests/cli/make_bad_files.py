#!/usr/bin/env python3
"""Writes the small (mostly malformed) files under tests/cli/data/ used by the cli.* tests.

Standard library only; the output is deterministic and committed, so the tests need no Python.
All files go with the valid spec  conv c1=4 c2=4 h=5 w=5 k=3  (input [1,4,5,5], output [1,4,5,5]).
File names are neutral on purpose: an error message that echoes the path must not match the
expected words by accident.

  ok_input.npy / ok_weights.safetensors   valid files (positive controls)
  ok_other.npy                            valid, differs from ok_input.npy (compare -> exit 1)
  ok_prefixed.safetensors                 valid weights stored under "model.2."
  e01.npy  bad magic                      e07.npy  format version 9
  e02.npy  float64 ('<f8')                e08.npy  int32 ('<i4')
  e03.npy  fortran_order True             e09.npy  big-endian float32 ('>f4')
  e04.npy  data truncated                 e10.npy  3-d shape (4, 5, 5)
  e05.npy  shape (1, 4, 5, 6)             e11.npy  6 bytes only
  e06.npy  malformed header dict          e12.npy  header length past the end of the file
  s01  header length 2^63                 s09  two tensors sharing the same bytes
  s02  data section truncated             s10  conv.weight offsets 4 bytes short of its shape
  s03  conv.weight shape [4,4,5,5]        s11  header JSON is an array
  s04  bn.running_var missing             s12  bn.weight shape [5]
  s05  conv.weight offsets past the end   s13  data_offsets begin > end
  s06  header is not valid JSON           s14  header length 1000, file shorter
  s07  4 bytes only                       s15  conv.weight given as I32
  s08  bn.weight dtype F64
"""

import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

C, H, W, K = 4, 5, 5, 3


def npy_bytes(values, shape, descr="<f4", fortran=False, fmt="f", magic=b"\x93NUMPY", version=(1, 0),
              header=None):
    if header is None:
        shape_txt = "(" + "".join("%d, " % d for d in shape).rstrip(" ") + ")" if len(shape) != 1 else "(%d,)" % shape[0]
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False",
                                                                         shape_txt)
    h = header.encode("latin1")
    h += b" " * (-(len(magic) + 2 + 2 + len(h) + 1) % 64) + b"\n"
    endian = ">" if descr.startswith(">") else "<"
    body = struct.pack(endian + "%d%s" % (len(values), fmt), *values)
    return magic + bytes(version) + struct.pack("<H", len(h)) + h + body


def st_bytes(tensors, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes); offsets tightly packed in order."""
    header, body, off = {"__metadata__": {"format": "pt"}}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        body += raw
        off += len(raw)
    if header_override:
        header_override(header)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    return struct.pack("<Q", len(hj)) + hj + body


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def main():
    rng = random.Random(12345)
    os.makedirs(DATA, exist_ok=True)
    files = {}

    n_in = C * H * W
    x = [round(rng.uniform(-2, 2), 4) for _ in range(n_in)]
    files["ok_input.npy"] = npy_bytes(x, (1, C, H, W))
    y = list(x)
    y[7] += 1.0
    files["ok_other.npy"] = npy_bytes(y, (1, C, H, W))

    def weights(prefix="", skip=(), change=None):
        t = [
            ("conv.weight", "F32", [C, C, K, K], f32([round(rng.uniform(-0.3, 0.3), 4) for _ in range(C * C * K * K)])),
            ("bn.weight", "F32", [C], f32([1.0, 0.9, 1.1, 1.2])),
            ("bn.bias", "F32", [C], f32([0.1, -0.2, 0.0, 0.3])),
            ("bn.running_mean", "F32", [C], f32([0.05, -0.1, 0.2, 0.0])),
            ("bn.running_var", "F32", [C], f32([1.0, 0.5, 2.0, 1.5])),
            ("bn.num_batches_tracked", "I64", [], struct.pack("<q", 1234)),
        ]
        t = [(prefix + n, d, s, r) for n, d, s, r in t if n not in skip]
        if change:
            t = [change(e) for e in t]
        return t

    files["ok_weights.safetensors"] = st_bytes(weights())
    files["ok_prefixed.safetensors"] = st_bytes(
        [("model.1.conv.weight", "F32", [2, 2, 1, 1], f32([1, 2, 3, 4]))] + weights("model.2.") +
        [("model.20.conv.weight", "F32", [3, 1, 1, 1], f32([1, 2, 3]))])

    # --- malformed .npy inputs
    good = files["ok_input.npy"]
    files["e01.npy"] = b"\x93NUMPX" + good[6:]
    files["e02.npy"] = npy_bytes(x, (1, C, H, W), descr="<f8", fmt="d")
    files["e03.npy"] = npy_bytes(x, (1, C, H, W), fortran=True)
    files["e04.npy"] = good[:len(good) - 4 * n_in // 2]
    files["e05.npy"] = npy_bytes(x + x[:C * H], (1, C, H, W + 1))
    files["e06.npy"] = npy_bytes(x, (), header="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 5), ")
    files["e07.npy"] = npy_bytes(x, (1, C, H, W), version=(9, 0))
    files["e08.npy"] = npy_bytes([int(v * 100) for v in x], (1, C, H, W), descr="<i4", fmt="i")
    files["e09.npy"] = npy_bytes(x, (1, C, H, W), descr=">f4")
    files["e10.npy"] = npy_bytes(x, (C, H, W))
    files["e11.npy"] = good[:6]
    files["e12.npy"] = good[:8] + struct.pack("<H", 60000) + good[10:200]

    # --- malformed .safetensors weights
    ok = files["ok_weights.safetensors"]
    (hlen,) = struct.unpack("<Q", ok[:8])
    files["s01.safetensors"] = struct.pack("<Q", 1 << 63) + ok[8:]
    files["s02.safetensors"] = ok[:8 + hlen + (len(ok) - 8 - hlen) // 2]
    files["s03.safetensors"] = st_bytes(weights(change=lambda e: (e[0], e[1], [C, C, 5, 5], f32([0.01] * (C * C * 25)))
                                                if e[0] == "conv.weight" else e))
    files["s04.safetensors"] = st_bytes(weights(skip=("bn.running_var",)))

    def past_end(h):
        b, e = h["conv.weight"]["data_offsets"]
        h["conv.weight"]["data_offsets"] = [b + 100000, e + 100000]
    files["s05.safetensors"] = st_bytes(weights(), past_end)
    bad_json = ok[8:8 + hlen].replace(b'"conv.weight":{', b'"conv.weight" {', 1)  # same length, no colon
    files["s06.safetensors"] = struct.pack("<Q", len(bad_json)) + bad_json + ok[8 + hlen:]
    files["s07.safetensors"] = ok[:4]
    files["s08.safetensors"] = st_bytes(weights(change=lambda e: (e[0], "F64", e[2], struct.pack("<4d", 1, 1, 1, 1))
                                                if e[0] == "bn.weight" else e))

    def overlap(h):
        h["bn.bias"]["data_offsets"] = list(h["bn.weight"]["data_offsets"])
    files["s09.safetensors"] = st_bytes(weights(), overlap)

    def short(h):
        b, e = h["conv.weight"]["data_offsets"]
        h["conv.weight"]["data_offsets"] = [b, e - 4]
    files["s10.safetensors"] = st_bytes(weights(), short)
    arr = b'[{"conv.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}]'
    arr += b" " * (-len(arr) % 8)
    files["s11.safetensors"] = struct.pack("<Q", len(arr)) + arr + b"\0" * 16
    files["s12.safetensors"] = st_bytes(weights(change=lambda e: (e[0], e[1], [5], f32([1.0] * 5))
                                                if e[0] == "bn.weight" else e))

    def reversed_offsets(h):
        b, e = h["bn.bias"]["data_offsets"]
        h["bn.bias"]["data_offsets"] = [e, b]
    files["s13.safetensors"] = st_bytes(weights(), reversed_offsets)
    files["s14.safetensors"] = struct.pack("<Q", 1000) + ok[8:300]
    files["s15.safetensors"] = st_bytes(weights(change=lambda e: (e[0], "I32", e[2], e[3]) if e[0] == "conv.weight" else e))

    for name in sorted(files):
        with open(os.path.join(DATA, name), "wb") as f:
            f.write(files[name])
    print("wrote %d files to %s" % (len(files), DATA))
    return 0


if __name__ == "__main__":
    sys.exit(main())
