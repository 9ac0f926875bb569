//! Token strings ↔ compact ids.

use std::collections::HashMap;

/// Token id as carried by batches.
pub type TokenId = u32;

/// The strings of all tokens seen, addressed by [`TokenId`].
///
/// Ids are either interned in order of first appearance (token-string inputs) or given by a
/// tokenizer's vocabulary (token-id inputs), in which case two ids may share a string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab {
    strings: Vec<String>,
    index: HashMap<String, TokenId>,
}

impl Vocab {
    /// An empty vocabulary.
    pub fn new() -> Self {
        Self::default()
    }

    /// A vocabulary whose ids are the positions in `strings` (e.g. a tokenizer's).
    pub fn from_strings(strings: Vec<String>) -> Self {
        let mut index = HashMap::with_capacity(strings.len());
        for (i, s) in strings.iter().enumerate() {
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

    /// Id of `token` if known.
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
