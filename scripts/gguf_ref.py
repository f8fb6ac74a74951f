#!/usr/bin/env python3
"""Reference (de)quantization through gguf-py's numpy code (`gguf.quants`).

Used by crates/hearth-kernels/tests/gguf_py_parity.rs to check the Rust
kernels bit for bit against the PyPI `gguf` package.

    python3 scripts/gguf_ref.py dequant TYPE IN.bin OUT.f32
        raw block bytes of TYPE in, little-endian f32 out
    python3 scripts/gguf_ref.py quant TYPE IN.f32 OUT.bin
        little-endian f32 in, block bytes of TYPE out

TYPE is the ggml type name (Q4_K, IQ2_XXS, BF16, ...). Exits 2 when TYPE is
unknown or gguf.quants does not implement the conversion, 3 when gguf or
numpy is missing, 4 on bad input sizes.
"""

import sys

INSTALL_HINT = "pip install gguf==0.19.0 numpy"


def fail(code: int, msg: str) -> "NoReturn":  # type: ignore[name-defined]
    print(f"gguf_ref.py: {msg}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str]) -> None:
    if len(argv) != 5 or argv[1] not in ("dequant", "quant"):
        fail(2, "usage: gguf_ref.py {dequant|quant} TYPE IN OUT")
    op, type_name, in_path, out_path = argv[1:]

    try:
        import numpy as np
        import gguf
        from gguf import quants
    except ImportError as e:
        fail(3, f"cannot import gguf/numpy ({e}); run: {INSTALL_HINT}")

    try:
        qtype = gguf.GGMLQuantizationType[type_name.upper()]
    except KeyError:
        fail(2, f"unknown ggml type {type_name!r}")
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]

    # Probe support on one zero block first, so an unsupported type reports
    # that rather than a size problem.
    try:
        if op == "dequant":
            quants.dequantize(np.zeros(type_size, dtype=np.uint8), qtype)
        else:
            quants.quantize(np.zeros(block_size, dtype=np.float32), qtype)
    except NotImplementedError as e:
        fail(2, f"gguf.quants does not implement {op} for {qtype.name}: {e}")

    with open(in_path, "rb") as f:
        raw = f.read()

    if op == "dequant":
        if len(raw) % type_size != 0:
            fail(4, f"{len(raw)} bytes is not a whole number of {qtype.name} blocks ({type_size} bytes)")
        data = np.frombuffer(raw, dtype=np.uint8)
        out = quants.dequantize(data, qtype)
        out = np.ascontiguousarray(out, dtype="<f4")
    else:
        if len(raw) % 4 != 0 or (len(raw) // 4) % block_size != 0:
            fail(4, f"{len(raw)} bytes is not a whole number of {qtype.name} blocks of f32")
        data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        out = quants.quantize(data, qtype)
        out = np.ascontiguousarray(out).view(np.uint8)

    with open(out_path, "wb") as f:
        f.write(out.tobytes())


if __name__ == "__main__":
    main(sys.argv)
