//! `electra finetune` end to end with the built binary: a tiny pre-trained model learns a
//! synthetic task well above chance, the in-repository WordNet task with few examples and
//! two seeds gives a complete results.json, a pair regression task is recognised and scored, bad task files
//! are refused with the file and line, and a saved model loads in `transformers` with our
//! logits and our tokenization.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{electra, ok, python, repo, s};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use electra_model::{ElectraForSequenceClassification, EncoderInput};
use electra_pipeline::TextTokenizer;
use electra_trainer::task::{encode, RawExample, Target};
use serde_json::{json, Value};
use tch::{nn, Device, Tensor};

/// A tiny model pre-trained for two steps (as good as random), shared by the tests: the
/// run folder `electra pretrain` writes (weights and tokenizer in final/).
fn pretrained() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        ok(&electra(&[
            "pretrain",
            "--config",
            "configs/tiny.toml",
            "--data",
            "data/corpus/moby_dick.txt.zst",
            "--run-dir",
            s(&run),
            "--max-steps",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]));
        (dir, run)
    })
    .1
}

/// Deterministic pseudo-random numbers for the synthetic tasks.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const WORDS: [&str; 24] = [
    "the", "old", "ship", "sailed", "across", "a", "grey", "sea", "while", "men", "sang", "of",
    "home", "and", "whales", "under", "cold", "stars", "with", "rope", "salt", "wind", "deck",
    "night",
];

fn sentence(rng: &mut Lcg, with: Option<&str>) -> String {
    let n = 5 + rng.below(8) as usize;
    let mut words: Vec<&str> = (0..n).map(|_| WORDS[rng.below(24) as usize]).collect();
    if let Some(word) = with {
        let at = rng.below(n as u64 + 1) as usize;
        words.insert(at, word);
    }
    words.join(" ")
}

/// `label` = whether the text contains "banana", half of the examples.
fn write_contains_task(dir: &Path, train: usize, dev: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Lcg(11);
    for (name, n) in [("train.tsv", train), ("dev.tsv", dev)] {
        let mut text = String::from("text\tlabel\n");
        for _ in 0..n {
            let yes = rng.below(2) == 1;
            let sentence = sentence(&mut rng, yes.then_some("banana"));
            text.push_str(&format!("{sentence}\t{}\n", if yes { "yes" } else { "no" }));
        }
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn results(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn a_tiny_model_learns_a_synthetic_task_well_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("contains");
    write_contains_task(&task, 600, 200);
    let out = dir.path().join("out");
    let printed = ok(&electra(&[
        "finetune",
        "--model",
        s(pretrained()),
        "--task",
        s(&task),
        "--out",
        s(&out),
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--max-seq-len",
        "32",
        "--device",
        "cpu",
    ]));
    let r = results(&out);
    let accuracy = r["seeds"][0]["dev"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.8, "dev accuracy {accuracy}\n{printed}");
    assert_eq!(r["labels"], json!(["no", "yes"]));
    assert_eq!(r["problem_type"], "single_label_classification");
    // Two classes: MCC is reported, and it agrees with a model that learned.
    assert!(r["seeds"][0]["dev"]["mcc"].as_f64().unwrap() > 0.5, "{r}");
    assert_eq!(
        r["hyperparameters"]["total_steps"],
        4 * 600_u64.div_ceil(16)
    );
    assert!(printed.contains("dev acc"), "{printed}");
}

/// The task in `data/tasks/wordnet_supersense` (five classes, with a test split) on a few
/// examples, two seeds: results.json holds every seed's dev and test scores and their
/// medians.
#[test]
fn the_wordnet_task_with_few_examples_and_two_seeds_writes_complete_results() {
    let task = repo().join("data/tasks/wordnet_supersense");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let printed = ok(&electra(&[
        "finetune",
        "--model",
        s(pretrained()),
        "--task",
        s(&task),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--max-seq-len",
        "16",
        "--batch-size",
        "16",
        "--seeds",
        "2",
        "--max-train-examples",
        "48",
        "--max-eval-examples",
        "40",
        "--device",
        "cpu",
    ]));
    let r = results(&out);
    assert_eq!(
        r["labels"],
        json!([
            "noun.animal",
            "noun.body",
            "noun.food",
            "noun.plant",
            "verb.motion"
        ])
    );
    assert_eq!(r["problem_type"], "single_label_classification");
    assert_eq!(r["train_examples"], 48);
    assert_eq!(r["dev_examples"], 40);
    assert_eq!(r["test_examples"], 40);
    assert_eq!(r["hyperparameters"]["total_steps"], 3);
    assert_eq!(r["hyperparameters"]["layer_decay"], 0.8);
    // Glosses run from a few to about 60 tokens: many, not all, are cut to 16.
    let truncated = r["truncated_examples"].as_u64().unwrap();
    assert!(truncated > 20 && truncated < 128, "{r}");
    let seeds = r["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 2);
    for (i, seed) in seeds.iter().enumerate() {
        assert_eq!(seed["seed"], i as u64);
        assert_eq!(seed["steps"], 3);
        for split in ["dev", "test"] {
            let scores = &seed[split];
            assert_eq!(scores["examples"], 40, "{seed}");
            let acc = scores["accuracy"].as_f64().unwrap();
            let f1 = scores["macro_f1"].as_f64().unwrap();
            assert!(
                (0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&f1),
                "{seed}"
            );
            assert!(scores["loss"].as_f64().unwrap() > 0.0);
            // Five classes: no MCC, no correlations.
            assert!(scores.get("mcc").is_none() && scores.get("pearson").is_none());
        }
    }
    for split in ["dev", "test"] {
        let accs: Vec<f64> = seeds
            .iter()
            .map(|s| s[split]["accuracy"].as_f64().unwrap())
            .collect();
        let median = r["median"][split]["accuracy"].as_f64().unwrap();
        assert!((median - (accs[0] + accs[1]) / 2.0).abs() < 1e-12, "{r}");
    }
    assert!(printed.contains("median"), "{printed}");
    assert_eq!(r["saved_model"], Value::Null);
}

#[test]
fn the_same_seed_gives_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("contains");
    write_contains_task(&task, 64, 32);
    let run = |out: &Path| {
        ok(&electra(&[
            "finetune",
            "--model",
            s(pretrained()),
            "--task",
            s(&task),
            "--out",
            s(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--seed-list",
            "5",
            "--device",
            "cpu",
        ]));
        results(out)["seeds"][0].clone()
    };
    let (a, b) = (run(&dir.path().join("a")), run(&dir.path().join("b")));
    assert_eq!(a["seed"], 5);
    assert_eq!(a["dev"], b["dev"]);
    assert_eq!(a["train_loss"], b["train_loss"]);
}

#[test]
fn a_pair_regression_task_is_scored_with_correlations() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("pairs");
    std::fs::create_dir_all(&task).unwrap();
    let mut rng = Lcg(5);
    for (name, n) in [("train.tsv", 96), ("dev.tsv", 40), ("test.tsv", 24)] {
        let mut text = String::from("text\ttext_b\tlabel\n");
        for _ in 0..n {
            let score = rng.below(3);
            let a = sentence(&mut rng, None);
            let b = sentence(&mut rng, (score > 0).then_some("banana"));
            text.push_str(&format!("{a}\t{b}\t{}\n", score as f64 * 1.5 + 0.2));
        }
        std::fs::write(task.join(name), text).unwrap();
    }
    let out = dir.path().join("out");
    ok(&electra(&[
        "finetune",
        "--model",
        s(pretrained()),
        "--task",
        s(&task),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--device",
        "cpu",
    ]));
    let r = results(&out);
    assert_eq!(r["problem_type"], "regression");
    assert_eq!(r["pairs"], true);
    assert_eq!(r["test_examples"], 24);
    for split in ["dev", "test"] {
        let scores = &r["seeds"][0][split];
        let pearson = scores["pearson"].as_f64().unwrap();
        let spearman = scores["spearman"].as_f64().unwrap();
        assert!(pearson.abs() <= 1.0 && spearman.abs() <= 1.0, "{scores}");
        assert!(scores.get("accuracy").is_none(), "{scores}");
    }
}

#[test]
fn bad_task_files_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("bad");
    write_contains_task(&task, 20, 10);
    let mut dev = std::fs::read_to_string(task.join("dev.tsv")).unwrap();
    dev.push_str("some text\tmaybe\n");
    std::fs::write(task.join("dev.tsv"), dev).unwrap();
    let out = electra(&[
        "finetune",
        "--model",
        s(pretrained()),
        "--task",
        s(&task),
        "--out",
        s(&dir.path().join("out")),
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dev.tsv:12: label \"maybe\" is not a training label (no, yes)"),
        "{err}"
    );

    std::fs::write(
        task.join("train.tsv"),
        "text\tlabel\nfine\tyes\nno tab here\n",
    )
    .unwrap();
    let out = electra(&[
        "finetune",
        "--model",
        s(pretrained()),
        "--task",
        s(&task),
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.tsv:3: 1 fields, the header has 2"),
        "{err}"
    );

    let out = electra(&["finetune", "--model", s(dir.path()), "--task", s(&task)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no config.json"), "{err}");
}

/// `--save-model` writes a folder `transformers` loads as ElectraForSequenceClassification
/// with no missing or unexpected keys and our logits; its tokenizer encodes as we do,
/// pairs and truncation included.
#[test]
fn a_saved_model_loads_in_transformers_with_our_logits() {
    let dir = tempfile::tempdir().unwrap();
    // An export-hf folder as the starting point this time.
    let export = dir.path().join("hf");
    ok(&electra(&[
        "export-hf",
        "--checkpoint",
        s(pretrained()),
        "--out",
        s(&export),
    ]));
    let task = dir.path().join("pairs");
    std::fs::create_dir_all(&task).unwrap();
    let mut rng = Lcg(9);
    let mut examples = Vec::new();
    for name in ["train.tsv", "dev.tsv"] {
        let mut text = String::from("text\ttext_b\tlabel\n");
        for i in 0..40 {
            let label = ["a", "b", "c"][rng.below(3) as usize];
            let a = sentence(&mut rng, None);
            // Some long second texts, so that truncation takes from both sides.
            let b = if i % 4 == 0 {
                [
                    sentence(&mut rng, None),
                    sentence(&mut rng, None),
                    sentence(&mut rng, None),
                ]
                .join(" ")
            } else {
                sentence(&mut rng, Some("Banana!"))
            };
            text.push_str(&format!("{a}\t{b}\t{label}\n"));
            if name == "dev.tsv" && i < 8 {
                examples.push((a, b));
            }
        }
        std::fs::write(task.join(name), text).unwrap();
    }
    let out = dir.path().join("out");
    let max_seq_len = 24;
    let printed = ok(&electra(&[
        "finetune",
        "--model",
        s(&export),
        "--task",
        s(&task),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-seq-len",
        &max_seq_len.to_string(),
        "--seeds",
        "2",
        "--save-model",
        "--device",
        "cpu",
    ]));
    let r = results(&out);
    let model_dir = out.join("model");
    assert_eq!(r["saved_model"], json!(s(&model_dir)));
    assert!(r["saved_seed"].is_u64(), "{printed}");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        assert!(model_dir.join(file).is_file(), "{file}");
    }

    // Our logits on 8 dev pairs, encoded as fine-tuning encodes them.
    let tokenizer = TextTokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let encoded: Vec<_> = examples
        .iter()
        .map(|(a, b)| {
            let raw = RawExample {
                text: a.clone(),
                text_b: Some(b.clone()),
                label: "a".into(),
                line: 0,
            };
            encode(&tokenizer, &raw, Target::Class(0), max_seq_len).unwrap()
        })
        .collect();
    assert!(encoded.iter().any(|e| e.truncated));
    let width = encoded.iter().map(|e| e.input_ids.len()).max().unwrap();
    let (mut ids, mut segments, mut mask) = (vec![], vec![], vec![]);
    for e in &encoded {
        let pad = width - e.input_ids.len();
        ids.extend(
            e.input_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad)),
        );
        segments.extend(
            e.segment_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad)),
        );
        mask.extend(
            std::iter::repeat_n(1i64, e.input_ids.len()).chain(std::iter::repeat_n(0, pad)),
        );
    }
    let shape = [encoded.len() as i64, width as i64];
    let input_ids = Tensor::from_slice(&ids).view(shape);
    let token_type_ids = Tensor::from_slice(&segments).view(shape);
    let attention_mask = Tensor::from_slice(&mask).view(shape);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ElectraForSequenceClassification::from_hf(&vs, &model_dir).unwrap();
    assert_eq!(model.num_labels(), 3);
    let logits = tch::no_grad(|| {
        model.forward_t(
            &EncoderInput {
                input_ids: &input_ids,
                segment_ids: &token_type_ids,
                attention_mask: &attention_mask,
            },
            false,
        )
    })
    .unwrap();
    let io = dir.path().join("io.safetensors");
    electra_model::safetensors::save(
        &io,
        &[
            ("input_ids".into(), input_ids),
            ("token_type_ids".into(), token_type_ids),
            ("attention_mask".into(), attention_mask),
            ("logits".into(), logits),
        ],
        &Default::default(),
    )
    .unwrap();
    let spec = dir.path().join("texts.json");
    std::fs::write(
        &spec,
        json!({
            "labels": ["a", "b", "c"],
            "problem_type": "single_label_classification",
            "max_seq_len": max_seq_len,
            "examples": examples,
        })
        .to_string(),
    )
    .unwrap();
    let check = Command::new(python())
        .arg(repo().join("tests/python/check_classifier.py"))
        .args([&model_dir, &io, &spec])
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    println!("{stdout}");
    assert!(
        check.status.success(),
        "check_classifier.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
