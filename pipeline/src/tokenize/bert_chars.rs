//! What BERT's normalizer and pre-tokenizer make of each character, for the fast
//! WordPiece path.
//!
//! The `tokenizers` crate runs `BertNormalizer` over a whole string (clean text, space out
//! CJK ideographs, NFD and drop nonspacing marks, lowercase) and then `BertPreTokenizer`
//! (split at whitespace, isolate punctuation). Almost every character goes through that
//! alone: its result is one [`CharClass`], kept in a table once computed. The others
//! ([`CharClass::Complex`]: a canonical decomposition, a nonzero combining class, a
//! lowercase of several characters) are normalized together with the combining marks that
//! follow them ([`segment_continues`]) by [`normalize_segment`], which runs the crate's
//! steps in the crate's order. NFD reorders marks only within a run of non-starters, so a
//! segment that starts and ends at a starter normalizes the same alone as inside its text.
//!
//! Every predicate is the one the crate uses, from the same Unicode tables
//! (`unicode_categories`, `unicode-normalization-alignments`, the standard library's
//! `is_whitespace` and `to_lowercase`), so the two agree on every character; the tests
//! check all of them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::char::{canonical_combining_class, decompose_canonical};
use unicode_normalization_alignments::UnicodeNormalization;

/// The four `BertNormalizer` options, `strip_accents` resolved (it follows `lowercase`
/// when unset, as in the crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BertFlags {
    /// Drop control characters, turn whitespace into spaces.
    pub clean_text: bool,
    /// Put spaces around CJK ideographs.
    pub handle_chinese_chars: bool,
    /// NFD, then drop nonspacing marks (Mn).
    pub strip_accents: bool,
    /// Lowercase.
    pub lowercase: bool,
}

impl BertFlags {
    /// The flags of a `tokenizers` BERT normalizer.
    pub fn of(normalizer: &tokenizers::normalizers::BertNormalizer) -> Self {
        Self {
            clean_text: normalizer.clean_text,
            handle_chinese_chars: normalizer.handle_chinese_chars,
            strip_accents: normalizer.strip_accents.unwrap_or(normalizer.lowercase),
            lowercase: normalizer.lowercase,
        }
    }

    fn index(self) -> usize {
        usize::from(self.clean_text)
            | usize::from(self.handle_chinese_chars) << 1
            | usize::from(self.strip_accents) << 2
            | usize::from(self.lowercase) << 3
    }
}

/// What normalization and pre-tokenization make of one character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CharClass {
    /// Removed; the word goes on.
    Drop,
    /// Whitespace: ends the word.
    Space,
    /// A word of its own (punctuation, CJK ideographs): this normalized character.
    Isolated(char),
    /// Part of a word: this normalized character.
    Word(char),
    /// Only [`normalize_segment`] knows, with the marks that follow it.
    Complex,
}

/// BERT's whitespace: tab, line feed, carriage return and Unicode `White_Space`.
fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Removed by `clean_text`: NUL, U+FFFD and the "other" categories (Cc, Cf, Cn, Co, Cs)
/// except tab, line feed and carriage return.
fn is_cleaned_away(c: char) -> bool {
    c == '\0' || c == '\u{fffd}' || (!matches!(c, '\t' | '\n' | '\r') && c.is_other())
}

/// The CJK Unified Ideographs blocks `handle_chinese_chars` spaces out.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BERT's punctuation: ASCII punctuation or a Unicode `P*` category.
pub(crate) fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// Whether the canonical decomposition of `c` is `c` itself.
fn decomposes_to_itself(c: char) -> bool {
    let mut count = 0;
    let mut same = true;
    decompose_canonical(c, |d| {
        count += 1;
        same &= d == c;
    });
    count == 1 && same
}

/// The lowercase of `c` when it is one character.
fn single_lowercase(c: char) -> Option<char> {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => Some(l),
        _ => None,
    }
}

/// The pre-tokenizer's view of a normalized character.
fn pre_tokenized(c: char) -> CharClass {
    if c.is_whitespace() {
        CharClass::Space
    } else if is_bert_punctuation(c) {
        CharClass::Isolated(c)
    } else {
        CharClass::Word(c)
    }
}

/// What `flags` make of `c` alone, or [`CharClass::Complex`].
pub(crate) fn classify(c: char, flags: BertFlags) -> CharClass {
    if flags.clean_text {
        if is_cleaned_away(c) {
            return CharClass::Drop;
        }
        if is_bert_whitespace(c) {
            return CharClass::Space;
        }
    }
    let cjk = flags.handle_chinese_chars && is_chinese_char(c);
    if flags.strip_accents {
        if !decomposes_to_itself(c) {
            return CharClass::Complex;
        }
        if c.is_mark_nonspacing() {
            // Survivors keep their order when a mark is dropped (NFD sorts stably).
            return if cjk {
                CharClass::Space
            } else {
                CharClass::Drop
            };
        }
        if canonical_combining_class(c) != 0 {
            return CharClass::Complex;
        }
    }
    let normalized = if flags.lowercase {
        match single_lowercase(c) {
            Some(l) => l,
            None => return CharClass::Complex,
        }
    } else {
        c
    };
    match pre_tokenized(normalized) {
        CharClass::Word(w) if cjk => CharClass::Isolated(w),
        class => class,
    }
}

/// Whether `c`, after a [`CharClass::Complex`] character, belongs to its segment: NFD may
/// move it (its decomposition starts with a non-starter), or `clean_text` removes it (so
/// the marks around it meet).
pub(crate) fn segment_continues(c: char, flags: BertFlags) -> bool {
    if !flags.strip_accents {
        return false;
    }
    if flags.clean_text && is_cleaned_away(c) {
        return true;
    }
    let mut first = None;
    decompose_canonical(c, |d| {
        first.get_or_insert(d);
    });
    first.is_some_and(|d| canonical_combining_class(d) != 0)
}

/// Normalizes a segment (a [`CharClass::Complex`] character and the characters that
/// [`segment_continues`]) exactly as the `tokenizers` crate does, in its order, and hands
/// each resulting character's class to `emit` (never `Drop` or `Complex`).
pub(crate) fn normalize_segment(
    segment: &str,
    flags: BertFlags,
    scratch: &mut Vec<char>,
    mut emit: impl FnMut(CharClass),
) {
    scratch.clear();
    for c in segment.chars() {
        if flags.clean_text && is_cleaned_away(c) {
            continue;
        }
        let c = if flags.clean_text && is_bert_whitespace(c) {
            ' '
        } else {
            c
        };
        if flags.handle_chinese_chars && is_chinese_char(c) {
            scratch.extend([' ', c, ' ']);
        } else {
            scratch.push(c);
        }
    }
    if flags.strip_accents {
        let decomposed: Vec<char> = scratch
            .iter()
            .copied()
            .nfd()
            .map(|(c, _)| c)
            .filter(|c| !c.is_mark_nonspacing())
            .collect();
        *scratch = decomposed;
    }
    for &c in scratch.iter() {
        if flags.lowercase {
            c.to_lowercase().for_each(|l| emit(pre_tokenized(l)));
        } else {
            emit(pre_tokenized(c));
        }
    }
}

/// Classes of the Basic Multilingual Plane for one set of flags, each computed the first
/// time it is looked up (shared by every thread: a slot holds 0 until then, else the
/// class's code + 1).
pub(crate) struct CharTable {
    flags: BertFlags,
    bmp: Box<[AtomicU32]>,
}

const BMP: usize = 0x1_0000;

/// `(kind << 21 | char) + 1`: never 0.
fn encode(class: CharClass) -> u32 {
    let (kind, c) = match class {
        CharClass::Drop => (0, '\0'),
        CharClass::Space => (1, '\0'),
        CharClass::Isolated(c) => (2, c),
        CharClass::Word(c) => (3, c),
        CharClass::Complex => (4, '\0'),
    };
    (kind << 21 | c as u32) + 1
}

fn decode(code: u32) -> CharClass {
    let code = code - 1;
    let c = char::from_u32(code & 0x1F_FFFF).unwrap_or('\0');
    match code >> 21 {
        0 => CharClass::Drop,
        1 => CharClass::Space,
        2 => CharClass::Isolated(c),
        3 => CharClass::Word(c),
        _ => CharClass::Complex,
    }
}

impl std::fmt::Debug for CharTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CharTable")
            .field("flags", &self.flags)
            .finish()
    }
}

impl CharTable {
    /// The table of `flags`, one per process.
    pub fn get(flags: BertFlags) -> &'static CharTable {
        static TABLES: [OnceLock<CharTable>; 16] = [const { OnceLock::new() }; 16];
        TABLES[flags.index()].get_or_init(|| CharTable {
            flags,
            bmp: (0..BMP).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    /// The class of `c` (a table look-up in the BMP once it has been seen).
    #[inline]
    pub fn class(&self, c: char) -> CharClass {
        let Some(slot) = self.bmp.get(c as usize) else {
            return classify(c, self.flags);
        };
        match slot.load(Ordering::Relaxed) {
            0 => {
                let class = classify(c, self.flags);
                slot.store(encode(class), Ordering::Relaxed);
                class
            }
            code => decode(code),
        }
    }
}

#[cfg(test)]
#[path = "bert_chars_tests.rs"]
mod tests;
