#!/usr/bin/env python3
"""Dequantizes the first ROWS rows of every tensor of a GGUF file with gguf-py.

Writes OUT_DIR/<tensor name>.f32 (little-endian float32, row-major) for each
tensor; the test suite compares hearth's dequantization against these.
Usage: python3 scripts/gguf_rows.py MODEL.gguf OUT_DIR ROWS
"""
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    path, out_dir, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out_dir, exist_ok=True)
    r = GGUFReader(path)
    for t in r.tensors:
        # t.data is (n_rows, row_bytes) for quantized types, (n_rows, ne0) otherwise.
        data = t.data.reshape(-1, t.data.shape[-1])[:rows]
        values = dequantize(data, t.tensor_type).astype(np.float32, copy=False)
        values.tofile(os.path.join(out_dir, t.name + ".f32"))


if __name__ == "__main__":
    main()
