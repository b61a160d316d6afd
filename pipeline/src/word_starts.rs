//! The `word_starts` column of tokenized documents, bit-packed: one `Binary` value per
//! document holding its flags, token `i` in bit `i % 8` of byte `i / 8` (`ceil(n / 8)`
//! bytes for `n` tokens). A shard stores an eighth of a byte per token with no list
//! levels to decode, and the column is unpacked only for a selector that reads it
//! ([`crate::mask::PositionSelector::needs_word_starts`]).

use arrow_array::{BinaryArray, RecordBatch};
use electra_schemas::tokenized;

use crate::arrow_util::column;
use crate::error::Result;

/// The column of documents of `lengths` tokens whose flags, concatenated, are `starts`.
pub fn pack_word_starts(lengths: &[usize], starts: &[bool]) -> BinaryArray {
    let mut bytes = Vec::with_capacity(starts.len() / 8 + lengths.len());
    let mut offsets = Vec::with_capacity(lengths.len() + 1);
    offsets.push(0i32);
    let mut start = 0;
    for &n in lengths {
        for flags in starts[start..start + n].chunks(8) {
            let byte = flags
                .iter()
                .enumerate()
                .fold(0u8, |b, (bit, &f)| b | (u8::from(f) << bit));
            bytes.push(byte);
        }
        start += n;
        offsets.push(bytes.len() as i32);
    }
    let offsets = arrow_buffer::OffsetBuffer::new(offsets.into());
    BinaryArray::new(offsets, bytes.into(), None)
}

/// The `word_starts` column of a tokenized batch, read document by document.
#[derive(Debug, Clone, Copy)]
pub struct WordStarts<'a> {
    column: &'a BinaryArray,
}

impl<'a> WordStarts<'a> {
    /// The column of `batch` ([`tokenized::schema`]).
    pub fn of(batch: &'a RecordBatch) -> Result<Self> {
        Ok(Self {
            column: column(batch, tokenized::WORD_STARTS)?,
        })
    }

    /// The flags of document `row`, of `n` tokens, into `out` (replacing its contents);
    /// tokens past the stored bytes (a shard written by another tool) count as word
    /// starts.
    pub fn row(&self, row: usize, n: usize, out: &mut Vec<bool>) {
        let bytes = self.column.value(row);
        out.clear();
        out.resize(bytes.len() * 8, false);
        for (flags, &byte) in out.chunks_exact_mut(8).zip(bytes) {
            for (bit, flag) in flags.iter_mut().enumerate() {
                *flag = byte >> bit & 1 == 1;
            }
        }
        out.truncate(n);
        out.resize(n, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_the_packed_column_eight_to_a_byte() {
        let lengths = [0, 1, 8, 9, 20];
        let starts: Vec<bool> = (0..38).map(|i| i % 3 == 0 || i % 7 == 2).collect();
        let column = pack_word_starts(&lengths, &starts);
        let sizes: Vec<usize> = (0..5).map(|r| column.value(r).len()).collect();
        assert_eq!(sizes, [0, 1, 1, 2, 3]);
        let words = WordStarts { column: &column };
        let mut out = Vec::new();
        let mut start = 0;
        for (row, &n) in lengths.iter().enumerate() {
            words.row(row, n, &mut out);
            assert_eq!(out, &starts[start..start + n], "row {row}");
            start += n;
        }
        words.row(1, 10, &mut out);
        let mut expected = vec![starts[0]];
        expected.extend([false; 7]); // the padding bits of the stored byte
        expected.extend([true; 2]);
        assert_eq!(out, expected, "flags past the stored bytes are word starts");
    }
}
