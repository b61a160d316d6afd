//! The fast path for BERT-style WordPiece tokenizers: BERT's normalizer and pre-tokenizer
//! fused into one pass over the sentence ([`bert_chars`]), each word tokenized by
//! [`LinMaxMatch`] as its bytes arrive, added tokens (`[MASK]` ...) split out first as the
//! `tokenizers` crate does. Same ids and word starts as the crate, for any input; any
//! tokenizer it cannot reproduce exactly is refused ([`FastWordPiece::new`]) and keeps
//! the crate.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{Model, ModelWrapper, Tokenizer};

use super::bert_chars::{self, BertFlags, CharClass, CharTable};
use super::lin_max_match::{LinMaxMatch, ROOT};

/// Added tokens matched in the raw text, leftmost-longest, as the crate matches its
/// non-normalized added tokens.
struct AddedTokens {
    matcher: AhoCorasick,
    ids: Vec<u32>,
}

/// A BERT WordPiece tokenizer, fast and exact.
pub(crate) struct FastWordPiece {
    /// The classes of ASCII, the hot path.
    ascii: [CharClass; 128],
    chars: &'static CharTable,
    flags: BertFlags,
    matcher: LinMaxMatch,
    added: Option<AddedTokens>,
    unk: u32,
    max_chars: usize,
}

impl std::fmt::Debug for FastWordPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastWordPiece")
            .field("flags", &self.flags)
            .field("matcher", &self.matcher)
            .field("unk", &self.unk)
            .field("max_chars", &self.max_chars)
            .finish()
    }
}

/// Why a tokenizer does not take the fast path.
pub(crate) type Refusal = &'static str;

fn bert_parts(
    tokenizer: &Tokenizer,
) -> Result<(BertFlags, &tokenizers::models::wordpiece::WordPiece), Refusal> {
    let ModelWrapper::WordPiece(model) = tokenizer.get_model() else {
        return Err("the model is not WordPiece");
    };
    let Some(NormalizerWrapper::BertNormalizer(normalizer)) = tokenizer.get_normalizer() else {
        return Err("the normalizer is not BertNormalizer");
    };
    let Some(PreTokenizerWrapper::BertPreTokenizer(_)) = tokenizer.get_pre_tokenizer() else {
        return Err("the pre-tokenizer is not BertPreTokenizer");
    };
    match tokenizer.get_post_processor() {
        None | Some(PostProcessorWrapper::Bert(_)) | Some(PostProcessorWrapper::Template(_)) => {}
        Some(_) => return Err("the post-processor is not BERT's or a template"),
    }
    if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
        return Err("truncation or padding is set");
    }
    Ok((BertFlags::of(normalizer), model))
}

/// The continuing-subword prefix must contain punctuation or whitespace and be two or
/// more characters long: then no word (which has neither, unless it is one punctuation
/// character) starts with it, and a word starts exactly at each token not marked as a
/// continuation, as the crate path computes word starts.
fn check_prefix(prefix: &str) -> Result<(), Refusal> {
    let marked = prefix
        .chars()
        .any(|c| c.is_whitespace() || bert_chars::is_bert_punctuation(c));
    if prefix.chars().count() >= 2 && marked {
        Ok(())
    } else {
        Err("the continuing-subword prefix is not two or more characters with punctuation")
    }
}

fn added_tokens(tokenizer: &Tokenizer) -> Result<Option<AddedTokens>, Refusal> {
    if tokenizer.get_encode_special_tokens() {
        return Err("special tokens are encoded as text");
    }
    let mut patterns = Vec::new();
    let mut ids = Vec::new();
    for token in tokenizer.get_added_tokens_decoder().values() {
        if token.normalized || token.single_word || token.lstrip || token.rstrip {
            return Err("an added token is normalized, single-word or strips spaces");
        }
        if token.content.is_empty() {
            continue;
        }
        let id = tokenizer
            .token_to_id(&token.content)
            .ok_or("an added token has no id")?;
        patterns.push(token.content.clone());
        ids.push(id);
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    let matcher = AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&patterns)
        .map_err(|_| "the added tokens do not build a matcher")?;
    Ok(Some(AddedTokens { matcher, ids }))
}

impl FastWordPiece {
    /// The fast path of `tokenizer`, or why it has none.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self, Refusal> {
        let (flags, model) = bert_parts(tokenizer)?;
        check_prefix(&model.continuing_subword_prefix)?;
        let vocab = model.get_vocab();
        let unk = *vocab
            .get(&model.unk_token)
            .ok_or("the unknown token is not in the vocabulary")?;
        let added = added_tokens(tokenizer)?;
        let matcher = LinMaxMatch::new(
            vocab.iter().map(|(t, &id)| (t.as_str(), id)),
            &model.continuing_subword_prefix,
        );
        Ok(Self {
            ascii: std::array::from_fn(|b| bert_chars::classify(char::from(b as u8), flags)),
            chars: CharTable::get(flags),
            flags,
            matcher,
            added,
            unk,
            max_chars: model.max_input_chars_per_word,
        })
    }

    /// Encodes one sentence: ids and word starts appended; returns the number of tokens.
    pub fn encode(&self, sentence: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> usize {
        let before = ids.len();
        let mut words = Words {
            fast: self,
            ids,
            starts,
            node: ROOT,
            in_word: false,
            failed: false,
            chars: 0,
            first: 0,
            scratch: Vec::new(),
        };
        match &self.added {
            Some(added) => {
                let mut last = 0;
                for m in added.matcher.find_iter(sentence) {
                    words.piece(&sentence[last..m.start()]);
                    words.ids.push(added.ids[m.pattern().as_usize()]);
                    words.starts.push(true);
                    last = m.end();
                }
                words.piece(&sentence[last..]);
            }
            None => words.piece(sentence),
        }
        words.ids.len() - before
    }
}

/// One sentence being encoded: the word in progress and its place in the matcher.
struct Words<'a> {
    fast: &'a FastWordPiece,
    ids: &'a mut Vec<u32>,
    starts: &'a mut Vec<bool>,
    /// The matcher's node in the current word.
    node: u32,
    in_word: bool,
    /// The word cannot be tokenized (it becomes `[UNK]`).
    failed: bool,
    /// Characters in the word so far.
    chars: usize,
    /// Where the word's ids begin.
    first: usize,
    scratch: Vec<char>,
}

impl Words<'_> {
    /// A stretch of text between added tokens: normalized on its own, as the crate does.
    fn piece(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(&class) = self.fast.ascii.get(usize::from(b)) {
                self.apply(class);
                i += 1;
                continue;
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            let class = self.fast.chars.class(c);
            let next = i + c.len_utf8();
            if class == CharClass::Complex {
                i = self.segment(text, i, next);
            } else {
                self.apply(class);
                i = next;
            }
        }
        self.end_word();
    }

    /// Normalizes the segment of a complex character at `start` (it ends at `next`), with
    /// the characters that continue it; returns where it ends.
    fn segment(&mut self, text: &str, start: usize, mut next: usize) -> usize {
        let flags = self.fast.flags;
        for c in text[next..].chars() {
            if !bert_chars::segment_continues(c, flags) {
                break;
            }
            next += c.len_utf8();
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        bert_chars::normalize_segment(&text[start..next], flags, &mut scratch, |class| {
            self.apply(class)
        });
        self.scratch = scratch;
        next
    }

    #[inline]
    fn apply(&mut self, class: CharClass) {
        match class {
            CharClass::Word(c) => self.push(c),
            CharClass::Space => self.end_word(),
            CharClass::Isolated(c) => {
                self.end_word();
                self.push(c);
                self.end_word();
            }
            CharClass::Drop | CharClass::Complex => {}
        }
    }

    /// Adds a normalized character to the word.
    #[inline]
    fn push(&mut self, c: char) {
        if !self.in_word {
            self.in_word = true;
            self.failed = false;
            self.chars = 0;
            self.node = ROOT;
            self.first = self.ids.len();
        }
        self.chars += 1;
        if self.failed || self.chars > self.fast.max_chars {
            return;
        }
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            if !self.fast.matcher.step(&mut self.node, b, self.ids) {
                self.failed = true;
                return;
            }
        }
    }

    /// Ends the word in progress: its pieces, or `[UNK]` when it is too long or cannot
    /// be tokenized; the first piece starts a word.
    fn end_word(&mut self) {
        if !self.in_word {
            return;
        }
        self.in_word = false;
        let fits = !self.failed && self.chars <= self.fast.max_chars;
        if !(fits && self.fast.matcher.finish(self.node, self.ids)) {
            self.ids.truncate(self.first);
            self.ids.push(self.fast.unk);
        }
        let pieces = self.ids.len() - self.first;
        self.starts.push(true);
        self.starts.extend(std::iter::repeat_n(false, pieces - 1));
    }
}
