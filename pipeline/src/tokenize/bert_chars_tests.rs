//! Every character, checked against the `tokenizers` crate's own normalizer.

use super::*;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::{NormalizedString, Normalizer};

/// A class sequence as the pre-tokenizer sees it: characters and word boundaries (runs
/// of boundaries count once).
#[derive(Debug, PartialEq, Eq)]
enum Mark {
    Boundary,
    Char(char),
}

fn marks(classes: impl IntoIterator<Item = CharClass>) -> Vec<Mark> {
    let mut out = Vec::new();
    let boundary = |out: &mut Vec<Mark>| {
        if out.last() != Some(&Mark::Boundary) {
            out.push(Mark::Boundary);
        }
    };
    for class in classes {
        match class {
            CharClass::Drop => {}
            CharClass::Space => boundary(&mut out),
            CharClass::Word(c) => out.push(Mark::Char(c)),
            CharClass::Isolated(c) => {
                boundary(&mut out);
                out.push(Mark::Char(c));
                boundary(&mut out);
            }
            CharClass::Complex => panic!("a complex class has no marks"),
        }
    }
    out
}

fn all_flags() -> impl Iterator<Item = BertFlags> {
    (0..16usize).map(|i| BertFlags {
        clean_text: i & 1 != 0,
        handle_chinese_chars: i & 2 != 0,
        strip_accents: i & 4 != 0,
        lowercase: i & 8 != 0,
    })
}

fn crate_normalizer(flags: BertFlags) -> BertNormalizer {
    BertNormalizer::new(
        flags.clean_text,
        flags.handle_chinese_chars,
        Some(flags.strip_accents),
        flags.lowercase,
    )
}

/// What the crate's normalizer makes of `text`, as the pre-tokenizer sees it.
fn crate_marks(normalizer: &BertNormalizer, text: &str) -> Vec<Mark> {
    let mut normalized = NormalizedString::from(text);
    normalizer.normalize(&mut normalized).unwrap();
    marks(normalized.get().chars().map(pre_tokenized))
}

fn segment_marks(text: &str, flags: BertFlags) -> Vec<Mark> {
    let mut classes = Vec::new();
    normalize_segment(text, flags, &mut Vec::new(), |c| classes.push(c));
    marks(classes)
}

/// Checks every `step`-th character under `flags`; returns how many were simple.
fn check_chars(flags: BertFlags, step: usize) -> usize {
    let normalizer = crate_normalizer(flags);
    let table = CharTable::get(flags);
    let mut simple = 0;
    for c in (0..=char::MAX as u32)
        .step_by(step)
        .filter_map(char::from_u32)
    {
        let text = c.to_string();
        let expected = crate_marks(&normalizer, &text);
        assert_eq!(segment_marks(&text, flags), expected, "{c:?} {flags:?}");
        let class = table.class(c);
        assert_eq!(class, classify(c, flags), "{c:?} computed {flags:?}");
        assert_eq!(table.class(c), class, "{c:?} kept in the table {flags:?}");
        if class != CharClass::Complex {
            simple += 1;
            assert_eq!(marks([class]), expected, "{c:?} {flags:?}");
        }
    }
    simple
}

#[test]
fn every_character_is_classified_as_the_crate_normalizes_it_uncased_and_cased() {
    let uncased = BertFlags::of(&BertNormalizer::default());
    let cased = BertFlags::of(&BertNormalizer::new(true, true, None, false));
    assert!(check_chars(uncased, 1) > 1_000_000);
    assert!(check_chars(cased, 1) > 1_000_000);
}

#[test]
fn characters_are_classified_as_the_crate_normalizes_them_under_every_option() {
    for flags in all_flags() {
        assert!(check_chars(flags, 17) > 50_000, "{flags:?}");
    }
}

#[test]
fn the_traps_are_classified_as_expected() {
    let uncased = BertFlags::of(&BertNormalizer::default());
    let cased = BertFlags::of(&BertNormalizer::new(true, true, None, false));
    // Cf and Cc vanish without splitting the word; NBSP and tab are spaces.
    assert_eq!(classify('\u{200b}', uncased), CharClass::Drop);
    assert_eq!(classify('\u{b}', uncased), CharClass::Drop);
    assert_eq!(classify('\u{a0}', uncased), CharClass::Space);
    assert_eq!(classify('\t', cased), CharClass::Space);
    // Accents need NFD; a bare nonspacing mark is dropped when stripping only.
    assert_eq!(classify('é', uncased), CharClass::Complex);
    assert_eq!(classify('é', cased), CharClass::Word('é'));
    assert_eq!(classify('\u{301}', uncased), CharClass::Drop);
    assert_eq!(classify('\u{301}', cased), CharClass::Word('\u{301}'));
    // 'İ' lowercases to two characters; without stripping it stays complex.
    assert_eq!(classify('İ', cased), CharClass::Word('İ'));
    let lower_only = BertFlags {
        strip_accents: false,
        ..uncased
    };
    assert_eq!(classify('İ', lower_only), CharClass::Complex);
    assert_eq!(
        segment_marks("İ", lower_only),
        vec![Mark::Char('i'), Mark::Char('\u{307}')]
    );
    assert_eq!(segment_marks("İ", uncased), vec![Mark::Char('i')]);
    // CJK ideographs are words of their own; compatibility ideographs decompose.
    assert_eq!(classify('東', uncased), CharClass::Isolated('東'));
    assert_eq!(classify('\u{f900}', uncased), CharClass::Complex);
    assert_eq!(classify('¿', uncased), CharClass::Isolated('¿'));
}

#[test]
fn a_segment_reorders_marks_as_nfd_does_across_removed_characters() {
    let uncased = BertFlags::of(&BertNormalizer::default());
    let normalizer = crate_normalizer(uncased);
    // U+1D165 is a spacing mark of combining class 216: it survives and sorts before
    // U+0301 (230) in NFD, also across a zero-width space that cleaning removes.
    for text in [
        "\u{1d165}\u{301}",
        "\u{301}\u{200b}\u{1d165}",
        "a\u{316}\u{200b}\u{1d165}",
    ] {
        assert_eq!(segment_marks(text, uncased), crate_marks(&normalizer, text));
    }
    assert!(segment_continues('\u{301}', uncased));
    assert!(segment_continues('\u{200b}', uncased));
    assert!(!segment_continues('a', uncased));
    assert!(!segment_continues(
        '\u{301}',
        BertFlags {
            strip_accents: false,
            ..uncased
        }
    ));
}
