#!/usr/bin/env python3
"""Dumps a GGUF file's metadata and tensor table as JSON with gguf-py's reader.

Used by the test suite as an independent reference for `hearth inspect --json --full`.
Usage: python3 scripts/gguf_dump.py MODEL.gguf
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def main():
    r = GGUFReader(sys.argv[1])
    meta, types = {}, {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # header pseudo-fields
        meta[name] = plain(field.contents())
        t = field.types
        types[name] = t[0].name if len(t) == 1 else f"{t[0].name}[{t[-1].name}]"
    tensors = [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "offset": int(t.data_offset),
            "bytes": int(t.n_bytes),
        }
        for t in r.tensors
    ]
    json.dump({"metadata": meta, "types": types, "tensors": tensors}, sys.stdout)


if __name__ == "__main__":
    main()
