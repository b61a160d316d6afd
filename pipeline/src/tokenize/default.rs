//! Loading a run's tokenizer: a `tokenizer.json` path, or the embedded default
//! (bert-base-uncased's 30,522-token uncased WordPiece vocabulary, as ELECTRA uses).

use std::path::Path;

use electra_fsutil::bytes_sha256;

use super::TextTokenizer;
use crate::error::Result;

/// The bert-base-uncased `tokenizer.json` (Apache-2.0), built into the binaries.
pub const DEFAULT_TOKENIZER_JSON: &[u8] =
    include_bytes!("../../../data/tokenizer/bert-base-uncased/tokenizer.json");

/// Loads `path`, or the embedded default when `path` is empty (it is written to a cache
/// file in the system's temporary folder, named by its hash, and loaded from there).
pub fn load_tokenizer(path: &str) -> Result<TextTokenizer> {
    if path.is_empty() {
        let cached = std::env::temp_dir().join(format!(
            "electra-default-tokenizer-{}.json",
            &bytes_sha256(DEFAULT_TOKENIZER_JSON)[..16]
        ));
        let fresh = std::fs::read(&cached)
            .map(|b| b == DEFAULT_TOKENIZER_JSON)
            .unwrap_or(false);
        if !fresh {
            electra_fsutil::write_atomic(&cached, DEFAULT_TOKENIZER_JSON)?;
        }
        return TextTokenizer::from_file(&cached);
    }
    TextTokenizer::from_file(Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_the_bert_uncased_vocabulary() {
        let tok = load_tokenizer("").unwrap();
        assert_eq!(tok.vocab_size(), 30522);
        assert_eq!(tok.special().cls, 101);
        assert_eq!(tok.special().sep, 102);
        assert_eq!(tok.special().mask, 103);
        assert_eq!(tok.special().pad, 0);
    }

    #[test]
    fn a_missing_tokenizer_file_is_named() {
        let err = load_tokenizer("/nonexistent/tok.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/tok.json"), "{err}");
    }
}
