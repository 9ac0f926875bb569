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
    /// shown by concatenation rather than by joining with spaces: see
    /// [`token_carries_space`].
    pub fn tokens_carry_spaces(&self) -> bool {
        self.strings.iter().any(|s| token_carries_space(s))
    }

    /// Joins tokens into readable text (see [`join_tokens`]).
    pub fn join<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) -> String {
        join_tokens(tokens, self.tokens_carry_spaces())
    }
}

/// Joins tokens into readable text: concatenated when they carry their own spaces
/// (`carry_spaces`, see [`token_carries_space`]), otherwise with a space between words —
/// except that a WordPiece continuation (`##ing`) joins the token before it, marker
/// dropped (`play ##ing` reads `playing`), as the tokenizer's decoder joins them.
pub fn join_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>, carry_spaces: bool) -> String {
    let mut text = String::new();
    for (separator, piece) in token_pieces(tokens, carry_spaces) {
        text.push_str(separator);
        text.push_str(piece);
    }
    text
}

/// The tokens as [`join_tokens`] joins them, one `(separator before it, text)` per token,
/// for a display that marks tokens one by one.
pub fn token_pieces<'a>(
    tokens: impl IntoIterator<Item = &'a str>,
    carry_spaces: bool,
) -> impl Iterator<Item = (&'static str, &'a str)> {
    tokens
        .into_iter()
        .enumerate()
        .map(move |(i, token)| match wordpiece_continuation(token) {
            _ if carry_spaces || i == 0 => ("", token),
            Some(rest) => ("", rest),
            None => (" ", token),
        })
}

/// The text a WordPiece continuation (`##ing`) adds to the word before it; `None` for other
/// tokens, the bare marker `##` included.
fn wordpiece_continuation(token: &str) -> Option<&str> {
    token.strip_prefix("##").filter(|rest| !rest.is_empty())
}

/// Whether `token` carries the space before a word (`" the"`, `"\nThe"`): whitespace
/// followed by something else. Tokens of a tokenizer that attaches spaces (byte-level BPE,
/// SentencePiece) do; tokens split at whitespace (words, spaCy-style lists) do not, even
/// when some of them are whitespace alone (`"\n"`), so one newline token no longer makes
/// their contexts run together.
pub fn token_carries_space(token: &str) -> bool {
    let mut chars = token.chars();
    chars.next().is_some_and(char::is_whitespace) && chars.any(|c| !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words with a newline token among them are joined with spaces (one `"\n"` token made
    /// every context of a word list run together: `Thecatsat…`); tokens that carry the
    /// space before a word are concatenated.
    #[test]
    fn only_tokens_carrying_a_space_before_a_word_are_concatenated() {
        for (token, carries) in [
            (" the", true),
            ("\nThe", true),
            ("\n\tx", true),
            ("\n", false),
            (" ", false),
            ("\n\n", false),
            ("the", false),
            ("", false),
        ] {
            assert_eq!(token_carries_space(token), carries, "{token:?}");
        }
        let words =
            Vocab::from_strings(["The", "cat", "sat", "\n", "It"].map(String::from).to_vec());
        assert_eq!(
            words.join(["The", "cat", "sat", "\n", "It"]),
            "The cat sat \n It"
        );
        let bpe = Vocab::from_strings([" cat", "The", "\n"].map(String::from).to_vec());
        assert_eq!(bpe.join(["The", " cat", "\n"]), "The cat\n");
        // WordPiece continuations join the word before them, as the decoder does; a
        // continuation opening the context, and the bare marker, stay as they are.
        assert_eq!(
            join_tokens(["[CLS]", "play", "##ing", ",", "world", "##s", "##"], false),
            "[CLS] playing , worlds ##"
        );
        assert_eq!(join_tokens(["##ing", "on"], false), "##ing on");
    }

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
