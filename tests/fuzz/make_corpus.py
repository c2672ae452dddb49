#!/usr/bin/python3
"""Writes the seed corpora of convgen's fuzz targets: corpus/<target>/, a few valid and a few
hostile inputs each. Deterministic; re-run after changing it (it only adds or overwrites its own
seed files, so regression inputs committed beside them, named regress-*, are kept):

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import io
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- layer specs -----------------------------------------------------------------------------
def spec_corpus():
    t = "fuzz_spec"
    write(t, "valid-conv", "conv name=resnet_3x3 c1=64 c2=64 h=56 w=56 k=3 s=1 g=1 act=relu")
    write(t, "valid-grouped", "conv c1=128 c2=128 h=56 w=56 k=3 s=2 g=32 act=leaky alpha=0.2 layout=nhwc")
    write(t, "valid-dwconv", "dwconv name=mbv1_b1 c1=32 c2=64 h=112 w=112 k=3 act=relu dw_act=relu6 dw_bn=1 eps=0.001")
    write(t, "valid-normalised",
          "dwconv n=1 c1=16 c2=24 h=15 w=15 k=3 s=2 p=1 act=relu6 bn=1 dw_act=relu6 dw_bn=1 eps=1e-05 layout=nchw")
    write(t, "valid-suite",
          "# a suite\nconv c1=3 c2=8 h=9 w=9 k=3 act=silu  # trailing comment\n\n"
          "dwconv c1=8 c2=8 h=4 w=4 k=5 p=2 act=gelu_tanh dw_act=hardswish bn=0 dtype=f32\n"
          "conv n=2 c1=4 c2=4 h=1 w=1 k=1 g=4 act=identity bn=0\n")
    write(t, "bad-overflow", "conv c1=2147483647 c2=2147483647 h=65536 w=65536 k=1")
    write(t, "bad-huge-k", "conv c1=1 c2=1 h=8 w=8 k=2147483647")
    write(t, "bad-huge-p", "conv c1=1 c2=1 h=2147483647 w=1 k=64 p=319")
    write(t, "bad-min-int", "conv c1=-2147483648 c2=1 h=1 w=1 k=1 s=-1 p=-2147483648")
    write(t, "bad-floats", "conv c1=1 c2=1 h=1 w=1 k=1 act=leaky alpha=1e39 eps=nan")
    write(t, "bad-duplicate", "conv c1=1 c1=1 c2=1 h=1 w=1 k=1 g=0")
    write(t, "bad-non-utf8", b"conv name=\xff\xfe\x00 c1=1 c2=1 h=1 w=1 k=1 layout=\xc3\x28")
    write(t, "bad-suite", "conv c1=1 c2=1 h=1 w=1 k=1\nconv c1=1\x00\r\n=\n" + "dwconv " * 50)


# ---- .npy ------------------------------------------------------------------------------------
def npy_bytes(array, version=None):
    f = io.BytesIO()
    if version is None:
        np.save(f, array)
    else:
        np.lib.format.write_array(f, array, version=version)
    return f.getvalue()


def npy_raw(header, data=b"", major=1, header_len=None):
    h = header.encode("latin-1") if isinstance(header, str) else header
    n = len(h) if header_len is None else header_len
    length = struct.pack("<H", n) if major == 1 else struct.pack("<I", n)
    return b"\x93NUMPY" + bytes([major, 0]) + length + h + data


def npy_corpus():
    t = "fuzz_npy"
    write(t, "valid-2x3", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)))
    write(t, "valid-nchw", npy_bytes(np.linspace(-1, 1, 8, dtype="<f4").reshape(1, 2, 2, 2)))
    write(t, "valid-scalar", npy_bytes(np.float32(3.5)))
    write(t, "valid-empty", npy_bytes(np.zeros((0, 5), dtype="<f4")))
    write(t, "valid-v2", npy_bytes(np.ones((3,), dtype="<f4"), version=(2, 0)))
    write(t, "valid-v3-utf8", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }   \n",
                                      b"\0\0\x80\x3f", major=3))
    write(t, "valid-py2", npy_raw("{u'descr': u'<f4', 'fortran_order': False, 'shape': (2L,), }\n", b"\0" * 8))
    write(t, "bad-header-past-end", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n",
                                            header_len=0xffff))
    write(t, "bad-header-len-u32", npy_raw("{}", major=2, header_len=0xffffffff))
    write(t, "bad-huge-shape", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n"))
    write(t, "bad-huge-zero", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 0, 9223372036854775807), }\n"))
    write(t, "bad-negative", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, -9223372036854775808), }\n"))
    write(t, "bad-dtype-f8", npy_bytes(np.zeros((2,), dtype="<f8")))
    write(t, "bad-fortran", npy_bytes(np.asfortranarray(np.zeros((2, 2), dtype="<f4"))))
    write(t, "bad-truncated", npy_bytes(np.zeros((4, 4), dtype="<f4"))[:-5])
    write(t, "bad-nul-non-utf8", npy_raw(b"{'descr': '<f4\x00\xff', 'fortran_order': False, 'shape': (1,), }\n", b"\0" * 4))
    write(t, "bad-magic", b"\x93NUMPZ\x01\x00\x00\x00")


# ---- .safetensors ----------------------------------------------------------------------------
def st_raw(header, data=b"", header_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def st_corpus():
    t = "fuzz_safetensors"
    w = np.arange(6, dtype="<f4")
    write(t, "valid-f32", st_raw({"conv.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, w.tobytes()))
    write(t, "valid-mixed", st_raw({
        "__metadata__": {"format": "pt"},
        "bn.weight": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
        "bn.bias": {"dtype": "BF16", "shape": [2], "data_offsets": [4, 8]},
        "empty": {"dtype": "F32", "shape": [0, 7], "data_offsets": [8, 8]},
        "ints": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
    }, np.array([1, -2], "<f2").tobytes() + b"\x80\x3f\x00\xc0" + b"\x01" * 8))
    write(t, "valid-empty", st_raw({}))
    write(t, "bad-header-len-max", st_raw({}, header_len=0xffffffffffffffff))
    write(t, "bad-header-past-end", st_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, header_len=1000))
    write(t, "bad-offsets-past-end", st_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]}}, b"\0" * 4))
    write(t, "bad-overlap", st_raw({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }, b"\0" * 12))
    write(t, "bad-gap", st_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8))
    write(t, "bad-huge-shape", st_raw({"a": {"dtype": "F64", "shape": [4294967296, 4294967296, 0, 9223372036854775807], "data_offsets": [0, 0]}}))
    write(t, "bad-huge-numel", st_raw({"a": {"dtype": "F32", "shape": [2305843009213693952], "data_offsets": [0, 8]}}, b"\0" * 8))
    write(t, "bad-negative", st_raw(b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[-4,0]}}'))
    write(t, "bad-non-utf8", st_raw(b'{"\xff\xfe":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', b"\0" * 4))
    write(t, "bad-escaped-name", st_raw(b'{"\\u0000\\ud83d\\ude00":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}', b"\0" * 2))
    write(t, "bad-deep", st_raw(b'{"__metadata__":' + b"[" * 200 + b"]" * 200 + b"}"))
    write(t, "bad-duplicate", st_raw(b'{"a":{"dtype":"F32","dtype":"F16","shape":[],"data_offsets":[0,4]}}', b"\0" * 4))
    write(t, "bad-types", st_raw(b'{"a":{"dtype":7,"shape":{},"data_offsets":[0.5,1e400]},"__metadata__":{"k":1}}'))


# ---- schedule database and schedule text ------------------------------------------------------
def db_corpus():
    t = "fuzz_schedule_db"
    record = {
        "spec": "conv n=1 c1=16 c2=32 h=20 w=20 k=3 s=1 p=1 g=1 act=relu bn=1 eps=1e-05 layout=nchw",
        "target": "x86-64-linux-avx-avx2-f16c-fma-sse41", "threads": 1,
        "schedule": "vec=8 tile_vectors=1 tile_rows=3 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=0",
        "median_ms": 0.01, "gflops": 1.0, "heuristic_ms": 0.012, "cpu": "test fixture CPU", "convgen": "0.1.0",
        "halide": "14.0.0", "date": "2026-11-28T00:00:00Z", "complete": True, "candidates": 1,
    }
    dw = dict(record, spec="dwconv n=1 c1=16 c2=24 h=15 w=15 k=3 s=2 p=1 act=relu6 bn=1 dw_act=relu6 dw_bn=1 eps=1e-05 layout=nchw",
              schedule="vec=8 tile_vectors=1 tile_rows=2 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=1", threads=4)
    auto = dict(record, spec="conv n=1 c1=8 c2=8 h=10 w=10 k=3 s=1 p=1 g=8 act=leaky alpha=0.1 bn=0 layout=nhwc",
                schedule="auto=Adams2019", complete=False)
    db = lambda records: json.dumps({"format": "convgen-schedule-db", "version": 1, "records": records}, indent=1)
    write(t, "valid-db", db([record, dw, auto]))
    write(t, "valid-empty-db", db([]))
    write(t, "valid-schedule-text", "vec=16 tile_vectors=2 tile_rows=5 parallel_rows=3 channels=1 channel_tasks=0 dw_per_task=0")
    write(t, "valid-schedule-auto", "auto=Li2018")
    minimal = {k: v for k, v in record.items() if k not in ("heuristic_ms", "candidates")}
    write(t, "valid-minimal-record", db([minimal, dict(minimal, cpu="other CPU")]))
    write(t, "bad-types", db([dict(record, threads=1e300, heuristic_ms="fast", candidates=-1.5e20)]))
    write(t, "bad-huge-threads", db([dict(record, threads=2147483647), dict(record, threads=4294967296)]))
    write(t, "valid-max-threads", db([dict(record, threads=2147483647, candidates=2147483647),
                                      dict(record, threads=2147483647, cpu="another CPU")]))
    write(t, "bad-format-type", '{"format": 5, "version": "1", "records": {}}')
    write(t, "bad-version", '{"format": "convgen-schedule-db", "version": 1.5e300, "records": []}')
    write(t, "bad-spec", db([dict(record, spec="conv c1=16 c2=32 h=20 w=20 k=3"), dict(record, spec="\u00ff\u0000")]))
    write(t, "bad-schedule", db([dict(record, schedule="vec=99999999999 tile_rows=0x10 = auto=x")]))
    write(t, "bad-deep", '{"format": "convgen-schedule-db", "version": 1, "records": [' + "[" * 300 + "]" * 300 + "]}")
    write(t, "bad-non-utf8", b'{"format": "convgen-schedule-db\xff", "records": [\xc3\x28]}')
    write(t, "bad-schedule-text", "vec=2147483648 tile_vectors=-0 channels=+1 dw_per_task= =5 auto=")


spec_corpus()
npy_corpus()
st_corpus()
db_corpus()
