#!/usr/bin/env python3
"""Rewrites a GGUF file with one damaged field, for the bad-input tests (stdlib only).

usage: gguf_edit.py IN OUT ACTION [ARGS]
  magic                      first four bytes become "GGML"
  version N                  version field set to N
  tensor-count N             tensor_count set to N (the infos themselves stay)
  kv-count N                 metadata_kv_count set to N
  offset-past-end NAME       NAME's data offset points far past the end of the file
  misaligned NAME            NAME's data offset is no longer a multiple of the alignment
  type NAME ID               NAME's ggml type id set to ID
  dup NAME NEW [TYPE]        a tensor NEW of NAME's shape (and type, or TYPE), its zero bytes appended
  swap-dims NAME             NAME's ne[0] and ne[1] swapped (same byte size, wrong shape)
  rename NAME NEW            NAME renamed (e.g. to drop a tensor the loader needs)
  set-u32 KEY VALUE          a u32 metadata value replaced
  add-u32 KEY VALUE          a u32 metadata value added
  set-str KEY VALUE          a string metadata value replaced
  del-key KEY                a metadata key removed
The header is re-serialized and the data section moved to the next aligned offset; tensor
offsets (relative to the data section) are kept unless the action changes them.
"""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class R:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def s(self):
        return self.take(self.u64())


def value_raw(r, t):
    start = r.p
    if t == 8:
        r.s()
    elif t == 9:
        et, n = r.u32(), r.u64()
        for _ in range(n):
            value_raw(r, et)
    else:
        r.take(SIZES[t])
    return r.b[start:r.p]


# ggml type id -> (elements per block, bytes per block), for the types dup takes
TYPE_BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 6: (32, 22), 8: (32, 34), 12: (256, 144), 14: (256, 210)}


def main():
    src, dst, action, *args = sys.argv[1:]
    b = open(src, "rb").read()
    r = R(b)
    magic, version, nt, nkv = r.take(4), r.u32(), r.u64(), r.u64()
    kvs = []
    for _ in range(nkv):
        k = r.s()
        t = r.u32()
        kvs.append([k, t, value_raw(r, t)])
    infos = []
    for _ in range(nt):
        name = r.s()
        nd = r.u32()
        ne = [r.u64() for _ in range(nd)]
        infos.append([name, ne, r.u32(), r.u64()])
    align = 32
    for k, t, v in kvs:
        if k == b"general.alignment":
            align = struct.unpack("<I", v)[0]
    data = b[(r.p + align - 1) // align * align:]

    def find(name):
        for i in infos:
            if i[0] == name.encode():
                return i
        sys.exit(f"gguf_edit: no tensor {name!r}")

    def kv(key):
        for e in kvs:
            if e[0] == key.encode():
                return e
        sys.exit(f"gguf_edit: no key {key!r}")

    if action == "magic":
        magic = b"GGML"
    elif action == "version":
        version = int(args[0])
    elif action == "tensor-count":
        nt = int(args[0])
    elif action == "kv-count":
        nkv = int(args[0])
    elif action == "offset-past-end":
        find(args[0])[3] = (len(data) + 4096) // align * align
    elif action == "misaligned":
        find(args[0])[3] += 1
    elif action == "type":
        find(args[0])[2] = int(args[1])
    elif action == "swap-dims":
        ne = find(args[0])[1]
        ne[0], ne[1] = ne[1], ne[0]
    elif action == "rename":
        find(args[0])[0] = args[1].encode()
    elif action == "dup":  # a tensor NEW of NAME's shape (type as NAME, or TYPE), zeros appended to the data
        i = find(args[0])
        t = int(args[2]) if len(args) > 2 else i[2]
        blk, size = TYPE_BLOCK[t]
        n = 1
        for d in i[1]:
            n *= d
        data += b"\0" * (-len(data) % align)
        infos.append([args[1].encode(), list(i[1]), t, len(data)])
        data += b"\0" * (n // blk * size)
        nt += 1
    elif action == "set-u32":
        kv(args[0])[2] = struct.pack("<I", int(args[1]))
    elif action == "add-u32":
        kvs.append([args[0].encode(), 4, struct.pack("<I", int(args[1]))])
        nkv += 1
    elif action == "set-str":
        v = args[1].encode()
        kv(args[0])[2] = struct.pack("<Q", len(v)) + v
    elif action == "del-key":
        e = kv(args[0])
        kvs.remove(e)
        nkv -= 1
    else:
        sys.exit(f"gguf_edit: unknown action {action}")
    out = bytearray(magic + struct.pack("<IQQ", version, nt, nkv))
    for k, t, v in kvs:
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + v
    for name, ne, t, off in infos:
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, off)
    out += b"\0" * (-len(out) % align)
    open(dst, "wb").write(bytes(out) + data)


if __name__ == "__main__":
    main()
