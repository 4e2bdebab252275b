#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (run once; the files are committed)."""
import gzip
import io
import os
import random
import struct
import zipfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- npz: the parameters of MLP({3, 4, 2}) as numpy writes them, stored and deflated.
rng = np.random.default_rng(0)
params = {
    "layers.0.weight": rng.standard_normal((4, 3)).astype(np.float32),
    "layers.0.bias": rng.standard_normal(4).astype(np.float32),
    "layers.2.weight": rng.standard_normal((2, 4)).astype(np.float32),
    "layers.2.bias": rng.standard_normal(2).astype(np.float32),
}
for name, saver in (("mlp_stored.npz", np.savez), ("mlp_deflated.npz", np.savez_compressed)):
    buf = io.BytesIO()
    saver(buf, **params)
    out("npz", name, buf.getvalue())
buf = io.BytesIO()
np.savez(buf, **{k: v.astype(np.float64) for k, v in params.items()})
out("npz", "mlp_f64.npz", buf.getvalue())
buf = io.BytesIO()
np.savez(buf, step=np.int64(3), state=np.arange(4, dtype=np.uint64), x=np.ones((2, 2), ">f8"))
out("npz", "mixed_types.npz", buf.getvalue())
buf = io.BytesIO()
np.savez(buf, ids=np.array([[3, -1], [7, 0]], dtype=np.int64), mask=np.array([True, False, True]),
         big=np.array([1, 2], dtype=">i8"))
out("npz", "int64_bool.npz", buf.getvalue())
buf = io.BytesIO()
np.save(buf, np.arange(6, dtype=np.float32).reshape(2, 3))
out("npz", "plain.npy", buf.getvalue())
buf = io.BytesIO()
np.save(buf, np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)))
out("npz", "fortran.npy", buf.getvalue())

# --- idx: every element type, plain and gzip.
def idx(code, dims, payload):
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + b"".join(
        struct.pack(">I", d) for d in dims) + payload

out("idx", "ubyte_2x2x2", idx(0x08, [2, 2, 2], bytes(range(8))))
out("idx", "sbyte_3", idx(0x09, [3], bytes([0xFF, 0, 1])))
out("idx", "short_2", idx(0x0B, [2], struct.pack(">hh", -2, 300)))
out("idx", "int_2x1", idx(0x0C, [2, 1], struct.pack(">ii", -7, 1 << 20)))
out("idx", "float_3", idx(0x0D, [3], struct.pack(">fff", 0.5, -1.0, 3.25)))
out("idx", "double_2", idx(0x0E, [2], struct.pack(">dd", 1e300, -0.0)))
out("idx", "labels_4.gz", gzip.compress(idx(0x08, [4], bytes([0, 9, 3, 1])), mtime=0))

# --- csv
out("csv", "classification.csv", b"label,x1,x2\n0,0.5,1.5\n1,-2,3e-2\n2,4,5\n")
out("csv", "regression.csv", b"a, b ,y\n1,2,3\n\n4,5,6.5\n")
out("csv", "crlf.csv", b"label,x\r\n1,2\r\n0,1\r\n")
out("csv", "header_only.csv", b"label,x\n")
out("csv", "special.csv", b"label,x\n1,nan\n0,inf\n1,-1e400\n")

# --- ops: byte strings that FuzzedDataProvider turns into small programs.
r = random.Random(1)
for i in range(12):
    out("ops", "seed_%02d" % i, bytes(r.randrange(256) for _ in range(48 + 8 * i)))
