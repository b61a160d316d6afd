#!/usr/bin/env python3
"""The reference for `electra bench train`: the same ELECTRA model and training step in
PyTorch with Hugging Face `transformers`, from one of our TOML configs.

    .venv/bin/python bench/hf_reference_train.py --config configs/tiny.toml [--device cpu|cuda]
        [--batch-size B] [--seq-len L] [--steps N] [--warmup W] [--bf16] [--sdpa] [--compile]
        [--threads T] [--json]

The model: an `ElectraForMaskedLM` generator and an `ElectraForPreTraining` discriminator
sized from the config's [model] section (the generator as `electra::ElectraConfig::generator`
sizes it: width hidden * generator_fraction, heads = max(1, width / 64), FFN 4 * width, same
depth and embedding size), sharing one embeddings module (token, position and token-type
tables and their LayerNorm; each model keeps its own embeddings projection), the generator's
output layer tied to the token table, as ELECTRA does. Dropout 0.1, LayerNorm eps 1e-12, GELU.

The step: the generator's MLM loss (HF's: logits at every position, cross-entropy at the
masked ones), replacements sampled at the masked positions with Gumbel-max (temperature 1,
no gradient), the discriminator's replaced-token BCE over real tokens, loss = gen + 50 * disc,
backward, gradient clipping at 1.0, AdamW (betas 0.9/0.999, eps 1e-6, weight decay 0.01 off
LayerNorm and biases), linear warmup then linear decay (transformers'
`get_linear_schedule_with_warmup`; the config's warmup, capped at the measured steps).

The data: synthetic, documented as such. Token ids drawn uniformly from the vocabulary's
non-special ids, `[CLS]` first and `[SEP]` last, every position real (no padding), 15% of the
other positions (the config's mask_prob) replaced by `[MASK]` with labels at them. A pool of
8 such batches is made on the device before timing, so the reference pays nothing for data:
its figures are pure model step time (an upper bound for a real input pipeline).

Timing: `--warmup` steps (default 3) untimed, then `--steps` (default 10) timed as one
window (CUDA: synchronised at both ends; losses are read only after the window, though
indexing the masked positions with a boolean mask syncs once a step, as plain PyTorch code
does). `--compile` is optional and untested on CPU here. tokens_per_sec = batch * seq_len * steps / seconds.
peak_memory_bytes: CUDA `torch.cuda.max_memory_allocated`; CPU `ru_maxrss` of the process.
"""

import argparse
import json
import math
import os
import resource
import sys
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISC_WEIGHT = 50.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "tiny.toml"))
    p.add_argument("--tokenizer", default=None, help="tokenizer.json for the vocabulary size (default: the config's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's data.batch_size")
    p.add_argument("--seq-len", type=int, default=None, help="default: the config's data.max_seq_len")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bf16", action="store_true", help="torch.autocast bf16 (float32 master weights)")
    p.add_argument("--sdpa", action="store_true", help='attn_implementation="sdpa" (default: "eager")')
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--fused-adam", action="store_true", help="AdamW(fused=True) (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores this process may use)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def load_config(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    for section in ("model", "data"):
        if section not in cfg:
            sys.exit(f"hf_reference_train: {path} has no [{section}] section")
    return cfg


def vocab_of(tokenizer_path):
    """(vocab size, special ids) of a tokenizer.json."""
    with open(tokenizer_path, encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj.get("model", {}).get("vocab", {})
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    size = max(ids + list(added.values())) + 1

    def find(*names):
        for n in names:
            if n in added:
                return added[n]
            if isinstance(vocab, dict) and n in vocab:
                return vocab[n]
        sys.exit(f"hf_reference_train: {tokenizer_path} has none of {names}")

    special = {"pad": find("[PAD]", "<pad>"), "cls": find("[CLS]", "<s>"),
               "sep": find("[SEP]", "</s>"), "mask": find("[MASK]", "<mask>")}
    return size, special, set(added.values())


def generator_sizes(hidden, fraction):
    width = int(round(hidden * fraction))
    heads = max(width // 64, 1)
    while heads > 1 and width % heads != 0:
        heads -= 1
    return width, heads, 4 * width


def build_models(cfg, vocab_size, pad_id, seq_len, attn, device):
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    m = cfg["model"]
    if m.get("objective", "electra") != "electra":
        sys.exit("hf_reference_train: only model.objective = \"electra\" is supported")
    common = dict(
        vocab_size=vocab_size,
        embedding_size=m["embedding_size"],
        num_hidden_layers=m["num_hidden_layers"],
        max_position_embeddings=max(m.get("max_position_embeddings", 512), seq_len),
        type_vocab_size=2,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        initializer_range=0.02,
        pad_token_id=pad_id,
    )
    disc_cfg = ElectraConfig(hidden_size=m["hidden_size"], num_attention_heads=m["num_attention_heads"],
                             intermediate_size=m["intermediate_size"], **common)
    gw, gh, gi = generator_sizes(m["hidden_size"], m.get("generator_fraction", 0.25))
    gen_cfg = ElectraConfig(hidden_size=gw, num_attention_heads=gh, intermediate_size=gi, **common)
    gen = ElectraForMaskedLM._from_config(gen_cfg, attn_implementation=attn)
    disc = ElectraForPreTraining._from_config(disc_cfg, attn_implementation=attn)
    # ELECTRA shares the embeddings (tables and their LayerNorm) between the two models; the
    # generator's output layer stays tied to the (now shared) token table.
    disc.electra.embeddings = gen.electra.embeddings
    assert gen.generator_lm_head.weight is gen.electra.embeddings.word_embeddings.weight
    gen.to(device)
    disc.to(device)
    return gen, disc, (gw, gh, gi)


def make_batches(n, batch, seq_len, vocab_size, special, special_ids, mask_prob, device, gen):
    import torch

    normal = torch.tensor(sorted(set(range(vocab_size)) - special_ids), dtype=torch.long)
    out = []
    for _ in range(n):
        ids = normal[torch.randint(len(normal), (batch, seq_len), generator=gen)]
        ids[:, 0] = special["cls"]
        ids[:, -1] = special["sep"]
        maskable = torch.zeros(batch, seq_len, dtype=torch.bool)
        maskable[:, 1:-1] = True
        masked = (torch.rand(batch, seq_len, generator=gen) < mask_prob) & maskable
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        inputs = torch.where(masked, torch.full_like(ids, special["mask"]), ids)
        out.append({
            "input_ids": inputs.to(device),
            "original": ids.to(device),
            "masked": masked.to(device),
            "labels": labels.to(device),
            "attention_mask": torch.ones(batch, seq_len, dtype=torch.long, device=device),
            "token_type_ids": torch.zeros(batch, seq_len, dtype=torch.long, device=device),
        })
    return out


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config)
    data = cfg["data"]
    tok_path = args.tokenizer or data.get("tokenizer")
    if tok_path is None:
        tok_path = os.path.join(ROOT, "data", "tokenizer", "bert-base-uncased", "tokenizer.json")
    elif args.tokenizer is None and not os.path.isabs(tok_path):
        tok_path = os.path.join(os.path.dirname(os.path.abspath(args.config)), tok_path)
    if not os.path.isfile(tok_path):
        sys.exit(f"hf_reference_train: tokenizer not found: {tok_path}")
    batch = args.batch_size or data.get("batch_size", 128)
    seq_len = args.seq_len or data.get("max_seq_len", 128)
    mask_prob = data.get("mask_prob", 0.15)
    if args.steps < 1 or args.warmup < 0:
        sys.exit("hf_reference_train: --steps must be >= 1 and --warmup >= 0")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from transformers import get_linear_schedule_with_warmup

    transformers.logging.set_verbosity_error()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("hf_reference_train: --device cuda but torch sees no GPU")
    if args.bf16 and args.device != "cuda":
        print("hf_reference_train: --bf16 autocast is for cuda; running it on cpu anyway", file=sys.stderr)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    vocab_size, special, special_ids = vocab_of(tok_path)
    attn = "sdpa" if args.sdpa else "eager"
    gen, disc, gen_sizes = build_models(cfg, vocab_size, special["pad"], seq_len, attn, device)
    gen.train()
    disc.train()

    params = {id(p): p for p in list(gen.parameters()) + list(disc.parameters())}
    named = {}
    for prefix, model in (("gen", gen), ("disc", disc)):
        for n, p in model.named_parameters():
            named.setdefault(id(p), f"{prefix}.{n}")
    decay = [p for i, p in params.items() if not any(k in named[i] for k in ("LayerNorm", "bias"))]
    no_decay = [p for i, p in params.items() if any(k in named[i] for k in ("LayerNorm", "bias"))]
    n_params = sum(p.numel() for p in params.values())
    n_gen = sum(p.numel() for p in gen.parameters())
    n_disc = sum(p.numel() for p in disc.parameters())
    lr = cfg.get("train", {}).get("learning_rate", 5e-4)
    opt_kwargs = dict(lr=lr, betas=(0.9, 0.999), eps=1e-6)
    if args.fused_adam and args.device == "cuda":
        opt_kwargs["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kwargs)
    total = args.warmup + args.steps
    warm = min(cfg.get("train", {}).get("warmup_steps", 0), total)
    sched = get_linear_schedule_with_warmup(opt, warm, max(total, warm + 1))

    g = torch.Generator().manual_seed(args.seed)
    pool = make_batches(8, batch, seq_len, vocab_size, special, special_ids, mask_prob, device, g)

    gen_fwd, disc_fwd = gen, disc
    if args.compile:
        gen_fwd = torch.compile(gen)
        disc_fwd = torch.compile(disc)

    use_autocast = args.bf16
    autocast_device = "cuda" if args.device == "cuda" else "cpu"

    def step(b):
        with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=use_autocast):
            g_out = gen_fwd(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                            token_type_ids=b["token_type_ids"], labels=b["labels"])
            with torch.no_grad():
                logits = g_out.logits[b["masked"]].float()
                u = torch.rand_like(logits).clamp_(1e-9, 1.0 - 1e-9)
                sampled = torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)
                disc_ids = b["original"].clone()
                disc_ids[b["masked"]] = sampled
                disc_labels = (disc_ids != b["original"]).long()
            d_out = disc_fwd(input_ids=disc_ids, attention_mask=b["attention_mask"],
                             token_type_ids=b["token_type_ids"], labels=disc_labels)
            loss = g_out.loss + DISC_WEIGHT * d_out.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach(), g_out.loss.detach(), d_out.loss.detach()

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    t_start = time.perf_counter()
    for i in range(args.warmup):
        step(pool[i % len(pool)])
    sync()
    warmup_seconds = time.perf_counter() - t_start
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses = []
    t0 = time.perf_counter()
    for i in range(args.steps):
        losses.append(step(pool[(args.warmup + i) % len(pool)]))
    sync()
    seconds = time.perf_counter() - t0

    loss, gen_loss, disc_loss = (float(x) for x in losses[-1])
    if not all(math.isfinite(x) for x in (loss, gen_loss, disc_loss)):
        print(f"hf_reference_train: non-finite loss {loss}", file=sys.stderr)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
        device_name = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        device_name = "cpu"
    tokens = batch * seq_len * args.steps
    result = {
        "config": args.config,
        "device": args.device,
        "device_name": device_name,
        "precision": "bf16" if args.bf16 else "fp32",
        "attn_implementation": attn,
        "compile": args.compile,
        "threads": threads,
        "batch_size": batch,
        "seq_len": seq_len,
        "vocab_size": vocab_size,
        "generator": {"hidden_size": gen_sizes[0], "num_attention_heads": gen_sizes[1],
                      "intermediate_size": gen_sizes[2]},
        "params": n_params,
        "generator_params": n_gen,
        "discriminator_params": n_disc,
        "warmup_steps": args.warmup,
        "warmup_seconds": warmup_seconds,
        "steps": args.steps,
        "seconds": seconds,
        "step_ms": seconds / args.steps * 1000.0,
        "tokens": tokens,
        "tokens_per_sec": tokens / seconds,
        "peak_memory_bytes": peak,
        "loss": loss,
        "gen_loss": gen_loss,
        "disc_loss": disc_loss,
        "data": "synthetic: uniform non-special ids, no padding, mask_prob masked, pool on device",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"HF reference: {args.config} on {device_name} ({result['precision']}, {attn}"
              f"{', compiled' if args.compile else ''}, {threads} threads), batch {batch} x seq {seq_len}, "
              f"{n_params:,} parameters (generator {n_gen:,}, discriminator {n_disc:,}; embeddings shared)")
        print(f"  {args.steps} steps after {args.warmup} warm-up: {seconds:.2f} s, "
              f"{result['step_ms']:.1f} ms/step, {result['tokens_per_sec']:,.0f} tokens/s")
        print(f"  peak memory {peak / 2**20:,.1f} MiB; last loss {loss:.4f} "
              f"(gen {gen_loss:.4f}, disc {disc_loss:.4f})")


if __name__ == "__main__":
    main()
