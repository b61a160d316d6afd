#!/usr/bin/env python3
"""Builds the small in-repository fine-tuning task data/tasks/wordnet_supersense/.

    python3 scripts/make-wordnet-task.py SOURCE_DIR [OUT_DIR]

SOURCE_DIR holds the full WordNet supersense task (train.tsv, dev.tsv, test.tsv with the
header `text<TAB>label`, text = `lemmas: definition`, label = the lexicographer file of
the synset, built from Debian's `wordnet-base`). OUT_DIR defaults to
data/tasks/wordnet_supersense. For each of five well-separated classes it keeps, from each
split of the source, the rows whose sha256 of the text is lowest: 60 train, 20 dev and 20
test rows a class, 500 in all. Rows are written in that hash order (classes mixed), so the
output depends only on the source files. Standard library only.
"""

import hashlib
import sys
from pathlib import Path

CLASSES = ["noun.animal", "noun.body", "noun.food", "noun.plant", "verb.motion"]
PER_CLASS = {"train": 60, "dev": 20, "test": 20}


def rows(path):
    """The (text, label) rows of a task file, header checked."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n")
        if header != "text\tlabel":
            sys.exit(f"{path}: header is {header!r}, expected 'text<TAB>label'")
        for number, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2:
                sys.exit(f"{path}:{number}: {len(fields)} fields, expected 2")
            yield fields[0], fields[1]


def key(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def subset(path, per_class):
    """The `per_class` rows of lowest text hash of each class, in hash order."""
    chosen = []
    for label in CLASSES:
        of_class = sorted({text for text, l in rows(path) if l == label}, key=key)
        if len(of_class) < per_class:
            sys.exit(f"{path}: only {len(of_class)} rows of {label}, need {per_class}")
        chosen += [(text, label) for text in of_class[:per_class]]
    return sorted(chosen, key=lambda row: key(row[0]))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) == 3 else Path("data/tasks/wordnet_supersense")
    out.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        chosen = subset(source / f"{split}.tsv", per_class)
        with open(out / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.write("text\tlabel\n")
            f.writelines(f"{text}\t{label}\n" for text, label in chosen)
        print(f"{out / (split + '.tsv')}: {len(chosen)} rows")


if __name__ == "__main__":
    main()
