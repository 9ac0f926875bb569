//! Token strings ↔ compact ids.

use rustc_hash::FxHashMap;

/// Token id as carried by batches.
pub type TokenId = u32;

/// The strings of all tokens seen, addressed by [`TokenId`].
///
/// Ids are either interned in order of first appearance (token-string inputs) or given by a
/// tokenizer's vocabulary (token-id inputs), in which case two ids may share a string: in a
/// byte-level BPE vocabulary every id holding part of a multi-byte UTF-8 character decodes
/// on its own to U+FFFD (SmolLM2's 49,152 ids: 265 to "\u{FFFD}", 37 to " \u{FFFD}", 10 to
/// "\u{FFFD}\u{FFFD}").
///
/// A dictionary counts tokens by their string, so the ids that batches carry must be one per
/// string: [`TokenSequences::new`](super::TokenSequences::new) replaces every id by its
/// string's canonical id ([`Vocab::canonical_ids`], the smallest id with that string).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab {
    strings: Vec<String>,
    /// String → smallest id. Fx, not SipHash: every token of an input is looked up here
    /// (twice for a tokens JSON), and the strings come from the user's own files.
    index: FxHashMap<String, TokenId>,
}

impl Vocab {
    /// An empty vocabulary.
    pub fn new() -> Self {
        Self::default()
    }

    /// A vocabulary whose ids are the positions in `strings` (e.g. a tokenizer's); strings
    /// may repeat.
    pub fn from_strings(strings: Vec<String>) -> Self {
        let mut index = FxHashMap::with_capacity_and_hasher(strings.len(), Default::default());
        for (i, s) in strings.iter().enumerate() {
            // The first id wins: the canonical id of a shared string is its smallest.
            index.entry(s.clone()).or_insert(i as TokenId);
        }
        Self { strings, index }
    }

    /// Id of `token`, adding it when new.
    pub fn intern(&mut self, token: &str) -> TokenId {
        if let Some(&id) = self.index.get(token) {
            return id;
        }
        let id = self.strings.len() as TokenId;
        self.strings.push(token.to_owned());
        self.index.insert(token.to_owned(), id);
        id
    }

    /// Whether some ids share a string (only possible with [`Vocab::from_strings`]).
    pub fn has_shared_strings(&self) -> bool {
        self.index.len() < self.strings.len()
    }

    /// The canonical id of every id: the smallest id with the same string (an id whose
    /// string no other id has is its own canonical id).
    pub fn canonical_ids(&self) -> Vec<TokenId> {
        self.strings.iter().map(|s| self.index[s]).collect()
    }

    /// Id of `token` if known (the smallest, when several ids share it).
    pub fn get(&self, token: &str) -> Option<TokenId> {
        self.index.get(token).copied()
    }

    /// String of `id` (`"<unk:ID>"` when out of range, which readers prevent).
    pub fn token(&self, id: TokenId) -> std::borrow::Cow<'_, str> {
        match self.strings.get(id as usize) {
            Some(s) => std::borrow::Cow::Borrowed(s.as_str()),
            None => std::borrow::Cow::Owned(format!("<unk:{id}>")),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Whether tokens carry their own leading spaces (byte-level BPE style), so a context is
    /// shown by concatenation rather than by joining with spaces.
    pub fn tokens_carry_spaces(&self) -> bool {
        self.strings
            .iter()
            .any(|s| s.starts_with(' ') || s.starts_with('\n'))
    }

    /// Joins tokens into readable text.
    pub fn join<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) -> String {
        let sep = if self.tokens_carry_spaces() { "" } else { " " };
        tokens.into_iter().collect::<Vec<_>>().join(sep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_strings_have_their_smallest_id_as_canonical_id() {
        let v = Vocab::from_strings(
            ["a", "\u{FFFD}", "b", "\u{FFFD}", "a", "\u{FFFD}"]
                .map(String::from)
                .to_vec(),
        );
        assert!(v.has_shared_strings());
        assert_eq!(v.canonical_ids(), vec![0, 1, 2, 1, 0, 1]);
        assert_eq!(v.get("\u{FFFD}"), Some(1));
        assert_eq!(v.token(5), "\u{FFFD}");

        let mut interned = Vocab::new();
        for t in ["x", "y", "x"] {
            interned.intern(t);
        }
        assert!(!interned.has_shared_strings());
        assert_eq!(interned.canonical_ids(), vec![0, 1]);
    }
}
