//! The fast WordPiece path against the `tokenizers` crate, which it must match exactly:
//! random Unicode of every plane, every sentence of every corpus in `data/`, cased and
//! uncased vocabularies and every BERT normalizer option; and `preprocess` writes the
//! same shards with the fast path off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::data;

use std::borrow::Cow;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::OnceLock;

use electra_pipeline::preprocess::{preprocess, PreprocessOptions};
use electra_pipeline::shard::read_manifest;
use electra_pipeline::source::{sentences, SourceOptions};
use electra_pipeline::{DocumentReader, TextTokenizer};
use proptest::prelude::*;
use serde_json::{json, Value};

fn uncased_path() -> PathBuf {
    data("tokenizer/bert-base-uncased/tokenizer.json")
}

fn cased_path() -> PathBuf {
    data("tokenizer/cased-wordpiece-16k/tokenizer.json")
}

/// A tokenizer from `base` with its JSON edited.
fn variant(base: &PathBuf, edit: impl FnOnce(&mut Value)) -> TextTokenizer {
    let mut json: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    edit(&mut json);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    TextTokenizer::from_file(&path).unwrap()
}

fn normalizer(base: &PathBuf, options: Value) -> TextTokenizer {
    variant(base, |j| {
        for (k, v) in options.as_object().unwrap() {
            j["normalizer"][k] = v.clone();
        }
    })
}

/// Every tokenizer the differential tests run, by name: both vocabularies, every
/// normalizer option flipped, and a short `max_input_chars_per_word`.
fn tokenizers() -> &'static [(&'static str, TextTokenizer)] {
    static ALL: OnceLock<Vec<(&'static str, TextTokenizer)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let (u, c) = (uncased_path(), cased_path());
        vec![
            ("uncased", TextTokenizer::from_file(&u).unwrap()),
            ("cased", TextTokenizer::from_file(&c).unwrap()),
            (
                "no clean_text",
                normalizer(&u, json!({"clean_text": false})),
            ),
            (
                "no chinese",
                normalizer(&u, json!({"handle_chinese_chars": false})),
            ),
            (
                "cased, strip",
                normalizer(&c, json!({"strip_accents": true})),
            ),
            (
                "lower, no strip",
                normalizer(&u, json!({"strip_accents": false})),
            ),
            (
                "max 8 chars",
                variant(&u, |j| j["model"]["max_input_chars_per_word"] = json!(8)),
            ),
        ]
    })
}

/// The crate's answer with offsets: a word starts where the word id changes.
fn oracle(tokenizer: &TextTokenizer, text: &str) -> (Vec<u32>, Vec<bool>) {
    let encoding = tokenizer.inner().encode(text, false).unwrap();
    let words = encoding.get_word_ids();
    let starts = (0..words.len())
        .map(|i| i == 0 || words[i].is_none() || words[i] != words[i - 1])
        .collect();
    (encoding.get_ids().to_vec(), starts)
}

fn encode(tokenizer: &TextTokenizer, text: &str) -> (Vec<u32>, Vec<bool>) {
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    let n = tokenizer
        .encode_sentence(text, &mut ids, &mut starts)
        .unwrap();
    assert_eq!(n, ids.len());
    (ids, starts)
}

/// The fast path, the crate's fast encoding (`fast_tokenizer = false`) and the crate's
/// full encoding agree on `text`.
fn check(name: &str, tokenizer: &TextTokenizer, text: &str) -> std::result::Result<(), String> {
    let fast = encode(tokenizer, text);
    let slow = encode(&tokenizer.clone().with_fast_path(false), text);
    if fast != slow {
        return Err(format!("{name}: {text:?}\n fast {fast:?}\n crate {slow:?}"));
    }
    let full = oracle(tokenizer, text);
    if fast != full {
        return Err(format!(
            "{name}: {text:?}\n fast {fast:?}\n encode {full:?}"
        ));
    }
    Ok(())
}

#[test]
fn bert_style_tokenizers_take_the_fast_path_and_others_do_not() {
    for (name, t) in tokenizers() {
        assert!(t.fast_path(), "{name}");
        assert!(!t.clone().with_fast_path(false).fast_path(), "{name}");
    }
    let u = uncased_path();
    let whitespace = variant(&u, |j| j["pre_tokenizer"] = json!({"type": "Whitespace"}));
    let nfc = variant(&u, |j| j["normalizer"] = json!({"type": "NFC"}));
    let normalized_added = variant(&u, |j| j["added_tokens"][4]["normalized"] = json!(true));
    let truncated = variant(
        &u,
        |j| {
            j["truncation"] = json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0})
        },
    );
    for (name, t) in [
        ("whitespace", whitespace),
        ("nfc", nfc),
        ("normalized [MASK]", normalized_added),
        ("truncated", truncated),
    ] {
        assert!(!t.fast_path(), "{name} has no fast path");
        assert!(!t.clone().with_fast_path(true).fast_path(), "{name}");
        check(name, &t, "Héllo [MASK]  wörld, 東京!").unwrap();
    }
}

#[test]
fn the_known_traps_match_the_crate() {
    let cases = [
        "",
        "   ",
        "[MASK] don't ##abc [UNK]x naïve 東京 e-mail 3.14 @user",
        "a[MASK]b[MASK][MASK]c [MAS [mask] [CLS][SEP]",
        "İstanbul ǅemal ß ﬁne ΣΑΣ Ὀδυσσεύς",
        "Crème brûlée\u{301} e\u{301}\u{316}\u{1d165}x \u{f900}\u{2f800} \u{20000}",
        "zero\u{200b}width soft\u{ad}hyphen bom\u{feff}x nul\u{0}x \u{fffd}",
        "tab\tnl\nvt\u{b}ff\u{c}nel\u{85}nbsp\u{a0}ideo\u{3000}x",
        "مرحبا بالعالم עברית \u{202b}rtl\u{202c} हिन्दी ภาษาไทย 한국어 が ぱ",
        "¿Qué? «quoted» —dash— 「括弧」 ‰ ‽",
    ];
    let long = "a".repeat(100) + " " + &"b".repeat(101) + " " + &"é".repeat(100) + "e\u{301}";
    for (name, t) in tokenizers() {
        for text in cases.iter().copied().chain([long.as_str()]) {
            check(name, t, text).unwrap();
        }
    }
}

fn char_ranges() -> impl Strategy<Value = char> {
    const RANGES: &[RangeInclusive<char>] = &[
        '\u{0}'..='\u{1f}',          // C0 controls
        '\u{7f}'..='\u{a0}',         // DEL, C1 controls, NBSP
        '\u{c0}'..='\u{24f}',        // accented Latin
        '\u{300}'..='\u{36f}',       // combining marks
        '\u{370}'..='\u{3ff}',       // Greek
        '\u{400}'..='\u{4ff}',       // Cyrillic
        '\u{590}'..='\u{6ff}',       // Hebrew, Arabic (RTL)
        '\u{900}'..='\u{97f}',       // Devanagari
        '\u{e00}'..='\u{e7f}',       // Thai
        '\u{f70}'..='\u{f84}',       // Tibetan marks (decomposing, odd classes)
        '\u{1100}'..='\u{11ff}',     // Hangul jamo
        '\u{1ab0}'..='\u{1aff}',     // combining marks extended
        '\u{2000}'..='\u{206f}',     // spaces, format characters, punctuation
        '\u{20d0}'..='\u{20ff}',     // combining marks for symbols
        '\u{3000}'..='\u{30ff}',     // CJK punctuation, kana
        '\u{4e00}'..='\u{4e80}',     // CJK ideographs
        '\u{ac00}'..='\u{ac80}',     // Hangul syllables
        '\u{f900}'..='\u{fa10}',     // CJK compatibility ideographs
        '\u{fe00}'..='\u{ffff}',     // variation selectors, BOM, specials
        '\u{1d160}'..='\u{1d16f}',   // musical combining marks (Mc, class 216)
        '\u{1f300}'..='\u{1f320}',   // emoji
        '\u{20000}'..='\u{20010}',   // CJK extension B
        '\u{2f800}'..='\u{2f810}',   // CJK compatibility supplement
        '\u{e0000}'..='\u{e007f}',   // tags
        '\u{f0000}'..='\u{f0010}',   // private use, plane 15
        '\u{10fff0}'..='\u{10ffff}', // the last plane
    ];
    proptest::char::ranges(Cow::Borrowed(RANGES))
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9 ,.'!?#-]{1,12}",
        4 => proptest::collection::vec(char_ranges(), 1..6).prop_map(String::from_iter),
        2 => any::<char>().prop_map(String::from),
        1 => "[a-zé]{95,105}",
        1 => (char_ranges(), 1usize..120).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => prop_oneof![
            Just("[MASK]"), Just("[UNK]"), Just("[CLS]"), Just("[MAS"), Just("[mask]"), Just("##"),
        ].prop_map(String::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..10).prop_map(|f| f.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1200))]

    #[test]
    fn random_unicode_gets_the_crates_ids_and_word_starts(text in text()) {
        for (name, t) in tokenizers() {
            check(name, t, &text).map_err(TestCaseError::fail)?;
        }
    }
}

/// Every sentence the pipeline reads from `files`.
fn corpus_sentences(files: &[PathBuf]) -> Vec<String> {
    DocumentReader::new(files.to_vec(), SourceOptions::default())
        .unwrap()
        .flat_map(|chunk| sentences(&chunk.unwrap().batch))
        .collect()
}

fn all_corpora() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["corpus", "i18n"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(data(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_sentence_of_every_corpus_gets_the_crates_ids_and_word_starts() {
    let files = all_corpora();
    assert_eq!(files.len(), 4, "{files:?}");
    let sentences = corpus_sentences(&files);
    assert!(sentences.len() > 50_000, "{}", sentences.len());
    for (name, t) in &tokenizers()[..2] {
        let slow = t.clone().with_fast_path(false);
        let (mut fast_ids, mut fast_starts) = (Vec::new(), Vec::new());
        let (mut ids, mut starts) = (Vec::new(), Vec::new());
        for s in &sentences {
            let before = ids.len();
            t.encode_sentence(s, &mut fast_ids, &mut fast_starts)
                .unwrap();
            slow.encode_sentence(s, &mut ids, &mut starts).unwrap();
            if fast_ids[before..] != ids[before..] || fast_starts[before..] != starts[before..] {
                check(name, t, s).unwrap();
                panic!(
                    "{name}: {s:?} differs (ids {} vs {})",
                    fast_ids.len(),
                    ids.len()
                );
            }
        }
        assert!(ids.len() > 3_000_000, "{name}: {} tokens", ids.len());
        assert!(
            starts.iter().any(|s| !s),
            "{name}: some words have several pieces"
        );
    }
}

#[test]
fn preprocess_writes_the_same_shards_with_the_fast_path_off() {
    let files = vec![
        data("corpus/moby_dick.txt.zst"),
        data("i18n/django_translations.txt.zst"),
    ];
    for path in [uncased_path(), cased_path()] {
        let fast = TextTokenizer::from_file(&path).unwrap();
        assert!(fast.fast_path());
        let slow = fast.clone().with_fast_path(false);
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let manifests: Vec<_> = [&fast, &slow]
            .iter()
            .zip(&dirs)
            .map(|(t, dir)| {
                let options = PreprocessOptions {
                    files: files.clone(),
                    part_index: 0,
                    num_parts: 1,
                    out_dir: dir.path().to_path_buf(),
                    rows_per_shard: 128,
                    threads: 2,
                    source: SourceOptions::default(),
                    tool_version: "test".into(),
                    zstd_level: 1,
                };
                read_manifest(&preprocess(&options, t, |_| {}).unwrap().manifest).unwrap()
            })
            .collect();
        assert!(manifests[0].shards.len() >= 2, "{path:?}");
        assert_eq!(manifests[0].shards, manifests[1].shards, "{path:?}");
        for shard in &manifests[0].shards {
            let [a, b] = dirs
                .each_ref()
                .map(|d| std::fs::read(d.path().join(&shard.path)).unwrap());
            assert!(a == b, "{path:?} {} differs", shard.path);
        }
    }
}
