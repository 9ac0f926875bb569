//! Token sequences from a JSON file: a list of lists of token strings, one list per sequence.
//!
//! The file is parsed in one streaming pass straight into interned ids (4 bytes per token),
//! never into a tree of strings.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{TokenId, Vocab};
use crate::error::{Error, Result};

/// Token ids of every sequence, with the strings behind them.
#[derive(Debug, Clone)]
pub struct TokenSequences {
    path: PathBuf,
    vocab: Vocab,
    ids: Vec<TokenId>,
    offsets: Vec<u64>,
}

impl TokenSequences {
    /// Builds from ids and sequence lengths.
    ///
    /// When ids of `vocab` share a string (a tokenizer's vocabulary), each id is replaced by
    /// its string's canonical id ([`Vocab::canonical_ids`]): every statistic downstream is
    /// keyed by id, and a string must be counted once whichever ids stood for it.
    pub fn new(
        path: impl Into<PathBuf>,
        vocab: Vocab,
        mut ids: Vec<TokenId>,
        lengths: &[u64],
    ) -> Self {
        if vocab.has_shared_strings() {
            let canonical = vocab.canonical_ids();
            for id in &mut ids {
                // An id outside the vocabulary (readers refuse those) is left as it is.
                if let Some(&c) = canonical.get(*id as usize) {
                    *id = c;
                }
            }
        }
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0);
        let mut acc = 0;
        for l in lengths {
            acc += l;
            offsets.push(acc);
        }
        Self {
            path: path.into(),
            vocab,
            ids,
            offsets,
        }
    }

    /// Builds from in-memory string sequences (used by tests and bindings).
    pub fn from_strings<S: AsRef<str>>(sequences: &[Vec<S>]) -> Self {
        let mut vocab = Vocab::new();
        let mut ids = Vec::new();
        let mut lengths = Vec::new();
        for s in sequences {
            lengths.push(s.len() as u64);
            ids.extend(s.iter().map(|t| vocab.intern(t.as_ref())));
        }
        Self::new("<memory>", vocab, ids, &lengths)
    }

    /// Reads a tokens JSON file.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let map = super::dense::map_file_expecting(
            path,
            "a JSON list of lists of token strings (one list per sequence)",
        )?;
        // RFC 8259 lets a parser ignore a UTF-8 byte order mark; editors on Windows write one.
        let text = map.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&map);
        let mut de = serde_json::Deserializer::from_slice(text);
        let mut state = Builder::default();
        Outer(&mut state)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| {
                Error::format(
                    path,
                    format!("expected a JSON list of lists of token strings (one list per sequence): {e}"),
                )
            })?;
        Ok(Self::new(path, state.vocab, state.ids, &state.lengths))
    }

    /// The tokens file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Strings of the ids.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// All token ids, sequence after sequence: one id per distinct string (for token-id
    /// input, the smallest tokenizer id with the token's string, not necessarily the id in
    /// the input).
    pub fn ids(&self) -> &[TokenId] {
        &self.ids
    }

    /// First row of each sequence, then the total.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// Number of sequences.
    pub fn n_sequences(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> u64 {
        *self.offsets.last().unwrap_or(&0)
    }

    /// Length of each sequence.
    pub fn lengths(&self) -> impl Iterator<Item = u64> + '_ {
        self.offsets.windows(2).map(|w| w[1] - w[0])
    }

    /// A short description of the lengths for messages.
    pub fn describe_lengths(&self) -> String {
        let (mut lo, mut hi) = (u64::MAX, 0);
        for l in self.lengths() {
            lo = lo.min(l);
            hi = hi.max(l);
        }
        if self.n_sequences() == 0 {
            "none".into()
        } else if lo == hi {
            format!("all {lo}")
        } else {
            format!("{lo}..{hi}")
        }
    }
}

#[derive(Default)]
struct Builder {
    vocab: Vocab,
    ids: Vec<TokenId>,
    lengths: Vec<u64>,
}

struct Outer<'a>(&'a mut Builder);
struct Inner<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for Outer<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Outer<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of sequences")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Inner(self.0))?.is_some() {}
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Inner<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Inner<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of token strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let before = self.0.ids.len();
        while let Some(tok) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            let id = self.0.vocab.intern(&tok);
            self.0.ids.push(id);
        }
        self.0.lengths.push((self.0.ids.len() - before) as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utf8_byte_order_mark_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, b"\xEF\xBB\xBF[[\"a\", \" b\"], [\"a\"]]").unwrap();
        let t = TokenSequences::from_json_file(&p).unwrap();
        assert_eq!(t.n_sequences(), 2);
        assert_eq!(t.lengths().collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(t.vocab().token(t.ids()[1]), " b");
        assert_eq!(t.ids()[2], t.ids()[0]);
    }
}
