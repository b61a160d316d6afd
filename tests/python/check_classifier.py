"""Hugging Face side of the fine-tuning test (trainer/tests/finetune.rs).

  check_classifier.py MODEL_DIR IO_FILE TEXTS_JSON

MODEL_DIR is a folder `electra finetune --save-model` wrote. Checks, exiting non-zero with a
message when one fails (a missing `transformers` is a failure, never a skip):

- ElectraForSequenceClassification.from_pretrained loads it with no missing, unexpected or
  mismatched keys, and its config has the labels and problem_type of TEXTS_JSON;
- on the inputs of IO_FILE (safetensors: input_ids, attention_mask, token_type_ids) its
  logits equal ours (`logits`, [b, num_labels]) within 1e-5, in eval mode;
- AutoTokenizer loads the folder and, for each example of TEXTS_JSON (`examples`: a list of
  [text, text_b or null]; `max_seq_len`), gives the token ids and segment ids we used
  (row i of IO_FILE, without padding), with truncation="longest_first".
"""

import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, ElectraForSequenceClassification

TOLERANCE = 1e-5


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    model_dir, io_file, texts_file = sys.argv[1:4]
    with open(texts_file) as f:
        spec = json.load(f)
    model, info = ElectraForSequenceClassification.from_pretrained(
        model_dir, output_loading_info=True
    )
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info[key]:
            fail(f"{key}: {info[key]}")
    config = model.config
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if labels != spec["labels"]:
        fail(f"id2label {labels} != {spec['labels']}")
    if config.problem_type != spec["problem_type"]:
        fail(f"problem_type {config.problem_type} != {spec['problem_type']}")
    if {v: k for k, v in config.id2label.items()} != config.label2id:
        fail(f"label2id {config.label2id} does not invert id2label {config.id2label}")

    io = load_file(io_file)
    model.eval()
    with torch.no_grad():
        logits = model(
            input_ids=io["input_ids"],
            attention_mask=io["attention_mask"],
            token_type_ids=io["token_type_ids"],
        ).logits
    difference = (logits.double() - io["logits"].double()).abs().max().item()
    print(f"max |logit difference| {difference:.3e}")
    if not difference <= TOLERANCE:
        fail(f"logits differ by {difference:e}\nours {io['logits']}\ntransformers {logits}")

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for i, (text, text_b) in enumerate(spec["examples"]):
        encoded = tokenizer(
            text,
            text_b,
            truncation="longest_first",
            max_length=spec["max_seq_len"],
        )
        length = int(io["attention_mask"][i].sum())
        ours = io["input_ids"][i][:length].tolist()
        segments = io["token_type_ids"][i][:length].tolist()
        if encoded["input_ids"] != ours:
            fail(f"example {i}: transformers ids {encoded['input_ids']} != ours {ours}")
        if encoded["token_type_ids"] != segments:
            fail(f"example {i}: token types {encoded['token_type_ids']} != ours {segments}")
    print(f"ok: {len(spec['examples'])} examples, {config.num_labels} labels")


if __name__ == "__main__":
    main()
