"""Reads every shard of a preprocessed folder with pyarrow, the way a Python user would,
and checks it against the documented schema and the manifest.

    python tests/python/check_shards.py DIR [DIR...]

Exits non-zero with a message on the first mismatch; prints one line per shard otherwise.
"""
import hashlib
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

EXPECTED = {
    "doc_id": pa.uint64(),
    "source": pa.uint32(),
    "input_ids": pa.list_(pa.uint32()),
    "sentence_ends": pa.list_(pa.uint32()),
    # Bit-packed (schema version 2): token i of a document is bit i % 8 of byte i // 8.
    "word_starts": pa.binary(),
}
METADATA_KEYS = [
    b"electra.schema_version",
    b"electra.tokenizer_sha256",
    b"electra.tool_version",
    b"electra.source_files",
]


def fail(msg):
    print(f"check_shards: {msg}", file=sys.stderr)
    sys.exit(1)


def check(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    if not manifest["shards"]:
        fail(f"{folder}: manifest lists no shards")
    for entry in manifest["shards"]:
        path = os.path.join(folder, entry["path"])
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            fail(f"{path}: sha256 differs from the manifest")
        if len(data) != entry["bytes"]:
            fail(f"{path}: {len(data)} bytes, manifest says {entry['bytes']}")
        pf = pq.ParquetFile(path)
        meta = pf.metadata.metadata or {}
        for key in METADATA_KEYS:
            if key not in meta:
                fail(f"{path}: metadata lacks {key!r}")
        if meta[b"electra.tokenizer_sha256"].decode() != manifest["tokenizer_sha256"]:
            fail(f"{path}: tokenizer hash differs from the manifest")
        table = pf.read()
        for name, typ in EXPECTED.items():
            if name not in table.schema.names:
                fail(f"{path}: missing column {name}")
            got = table.schema.field(name).type
            if not got.equals(typ) and not (
                pa.types.is_list(got) and pa.types.is_list(typ) and got.value_type.equals(typ.value_type)
            ):
                fail(f"{path}: column {name} is {got}, expected {typ}")
        tokens = sum(len(ids) for ids in table.column("input_ids").to_pylist())
        if table.num_rows != entry["rows"]:
            fail(f"{path}: {table.num_rows} rows, manifest says {entry['rows']}")
        if tokens != entry["tokens"]:
            fail(f"{path}: {tokens} tokens, manifest says {entry['tokens']}")
        ends = table.column("sentence_ends").to_pylist()
        ids = table.column("input_ids").to_pylist()
        words = table.column("word_starts").to_pylist()
        for row, (e, i, w) in enumerate(zip(ends, ids, words)):
            if not e or e[-1] != len(i) or any(a >= b for a, b in zip(e, e[1:])):
                fail(f"{path}: row {row}: sentence_ends {e[:5]}... do not end at {len(i)} tokens")
            if len(w) != (len(i) + 7) // 8 or not w[0] & 1:
                fail(f"{path}: row {row}: word_starts is {len(w)} bytes for {len(i)} tokens, "
                     "or the first token starts no word")
        print(f"ok {path}: {table.num_rows} rows, {tokens} tokens, compression "
              f"{pf.metadata.row_group(0).column(2).compression}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        fail("usage: check_shards.py DIR [DIR...]")
    for d in sys.argv[1:]:
        check(d)
