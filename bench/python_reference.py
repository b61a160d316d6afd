#!/usr/bin/env python3
"""The Python reference for `electra bench pipeline`: what a Python user writes to turn the
same zstd corpus files into masked MLM/ELECTRA batches with the same tokenizer.

    .venv/bin/python bench/python_reference.py [--data GLOB...] [--tokenizer FILE]
        [--procs N] [--max-mb MB] [--mode map|streaming] [--mask electra|bert] [--json]

The path, as in transformers' `examples/pytorch/language-modeling/run_mlm.py`:

1. `datasets.load_dataset("text" | "json", data_files=..., split="train")` on the `.zst`
   files (plain text: one row a line; JSONL: the `text` field), concatenated;
2. `Dataset.map(tokenize, batched=True, num_proc=N)` with the fast tokenizer
   (`PreTrainedTokenizerFast(tokenizer_file=...)`), `[CLS] line [SEP]` per row, empty
   lines dropped;
3. `Dataset.map(group_texts, batched=True, num_proc=N)`: concatenate and cut into blocks of
   `--seq-len` (128), the remainder of each map batch dropped (run_mlm.py's packing);
4. `DataCollatorForLanguageModeling` (mlm_probability 0.15; ELECTRA's masking: 85% [MASK],
   15% kept, no random replacement; or BERT's 80/10/10 with `--mask bert`) through a
   `torch.utils.data.DataLoader` with batch size 128 (`num_workers=N` when N > 1), until
   every masked batch exists.

`--mode streaming` does the same with `load_dataset(..., streaming=True)` (an
`IterableDataset`, lazily reading the files) and DataLoader workers instead of num_proc.

Timing: `seconds` runs from the tokenize step to the last masked batch. Loading
(zstd -> Arrow, a one-time cost that `datasets` caches for later epochs) is timed on its
own as `load_seconds`; `tokens_per_sec_incl_load` adds it (only when the whole corpus is
used). In streaming mode reading is inside `seconds`. Tokens are real tokens: every token of
every packed block (group_texts never pads), specials included.

Cores: every process is single-threaded (TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1,
one torch thread), so `--procs N` uses N cores. `tokenizer_tokens_per_sec` is the bare fast
tokenizer through Python (`tokenizer(batch_of_1000_rows, add_special_tokens=False)`, one
thread) on the same text. `peak_rss_bytes` is the peak of the summed RSS of this process and
its children, sampled every 50 ms (shared copy-on-write pages count once per process).

Offline only: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set and only
local files are opened; the `datasets` cache is a fresh temporary folder, deleted at exit,
so no run reuses another's cache.
"""

import os

# Before any Hugging Face import: nothing may be downloaded, and one thread per process.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from itertools import chain  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The defaults are the repository's own: the embedded corpus and tokenizer.
DEFAULT_DATA = os.path.join(ROOT, "data", "corpus", "*.zst")
DEFAULT_TOKENIZER = os.path.join(ROOT, "data", "tokenizer", "bert-base-uncased", "tokenizer.json")
SPECIALS = {
    "unk_token": ["[UNK]", "<unk>"],
    "sep_token": ["[SEP]", "</s>"],
    "pad_token": ["[PAD]", "<pad>"],
    "cls_token": ["[CLS]", "<s>"],
    "mask_token": ["[MASK]", "<mask>"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=[DEFAULT_DATA],
                   help="corpus files or globs: *.txt[.zst] plain text, *.jsonl[.zst] / *.json[.zst] JSONL with a `text` field"
                        " (default: the embedded corpus, data/corpus/*.zst)")
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                   help="a tokenizer.json (default: the embedded bert-base-uncased)")
    p.add_argument("--procs", type=int, default=1, help="processes (num_proc / DataLoader workers); 1 = this process only")
    p.add_argument("--max-mb", type=float, default=None, help="use only the first MB of text (rows in file order)")
    p.add_argument("--mode", choices=["map", "streaming"], default="map")
    p.add_argument("--mask", choices=["electra", "bert"], default="electra",
                   help="electra: 85%% [MASK] / 15%% kept; bert: 80/10/10")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--mlm-probability", type=float, default=0.15)
    p.add_argument("--map-batch-size", type=int, default=1000, help="rows per batched map call (datasets' default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


class RssSampler:
    """Peak of the summed RSS of this process and all its descendants."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _tree_rss(self):
        me = os.getpid()
        parents = {}
        rss = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                fields = stat[stat.rindex(")") + 2:].split()
                parents[int(d)] = int(fields[1])
                rss[int(d)] = int(fields[21]) * self._page
            except (OSError, ValueError, IndexError):
                continue
        total = 0
        for pid in rss:
            p = pid
            for _ in range(64):
                if p == me:
                    total += rss[pid]
                    break
                p = parents.get(p, 0)
                if p <= 1:
                    break
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._tree_rss(),
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def expand(patterns):
    files = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
        if not hits:
            sys.exit(f"python_reference: no file matches {pat}")
        for h in hits:
            if not os.path.isfile(h):
                sys.exit(f"python_reference: not a file: {h}")
            files.append(h)
    return files


def builder_of(path):
    name = os.path.basename(path)
    for ext in (".zst", ".gz", ".bz2", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    if name.endswith((".jsonl", ".json")):
        return "json"
    return "text"


def load_tokenizer(path):
    from transformers import PreTrainedTokenizerFast

    with open(path, encoding="utf-8") as f:
        added = {t["content"] for t in json.load(f).get("added_tokens", [])}
    kwargs = {}
    for key, names in SPECIALS.items():
        for n in names:
            if n in added:
                kwargs[key] = n
                break
    tok = PreTrainedTokenizerFast(tokenizer_file=path, **kwargs)
    tok.model_max_length = 1 << 30  # whole documents are tokenized, then packed
    if tok.mask_token is None or tok.pad_token is None:
        sys.exit(f"python_reference: {path} has no [MASK]/[PAD] token")
    return tok


def load(files, cache_dir, streaming):
    """The corpus as one Dataset (or IterableDataset) with a single `text` column."""
    import datasets

    parts = []
    text_files = [f for f in files if builder_of(f) == "text"]
    if text_files:
        parts.append(datasets.load_dataset("text", data_files=text_files, split="train",
                                           cache_dir=cache_dir, streaming=streaming))
    for f in files:  # JSONL files have different columns: one load each, keep `text`
        if builder_of(f) == "json":
            ds = datasets.load_dataset("json", data_files=[f], split="train",
                                       cache_dir=cache_dir, streaming=streaming)
            parts.append(ds.select_columns(["text"]))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def limit_rows(ds, max_mb):
    """The first rows of `ds` holding at least `max_mb` MB of text."""
    import pyarrow.compute as pc

    limit = max_mb * 1e6
    total = 0
    n = 0
    col = ds.data.column("text")
    for chunk in col.chunks:
        lens = pc.fill_null(pc.binary_length(chunk), 0).to_numpy(zero_copy_only=False)
        for ln in lens:
            if total >= limit:
                return ds.select(range(n)), total
            total += int(ln)
            n += 1
    return ds, total


def text_bytes(ds):
    import pyarrow.compute as pc

    return int(pc.sum(pc.binary_length(ds.data.column("text"))).as_py() or 0)


def bare_tokenizer(tok, ds, map_batch_size):
    """Tokens/s of `tokenizer(batch)` alone on the same rows, one thread."""
    n_tokens = 0
    t0 = time.perf_counter()
    for start in range(0, len(ds), map_batch_size):
        rows = ds[start:start + map_batch_size]["text"]
        enc = tok(rows, add_special_tokens=False)
        n_tokens += sum(len(ids) for ids in enc["input_ids"])
    return n_tokens, time.perf_counter() - t0


def main(argv=None):
    args = parse_args(argv)
    files = expand(args.data)
    tok_path = args.tokenizer
    if not os.path.isfile(tok_path):
        sys.exit(f"python_reference: tokenizer not found: {tok_path}")
    if args.procs < 1:
        sys.exit("python_reference: --procs must be >= 1")

    import datasets
    import torch
    import transformers
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling

    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()

    tok = load_tokenizer(tok_path)
    seq_len = args.seq_len
    if args.mask == "electra":
        mask_replace_prob, random_replace_prob = 0.85, 0.0
    else:
        mask_replace_prob, random_replace_prob = 0.8, 0.1
    collator = DataCollatorForLanguageModeling(
        tokenizer=tok, mlm=True, mlm_probability=args.mlm_probability,
        mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob,
        seed=args.seed)

    def tokenize(examples):
        texts = [t for t in examples["text"] if t and not t.isspace()]
        return tok(texts, return_special_tokens_mask=True)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total = len(concatenated[next(iter(examples.keys()))])
        total = (total // seq_len) * seq_len
        return {k: [t[i:i + seq_len] for i in range(0, total, seq_len)]
                for k, t in concatenated.items()}

    cache_dir = tempfile.mkdtemp(prefix="python-reference-cache-")
    result = {}
    try:
        with RssSampler() as rss:
            baseline_rss = rss._tree_rss()
            t_load = time.perf_counter()
            streaming = args.mode == "streaming"
            if streaming and args.max_mb is not None:
                # The limit needs the rows: load to Arrow (timed as load), then stream them.
                ds = load(files, cache_dir, streaming=False)
                ds, n_bytes = limit_rows(ds, args.max_mb)
                full = False
                lm_source = ds.to_iterable_dataset(num_shards=max(args.procs, 1) * 4)
            elif streaming:
                lm_source = load(files, cache_dir, streaming=True)
                ds = None
                n_bytes = None
                full = True
            else:
                ds = load(files, cache_dir, streaming=False)
                full = args.max_mb is None
                if full:
                    n_bytes = text_bytes(ds)
                else:
                    ds, n_bytes = limit_rows(ds, args.max_mb)
                lm_source = ds
            load_seconds = time.perf_counter() - t_load

            t0 = time.perf_counter()
            if streaming:
                tokenized = lm_source.map(tokenize, batched=True, batch_size=args.map_batch_size,
                                          remove_columns=["text"])
                lm = tokenized.map(group_texts, batched=True, batch_size=args.map_batch_size)
                loader = DataLoader(lm, batch_size=args.batch_size, collate_fn=collator,
                                    num_workers=args.procs if args.procs > 1 else 0)
            else:
                num_proc = args.procs if args.procs > 1 else None
                tokenized = lm_source.map(tokenize, batched=True, batch_size=args.map_batch_size,
                                          num_proc=num_proc, remove_columns=["text"])
                lm = tokenized.map(group_texts, batched=True, batch_size=args.map_batch_size,
                                   num_proc=num_proc)
                t_packed = time.perf_counter()
                loader = DataLoader(lm, batch_size=args.batch_size, collate_fn=collator,
                                    num_workers=args.procs if args.procs > 1 else 0)
            n_batches = 0
            n_tokens = 0
            n_masked = 0
            for batch in loader:
                n_batches += 1
                n_tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch \
                    else batch["input_ids"].numel()
                n_masked += int((batch["labels"] != -100).sum())
            seconds = time.perf_counter() - t0
            rss_before_bare = rss.peak

        # Bare tokenizer on the same text (map mode or a --max-mb selection: the rows in memory).
        bare_tokens, bare_seconds = (None, None)
        if ds is None:
            ds = load(files, cache_dir, streaming=False)
            n_bytes = text_bytes(ds)
        bare_tokens, bare_seconds = bare_tokenizer(tok, ds, args.map_batch_size)

        result = {
            "mode": args.mode,
            "processes": args.procs,
            "mask": args.mask,
            "files": files,
            "tokenizer": tok_path,
            "text_bytes": n_bytes,
            "max_mb": args.max_mb,
            "seq_len": seq_len,
            "batch_size": args.batch_size,
            "batches": n_batches,
            "tokens": n_tokens,
            "masked_tokens": n_masked,
            "seconds": seconds,
            "load_seconds": load_seconds,
            "tokens_per_sec": n_tokens / seconds if seconds > 0 else None,
            "tokens_per_sec_incl_load": (n_tokens / (seconds + load_seconds)) if full and not streaming else None,
            "mb_per_sec": (n_bytes / 1e6 / seconds) if n_bytes and seconds > 0 else None,
            "tokenizer_tokens": bare_tokens,
            "tokenizer_seconds": bare_seconds,
            "tokenizer_tokens_per_sec": bare_tokens / bare_seconds if bare_seconds else None,
            "peak_rss_bytes": rss_before_bare,
            "baseline_rss_bytes": baseline_rss,
            "versions": {"datasets": datasets.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__},
        }
        if not streaming:
            result["pack_seconds"] = t_packed - t0
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    if args.json:
        print(json.dumps(result))
    else:
        print(f"python reference ({args.mode}, {args.procs} process(es), {args.mask} masking): "
              f"{len(files)} file(s), {result['text_bytes'] or 0:,} bytes of text")
        for k in ("batches", "tokens", "masked_tokens", "load_seconds", "seconds", "tokens_per_sec",
                  "tokens_per_sec_incl_load", "mb_per_sec", "tokenizer_tokens_per_sec", "peak_rss_bytes"):
            v = result[k]
            print(f"  {k:28s} {v:,.2f}" if isinstance(v, float) else f"  {k:28s} {v}")


if __name__ == "__main__":
    main()
