"""Hugging Face `transformers` side of the interoperability tests (model/tests/hf_interop.rs).

Subcommands (each exits non-zero, with a message, when a check fails; a missing
`transformers` is a failure too, never a skip):

  check-export EXPORT_DIR IO_FILE
      Loads EXPORT_DIR/discriminator with ElectraForPreTraining, AutoModel and
      ElectraForSequenceClassification, EXPORT_DIR/generator with ElectraForMaskedLM;
      checks that no key is missing or unexpected (only the classifier head may be missing
      for sequence classification); runs both on the inputs of IO_FILE (safetensors:
      input_ids, attention_mask, token_type_ids) and compares with our logits there
      (disc_logits [b, t], gen_logits [b * t, V]) within 1e-5. When the folders hold
      tokenizer files, loads the tokenizer with AutoTokenizer too.

  make-checkpoint OUT_DIR
      Saves a small randomly initialised ElectraForPreTraining (OUT_DIR/discriminator) and
      ElectraForMaskedLM (OUT_DIR/generator) sharing the discriminator's embeddings, with
      save_pretrained(safe_serialization=True), and OUT_DIR/io.safetensors with inputs and
      the logits of both models.

  compare DIR_A DIR_B [DIR_A DIR_B ...]
      For each pair, checks that DIR_A/model.safetensors and DIR_B/model.safetensors hold the same tensors
      bit for bit (torch.equal, same dtype and shape); a tied `generator_lm_head.weight`
      present in only one file must equal that file's or the other's word embeddings.
      Also compares the sizes in the two config.json files.
"""

import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoTokenizer,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
    ElectraForSequenceClassification,
)

TOLERANCE = 1e-5
WORD_EMBEDDINGS = "electra.embeddings.word_embeddings.weight"
LM_HEAD = "generator_lm_head.weight"
SIZE_KEYS = [
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "pad_token_id",
    "hidden_act",
    "layer_norm_eps",
]


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def logits(disc, gen, io):
    """Discriminator [b, t] and generator [b * t, V] logits, float32, eval mode."""
    inputs = {
        "input_ids": io["input_ids"],
        "attention_mask": io["attention_mask"],
        "token_type_ids": io["token_type_ids"],
    }
    with torch.no_grad():
        disc_logits = disc.eval()(**inputs).logits
        gen_logits = gen.eval()(**inputs).logits
    batch, seq = io["input_ids"].shape
    return disc_logits, gen_logits.reshape(batch * seq, -1)


def max_diff(a, b, what):
    check(a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.double() - b.double()).abs().max().item()


def loading_info_is_clean(info, what, allowed_missing=()):
    missing = [k for k in info["missing_keys"] if not k.startswith(tuple(allowed_missing))]
    check(not missing, f"{what}: missing keys {missing}")
    check(not info["unexpected_keys"], f"{what}: unexpected keys {info['unexpected_keys']}")
    check(not info.get("mismatched_keys"), f"{what}: mismatched keys {info.get('mismatched_keys')}")


def check_export(export_dir, io_file):
    disc_dir = os.path.join(export_dir, "discriminator")
    gen_dir = os.path.join(export_dir, "generator")
    for folder, arch in [(disc_dir, "ElectraForPreTraining"), (gen_dir, "ElectraForMaskedLM")]:
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        check(config["architectures"] == [arch], f"{folder}: architectures {config['architectures']}")
        check(config["model_type"] == "electra", f"{folder}: model_type {config['model_type']}")
        for key in SIZE_KEYS[:9]:
            check(type(config[key]) is int, f"{folder}/config.json: {key} = {config[key]!r} is not an integer")
        with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
            check(f.metadata() == {"format": "pt"}, f"{folder}: metadata {f.metadata()}")
            check("electra.embeddings.position_ids" not in f.keys(), f"{folder}: position_ids written")

    disc, info = ElectraForPreTraining.from_pretrained(disc_dir, output_loading_info=True)
    loading_info_is_clean(info, "ElectraForPreTraining")
    gen, info = ElectraForMaskedLM.from_pretrained(gen_dir, output_loading_info=True)
    loading_info_is_clean(info, "ElectraForMaskedLM")
    # AutoModel is the bare encoder: every encoder key loads, the pre-training head is unused.
    _, info = AutoModel.from_pretrained(disc_dir, output_loading_info=True)
    check(not info["missing_keys"], f"AutoModel: missing keys {info['missing_keys']}")
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith("discriminator_predictions.")]
    check(not unexpected, f"AutoModel: unexpected keys {unexpected}")
    _, info = ElectraForSequenceClassification.from_pretrained(disc_dir, output_loading_info=True)
    # The classifier head is new; no encoder key may be missing. The pre-training head is
    # unused by this class and may be reported as unexpected.
    missing = [k for k in info["missing_keys"] if not k.startswith("classifier.")]
    check(not missing, f"ElectraForSequenceClassification: missing encoder keys {missing}")
    check(
        gen.generator_lm_head.weight.data_ptr() == gen.electra.embeddings.word_embeddings.weight.data_ptr()
        or torch.equal(gen.generator_lm_head.weight, gen.electra.embeddings.word_embeddings.weight),
        "generator_lm_head.weight is not the word embeddings after loading",
    )

    io = load_file(io_file)
    disc_logits, gen_logits = logits(disc, gen, io)
    disc_diff = max_diff(disc_logits, io["disc_logits"], "discriminator logits")
    gen_diff = max_diff(gen_logits, io["gen_logits"], "generator logits")
    print(f"export -> transformers: max |disc diff| {disc_diff:.3e}, max |gen diff| {gen_diff:.3e}")
    check(disc_diff <= TOLERANCE, f"discriminator logits differ by {disc_diff:e}")
    check(gen_diff <= TOLERANCE, f"generator logits differ by {gen_diff:e}")

    if os.path.exists(os.path.join(disc_dir, "tokenizer.json")):
        from tokenizers import Tokenizer

        text = "Hello, ELECTRA world! Unaffable tokens."
        reference = Tokenizer.from_file(os.path.join(disc_dir, "tokenizer.json")).encode(text).ids
        for folder in [disc_dir, gen_dir]:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            ids = tokenizer(text)["input_ids"]
            check(ids == reference, f"{folder}: AutoTokenizer gives {ids}, tokenizers gives {reference}")
            check(tokenizer.mask_token == "[MASK]", f"{folder}: mask token {tokenizer.mask_token}")
            check(
                tokenizer.model_max_length == disc.config.max_position_embeddings,
                f"{folder}: model_max_length {tokenizer.model_max_length}",
            )
        print(f"tokenizer: {type(tokenizer).__name__} loads, ids {reference}")
    print("check-export: ok")


def perturb(model, generator):
    """Adds noise to every parameter so that LayerNorms and biases are not 1 and 0."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def make_checkpoint(out_dir):
    torch.manual_seed(1234)
    generator = torch.Generator().manual_seed(5678)
    common = dict(
        vocab_size=1000,
        embedding_size=32,
        num_hidden_layers=2,
        max_position_embeddings=128,
        type_vocab_size=2,
        pad_token_id=0,
    )
    disc_config = ElectraConfig(hidden_size=64, num_attention_heads=2, intermediate_size=256, **common)
    gen_config = ElectraConfig(hidden_size=32, num_attention_heads=2, intermediate_size=128, **common)
    disc = ElectraForPreTraining(disc_config)
    gen = ElectraForMaskedLM(gen_config)
    perturb(disc, generator)
    perturb(gen, generator)
    # Share the discriminator's embeddings (the tied output layer follows the token table).
    gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    check(
        torch.equal(gen.generator_lm_head.weight, disc.electra.embeddings.word_embeddings.weight),
        "generator_lm_head.weight is not tied to the word embeddings",
    )
    disc.save_pretrained(os.path.join(out_dir, "discriminator"), safe_serialization=True)
    gen.save_pretrained(os.path.join(out_dir, "generator"), safe_serialization=True)

    batch, seq = 3, 12
    lengths = [12, 9, 5]
    input_ids = torch.randint(5, 1000, (batch, seq), generator=generator)
    attention_mask = torch.zeros(batch, seq, dtype=torch.long)
    token_type_ids = torch.zeros(batch, seq, dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        token_type_ids[row, length // 2 : length] = 1
        input_ids[row, length:] = 0
    io = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    disc_logits, gen_logits = logits(disc, gen, io)
    io.update(disc_logits=disc_logits.contiguous(), gen_logits=gen_logits.contiguous())
    save_file(io, os.path.join(out_dir, "io.safetensors"))
    with safe_open(os.path.join(out_dir, "generator", "model.safetensors"), "pt") as f:
        print(f"transformers wrote the generator with {len(list(f.keys()))} tensors, "
              f"{LM_HEAD} {'present' if LM_HEAD in f.keys() else 'left out (tied)'}")
    print("make-checkpoint: ok")


def compare(dir_a, dir_b):
    a = load_file(os.path.join(dir_a, "model.safetensors"))
    b = load_file(os.path.join(dir_b, "model.safetensors"))
    for only, this, other in [(set(a) - set(b), a, b), (set(b) - set(a), b, a)]:
        for name in sorted(only):
            check(name == LM_HEAD, f"{name} is in only one of {dir_a}, {dir_b}")
            check(torch.equal(this[name], other[WORD_EMBEDDINGS]), f"{LM_HEAD} is not the word embeddings")
    for name in sorted(set(a) & set(b)):
        check(a[name].dtype == b[name].dtype, f"{name}: dtype {a[name].dtype} vs {b[name].dtype}")
        check(torch.equal(a[name], b[name]), f"{name} differs between {dir_a} and {dir_b}")
    configs = []
    for folder in [dir_a, dir_b]:
        with open(os.path.join(folder, "config.json")) as f:
            configs.append(json.load(f))
    for key in SIZE_KEYS:
        check(configs[0].get(key) == configs[1].get(key), f"config {key}: {configs[0].get(key)} vs {configs[1].get(key)}")
    print(f"compare: {len(set(a) & set(b))} tensors bit for bit equal ({dir_b})")


def compare_pairs(*dirs):
    check(dirs and len(dirs) % 2 == 0, "compare takes pairs of folders")
    for dir_a, dir_b in zip(dirs[::2], dirs[1::2]):
        compare(dir_a, dir_b)


def main():
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    command, args = sys.argv[1], sys.argv[2:]
    {"check-export": check_export, "make-checkpoint": make_checkpoint, "compare": compare_pairs}[command](*args)


if __name__ == "__main__":
    main()
