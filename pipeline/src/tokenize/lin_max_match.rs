//! LinMaxMatch (Song et al., "Fast WordPiece Tokenization", EMNLP 2021): WordPiece's
//! greedy longest-match-first tokenization of one word in time linear in its length.
//!
//! A trie holds the vocabulary twice: from [`ROOT`] every token as written (what a word's
//! first piece is looked up as), from [`SUFFIX_ROOT`] the tokens that start with the
//! continuing-subword prefix, without it (what every later piece is looked up as). Each
//! node `v` gets a failure link `f(v)` and failure pops `F(v)`: when the next byte has no
//! edge at `v`, greedy matching would emit the tokens `F(v)` and go on from `f(v)` with
//! the bytes it has already read, so the walk never rereads a byte. The trie is over UTF-8
//! bytes: a token is valid UTF-8, so a match that starts at a character boundary ends at
//! one, and the pieces are those of the character-based algorithm.

/// No node (a failure link that means the word cannot be tokenized).
const NONE: u32 = u32::MAX;
/// Where a word's first piece is matched.
pub(crate) const ROOT: u32 = 0;
/// Where every later piece is matched (the continuing-subword prefix already read).
pub(crate) const SUFFIX_ROOT: u32 = 1;

/// The trie with failure links and pops, in compact arrays (nodes in breadth-first
/// order).
pub(crate) struct LinMaxMatch {
    /// Per node, its first edge in `labels`/`targets`; one more entry closes the last.
    edge_start: Vec<u32>,
    /// Edge bytes, sorted within a node.
    labels: Vec<u8>,
    /// Edge targets.
    targets: Vec<u32>,
    /// Dense edges of the two roots, which every word and piece starts from.
    root_edges: [[u32; 256]; 2],
    /// Failure link per node.
    fail: Vec<u32>,
    /// Per node, its first failure pop in `pops`; one more entry closes the last.
    pop_start: Vec<u32>,
    /// Failure pops: token ids.
    pops: Vec<u32>,
}

impl std::fmt::Debug for LinMaxMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinMaxMatch")
            .field("nodes", &self.fail.len())
            .field("pops", &self.pops.len())
            .finish()
    }
}

/// The trie while it is built: children lists (dense for the two roots, which have the
/// most) and the token id of each node.
struct Trie {
    children: Vec<Vec<(u8, u32)>>,
    roots: [[u32; 256]; 2],
    token: Vec<u32>,
}

/// Failure links and pops of every node: pops are `arena[range.0..range.1]`.
struct Failures {
    fail: Vec<u32>,
    range: Vec<(u32, u32)>,
    arena: Vec<u32>,
    /// Nodes breadth-first.
    order: Vec<u32>,
}

impl Trie {
    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        if let Some(dense) = self.roots.get(node as usize) {
            let next = dense[byte as usize];
            return (next != NONE).then_some(next);
        }
        self.children[node as usize]
            .iter()
            .find(|(b, _)| *b == byte)
            .map(|&(_, c)| c)
    }

    fn insert(&mut self, from: u32, bytes: &[u8], id: u32) {
        if bytes.is_empty() {
            return; // never looked up: a piece has at least one character
        }
        let mut node = from;
        for &b in bytes {
            node = match self.child(node, b) {
                Some(c) => c,
                None => {
                    let c = self.token.len() as u32;
                    self.children.push(Vec::new());
                    self.token.push(NONE);
                    self.children[node as usize].push((b, c));
                    if let Some(dense) = self.roots.get_mut(node as usize) {
                        dense[b as usize] = c;
                    }
                    c
                }
            };
        }
        self.token[node as usize] = id;
    }

    /// Failure links and pops, breadth-first from both roots: a node's link points to a
    /// shallower node, whose own link is then known.
    fn failures(&self) -> Failures {
        let n = self.token.len();
        let mut f = Failures {
            fail: vec![NONE; n],
            range: vec![(0, 0); n],
            arena: Vec::new(),
            order: Vec::with_capacity(n),
        };
        f.order.extend([ROOT, SUFFIX_ROOT]);
        let mut next = 0;
        while let Some(&u) = f.order.get(next) {
            next += 1;
            for &(byte, v) in &self.children[u as usize] {
                f.order.push(v);
                let vi = v as usize;
                let start = f.arena.len() as u32;
                if self.token[vi] != NONE {
                    f.fail[vi] = SUFFIX_ROOT;
                    f.arena.push(self.token[vi]);
                    f.range[vi] = (start, start + 1);
                    continue;
                }
                let (a, b) = f.range[u as usize];
                f.arena.extend_from_within(a as usize..b as usize);
                let mut z = f.fail[u as usize];
                while z != NONE && self.child(z, byte).is_none() {
                    let (a, b) = f.range[z as usize];
                    f.arena.extend_from_within(a as usize..b as usize);
                    z = f.fail[z as usize];
                }
                match (z != NONE).then(|| self.child(z, byte)).flatten() {
                    Some(target) => {
                        f.fail[vi] = target;
                        f.range[vi] = (start, f.arena.len() as u32);
                    }
                    None => f.arena.truncate(start as usize),
                }
            }
        }
        f
    }
}

impl LinMaxMatch {
    /// The matcher of a WordPiece vocabulary (`(token, id)` pairs) whose later pieces
    /// carry `prefix`.
    pub fn new<'a>(vocab: impl IntoIterator<Item = (&'a str, u32)>, prefix: &str) -> Self {
        let mut trie = Trie {
            children: vec![Vec::new(), Vec::new()],
            roots: [[NONE; 256]; 2],
            token: vec![NONE, NONE],
        };
        for (token, id) in vocab {
            trie.insert(ROOT, token.as_bytes(), id);
            if let Some(rest) = token.strip_prefix(prefix) {
                trie.insert(SUFFIX_ROOT, rest.as_bytes(), id);
            }
        }
        Self::flatten(&trie, &trie.failures())
    }

    /// Compact arrays, nodes renumbered breadth-first.
    fn flatten(trie: &Trie, failures: &Failures) -> Self {
        let order = &failures.order;
        let mut rank = vec![NONE; order.len()];
        for (i, &node) in order.iter().enumerate() {
            rank[node as usize] = i as u32;
        }
        let renumber = |node: u32| {
            if node == NONE {
                NONE
            } else {
                rank[node as usize]
            }
        };
        let mut matcher = Self {
            edge_start: Vec::with_capacity(order.len() + 1),
            labels: Vec::with_capacity(order.len()),
            targets: Vec::with_capacity(order.len()),
            root_edges: trie.roots.map(|dense| dense.map(renumber)),
            fail: Vec::with_capacity(order.len()),
            pop_start: Vec::with_capacity(order.len() + 1),
            pops: Vec::with_capacity(failures.arena.len()),
        };
        matcher.edge_start.push(0);
        matcher.pop_start.push(0);
        let mut edges = Vec::new();
        for &node in order {
            edges.clear();
            edges.extend_from_slice(&trie.children[node as usize]);
            edges.sort_unstable();
            for &(byte, child) in &edges {
                matcher.labels.push(byte);
                matcher.targets.push(renumber(child));
            }
            matcher.edge_start.push(matcher.labels.len() as u32);
            matcher.fail.push(renumber(failures.fail[node as usize]));
            let (a, b) = failures.range[node as usize];
            matcher
                .pops
                .extend_from_slice(&failures.arena[a as usize..b as usize]);
            matcher.pop_start.push(matcher.pops.len() as u32);
        }
        matcher
    }

    #[inline]
    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        if let Some(dense) = self.root_edges.get(node as usize) {
            let next = dense[byte as usize];
            return (next != NONE).then_some(next);
        }
        let start = self.edge_start[node as usize] as usize;
        let end = self.edge_start[node as usize + 1] as usize;
        let labels = &self.labels[start..end];
        let k = if labels.len() > 8 {
            labels.binary_search(&byte).ok()?
        } else {
            labels.iter().position(|&l| l == byte)?
        };
        Some(self.targets[start + k])
    }

    /// Follows the failure link of `node`, pushing its pops; `false` if it has none.
    #[inline]
    fn fail_over(&self, node: &mut u32, ids: &mut Vec<u32>) -> bool {
        let n = *node as usize;
        let next = self.fail[n];
        if next == NONE {
            return false;
        }
        ids.extend_from_slice(
            &self.pops[self.pop_start[n] as usize..self.pop_start[n + 1] as usize],
        );
        *node = next;
        true
    }

    /// Reads one byte of the word at `node` (start at [`ROOT`]), pushing the pieces it
    /// completes; `false` when the word cannot be tokenized.
    #[inline]
    pub fn step(&self, node: &mut u32, byte: u8, ids: &mut Vec<u32>) -> bool {
        loop {
            if let Some(next) = self.child(*node, byte) {
                *node = next;
                return true;
            }
            if !self.fail_over(node, ids) {
                return false;
            }
        }
    }

    /// Ends the word at `node`, pushing its last pieces; `false` when it cannot be
    /// tokenized.
    #[inline]
    pub fn finish(&self, mut node: u32, ids: &mut Vec<u32>) -> bool {
        while node != SUFFIX_ROOT {
            if !self.fail_over(&mut node, ids) {
                return false;
            }
        }
        true
    }

    /// The pieces of a whole word (pushed to `ids`), or `false` (and `ids` partly
    /// extended) when it cannot be tokenized.
    #[cfg(test)]
    pub fn tokenize(&self, word: &[u8], ids: &mut Vec<u32>) -> bool {
        let mut node = ROOT;
        word.iter().all(|&b| self.step(&mut node, b, ids)) && self.finish(node, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// WordPiece as the `tokenizers` crate writes it: at each position the longest
    /// vocabulary entry (with the prefix after the first piece), else the word fails.
    fn greedy(vocab: &[(&str, u32)], prefix: &str, word: &str) -> Option<Vec<u32>> {
        let lookup = |s: &str| vocab.iter().find(|(t, _)| *t == s).map(|&(_, id)| id);
        let mut ids = Vec::new();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                if end <= start {
                    break None;
                }
                if !word.is_char_boundary(end) {
                    end -= 1;
                    continue;
                }
                let piece = &word[start..end];
                let key = if start > 0 {
                    format!("{prefix}{piece}")
                } else {
                    piece.to_string()
                };
                if let Some(id) = lookup(&key) {
                    break Some(id);
                }
                end -= 1;
            }?;
            ids.push(found);
            start = end;
        }
        Some(ids)
    }

    fn matcher_ids(vocab: &[(&str, u32)], prefix: &str, word: &str) -> Option<Vec<u32>> {
        let matcher = LinMaxMatch::new(vocab.iter().copied(), prefix);
        let mut ids = Vec::new();
        matcher.tokenize(word.as_bytes(), &mut ids).then_some(ids)
    }

    #[test]
    fn the_papers_example_pops_and_follows_failure_links() {
        let vocab = [
            ("a", 0),
            ("abcdx", 1),
            ("##b", 2),
            ("##c", 3),
            ("##cdy", 4),
            ("##dz", 5),
        ];
        assert_eq!(matcher_ids(&vocab, "##", "abcdz"), Some(vec![0, 2, 3, 5]));
        assert_eq!(matcher_ids(&vocab, "##", "abcdx"), Some(vec![1]));
        assert_eq!(matcher_ids(&vocab, "##", "abcd"), None);
        assert_eq!(matcher_ids(&vocab, "##", "b"), None);
    }

    #[test]
    fn multibyte_characters_match_whole() {
        let vocab = [("é", 0), ("##é", 1), ("e", 2), ("##\u{301}", 3)];
        assert_eq!(matcher_ids(&vocab, "##", "éé"), Some(vec![0, 1]));
        assert_eq!(matcher_ids(&vocab, "##", "e\u{301}é"), Some(vec![2, 3, 1]));
        assert_eq!(matcher_ids(&vocab, "##", "ê"), None);
    }

    fn vocab_strategy() -> impl Strategy<Value = Vec<String>> {
        let piece = "[abé]{1,4}";
        proptest::collection::vec((any::<bool>(), piece), 1..24).prop_map(|entries| {
            let mut tokens: Vec<String> = entries
                .into_iter()
                .map(|(cont, p)| if cont { format!("##{p}") } else { p })
                .collect();
            tokens.sort();
            tokens.dedup();
            tokens
        })
    }

    proptest! {
        #[test]
        fn lin_max_match_equals_greedy_longest_match_first(
            tokens in vocab_strategy(),
            word in "[abé]{1,12}",
        ) {
            let vocab: Vec<(&str, u32)> =
                tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u32)).collect();
            prop_assert_eq!(matcher_ids(&vocab, "##", &word), greedy(&vocab, "##", &word));
        }
    }
}
