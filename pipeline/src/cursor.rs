//! Where a loader's stream stands after a batch: the whole state a loader needs to go on
//! exactly where another stopped (packing and masking are pure functions of (seed, epoch,
//! document), so a position is enough).
//!
//! A single corpus has one [`StreamPosition`], the four fields of [`DataCursor`]. A
//! mixture ([`crate::corpus::mixture`]) has one per source, with the source's example and
//! token counts, and the schedule's slot ([`MixtureCursor`]); each source resumes at its
//! own position.

use serde::{Deserialize, Serialize};

/// A position in one source's example stream: everything before it has been consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The source's epoch.
    pub epoch: u64,
    /// Position of the current document in the epoch's document stream (0-based, after
    /// the epoch's shuffle).
    pub document: u64,
    /// Where a raw-file reader seeks to (`source index << 32 | ordinal in the file`): the
    /// document itself, or, when raw files are shuffled, the first document (in file
    /// order) of its shuffle block.
    pub doc_id: u64,
    /// Examples of that document already consumed.
    pub examples_done: u32,
}

impl StreamPosition {
    /// The position just after example `example_index` of the document at `document`
    /// (`doc_id`: where a raw reader seeks to, see the field).
    pub fn after(epoch: u64, document: u64, doc_id: u64, example_index: u32) -> Self {
        Self {
            epoch,
            document,
            doc_id,
            examples_done: example_index.saturating_add(1),
        }
    }

    /// Whether the example (`epoch`, `document`, `example_index`) comes before the
    /// position, i.e. was already consumed.
    pub fn consumed(&self, epoch: u64, document: u64, example_index: u32) -> bool {
        (epoch, document, example_index) < (self.epoch, self.document, self.examples_done)
    }

    /// Whether reading must seek inside the position's epoch.
    pub fn seeks(&self) -> bool {
        self.document > 0 || self.examples_done > 0
    }
}

/// One mixture source's part of a [`MixtureCursor`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCursor {
    /// Where the source's own stream stands.
    pub position: StreamPosition,
    /// Examples drawn from it so far (by this loader's slice).
    pub examples: u64,
    /// Real tokens of those examples.
    pub tokens: u64,
}

/// A mixture's state: the schedule's next slot and every source's cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixtureCursor {
    /// Slots of the schedule resolved so far: drawn from, or passed over because their
    /// source was spent.
    pub slot: u64,
    /// Each source's cursor, in config order.
    pub sources: Vec<SourceCursor>,
}

/// A position in the example stream: everything before it has been consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCursor {
    /// The epoch (a mixture's: the smallest epoch among the last batch's examples).
    pub epoch: u64,
    /// Position of the current document in the epoch's document stream (0-based; after
    /// the epoch's shuffle). Unused by a mixture.
    pub document: u64,
    /// Where a raw-file reader seeks to (see [`StreamPosition::doc_id`]). Unused by a
    /// mixture.
    pub doc_id: u64,
    /// Examples of that document already consumed. Unused by a mixture.
    pub examples_done: u32,
    /// A mixture's state; `None` for a single corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<MixtureCursor>,
}

impl DataCursor {
    /// The cursor just after example `example_index` of the document at `document`.
    pub fn after(epoch: u64, document: u64, doc_id: u64, example_index: u32) -> Self {
        Self::at(StreamPosition::after(
            epoch,
            document,
            doc_id,
            example_index,
        ))
    }

    /// The cursor of a single corpus at `position`.
    pub fn at(position: StreamPosition) -> Self {
        Self {
            epoch: position.epoch,
            document: position.document,
            doc_id: position.doc_id,
            examples_done: position.examples_done,
            mixture: None,
        }
    }

    /// A single corpus's position (the four fields).
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch,
            document: self.document,
            doc_id: self.doc_id,
            examples_done: self.examples_done,
        }
    }

    /// Whether the example (`epoch`, `document`, `example_index`) of a single corpus comes
    /// before the cursor, i.e. was already consumed.
    pub fn consumed(&self, epoch: u64, document: u64, example_index: u32) -> bool {
        self.position().consumed(epoch, document, example_index)
    }

    /// Where source `index` of `sources` starts: its mixture cursor, or for a single
    /// corpus (`sources == 1`, no mixture) the cursor's position; `None` when the cursor
    /// does not fit that many sources.
    pub fn source_start(&self, index: usize, sources: usize) -> Option<SourceCursor> {
        match &self.mixture {
            Some(mixture) if mixture.sources.len() == sources => {
                mixture.sources.get(index).copied()
            }
            Some(_) => None,
            None if sources == 1 => Some(SourceCursor {
                position: self.position(),
                ..SourceCursor::default()
            }),
            // A fresh cursor starts every source at its beginning.
            None => (*self == DataCursor::default()).then(SourceCursor::default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_corpus_cursor_serializes_as_before_mixtures() {
        let cursor = DataCursor::after(1, 5, 7, 2);
        let json = serde_json::to_string(&cursor).unwrap();
        assert_eq!(
            json,
            r#"{"epoch":1,"document":5,"doc_id":7,"examples_done":3}"#
        );
        assert_eq!(serde_json::from_str::<DataCursor>(&json).unwrap(), cursor);
    }

    #[test]
    fn a_mixture_cursor_round_trips_and_starts_each_source() {
        let position = StreamPosition::after(2, 9, 4, 0);
        let cursor = DataCursor {
            mixture: Some(MixtureCursor {
                slot: 40,
                sources: vec![
                    SourceCursor::default(),
                    SourceCursor {
                        position,
                        examples: 12,
                        tokens: 900,
                    },
                ],
            }),
            ..DataCursor::default()
        };
        let json = serde_json::to_string(&cursor).unwrap();
        assert_eq!(serde_json::from_str::<DataCursor>(&json).unwrap(), cursor);
        assert_eq!(cursor.source_start(1, 2).unwrap().position, position);
        assert_eq!(cursor.source_start(1, 3), None, "another number of sources");
        assert_eq!(
            DataCursor::default().source_start(2, 3),
            Some(SourceCursor::default())
        );
        assert_eq!(DataCursor::after(0, 3, 3, 0).source_start(0, 2), None);
        assert!(position.consumed(2, 9, 0) && !position.consumed(2, 9, 1));
        assert!(position.seeks() && !StreamPosition::default().seeks());
    }
}
