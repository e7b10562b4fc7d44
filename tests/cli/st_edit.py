#!/usr/bin/env python3
"""Rewrites a safetensors file with a damaged header, for the bad-input tests (stdlib only).

usage: st_edit.py IN OUT ACTION [ARGS]
  offset-past-end NAME      data_offsets of NAME end far past the file
  shape-bytes NAME          shape of NAME no longer matches its byte length
  dtype NAME DTYPE          dtype of NAME set to DTYPE
  drop NAME                 NAME removed from the header (its bytes stay)
  transpose NAME            shape of NAME reversed (same byte length, wrong for the config)
  dup NAME NEW              a tensor NEW of NAME's dtype and shape, a copy of its bytes appended
  fill NAME ROW VALUE       row ROW of the F32 matrix NAME set to VALUE (nan, inf, -inf or a number)
"""
import json, struct, sys

def main():
    src, dst, action, *args = sys.argv[1:]
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    name = args[0]
    if name not in header:
        sys.exit(f"st_edit: no tensor {name!r} in {src}")
    t = header[name]
    if action == "offset-past-end":
        t["data_offsets"] = [t["data_offsets"][0], len(body) + 4096]
    elif action == "shape-bytes":
        t["shape"] = [d + 1 for d in t["shape"]]
    elif action == "dtype":
        t["dtype"] = args[1]
    elif action == "drop":
        del header[name]
    elif action == "transpose":
        t["shape"] = list(reversed(t["shape"]))
    elif action == "fill":
        a, _ = t["data_offsets"]
        cols, row = t["shape"][-1], int(args[1])
        start = a + row * cols * 4
        body = body[:start] + struct.pack("<f", float(args[2])) * cols + body[start + cols * 4:]
    elif action == "dup":
        a, b = t["data_offsets"]
        header[args[1]] = dict(t, data_offsets=[len(body), len(body) + b - a])
        body += body[a:b]
    else:
        sys.exit(f"st_edit: unknown action {action}")
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + body)

if __name__ == "__main__":
    main()
