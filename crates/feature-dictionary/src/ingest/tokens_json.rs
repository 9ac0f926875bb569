//! Token sequences from a JSON file: a list of lists of token strings, one list per sequence.
//!
//! Opening the file parses it once, streaming, into the vocabulary and the sequence lengths
//! (never into a tree of strings) and notes where each sequence's list lies in the file.
//! The ids themselves are not kept: a batch's tokens are parsed again from their sequences'
//! bytes when the batch is read, so memory does not grow with the number of tokens.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{TokenId, Vocab};
use crate::accumulate::distinct::text_key;
use crate::error::{Error, Result};

/// Token sequences: their lengths, the strings behind their ids, and where the ids are read
/// from when a batch asks for its rows ([`TokenSequences::ids`]).
#[derive(Debug)]
pub struct TokenSequences {
    path: PathBuf,
    vocab: Vocab,
    /// For a tokens JSON read decoded from byte-level BPE spelling ([`TokenSpelling`]): the
    /// strings as written, which a batch's sequences are parsed again into.
    written: Option<WrittenSpelling>,
    /// [`text_key`] of each id's string: the distinct-token estimate counts a token by its
    /// text, so token ids and a tokens JSON of the same strings give the same estimate.
    keys: Vec<u64>,
    pub(super) ids: IdStore,
    offsets: Vec<u64>,
    /// What reading the tokens could not apply as written (see [`Self::notes`]).
    notes: Vec<String>,
}

/// How the strings of a tokens JSON are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenSpelling {
    /// As written, unless they are spelled in byte-level BPE as GPT-2's tokenizer writes its
    /// vocabulary (`Ġ` for a space, `Ċ` for a newline: `convert_ids_to_tokens` output):
    /// then decoded to the text they stand for. Spelled so means every token is made of the
    /// 256 characters of that alphabet, each sequence's tokens together decode to valid
    /// UTF-8, and at least 5 % of the distinct tokens hold `Ġ` or `Ċ` (words after a space
    /// do, in any such text).
    #[default]
    Auto,
    /// Exactly as written.
    AsWritten,
}

/// The written strings of a tokens JSON whose vocabulary holds their decoded text.
#[derive(Debug)]
struct WrittenSpelling {
    vocab: Vocab,
    /// The id (one per decoded string) of each written string's id.
    ids: Vec<TokenId>,
}

/// Whether enough strings of `vocab` hold `Ġ` or `Ċ` to be byte-level BPE spelling (see
/// [`TokenSpelling::Auto`]; the alphabet and UTF-8 tests are [`ByteLevelText`]'s, made as the
/// file is first read).
fn marked_as_byte_level(vocab: &Vocab) -> bool {
    let marked = (0..vocab.len() as TokenId)
        .filter(|&id| vocab.token(id).contains(['\u{120}', '\u{10a}']))
        .count();
    marked > 0 && marked * 20 >= vocab.len()
}

/// Where the ids are read from.
#[derive(Debug)]
pub(super) enum IdStore {
    /// All of them, in memory (sequences given in memory, a Fortran-order token-id array).
    Memory(Vec<TokenId>),
    /// A tokens JSON file, parsed again sequence by sequence as batches ask for rows.
    Json(JsonSpans),
    /// A C-order token-id array, read as batches ask for rows.
    Array(super::token_ids::IdReader),
}

/// The open tokens JSON file and the byte range of each sequence's list in it.
#[derive(Debug)]
pub(super) struct JsonSpans {
    file: File,
    spans: Vec<(u64, u64)>,
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
        Self::with_store(path.into(), vocab, IdStore::Memory(ids), lengths)
    }

    /// Sequences of `lengths` whose ids `ids` reads from a token-id array (already mapped to
    /// one id per string of `vocab`).
    pub(super) fn from_id_reader(
        path: &Path,
        vocab: Vocab,
        lengths: &[u64],
        ids: super::token_ids::IdReader,
    ) -> Self {
        Self::with_store(path.to_path_buf(), vocab, IdStore::Array(ids), lengths)
    }

    fn with_store(path: PathBuf, vocab: Vocab, ids: IdStore, lengths: &[u64]) -> Self {
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0);
        let mut acc = 0;
        for l in lengths {
            acc += l;
            offsets.push(acc);
        }
        let keys = (0..vocab.len() as TokenId)
            .map(|id| text_key(&vocab.token(id)))
            .collect();
        Self {
            path,
            vocab,
            written: None,
            keys,
            ids,
            offsets,
            notes: Vec::new(),
        }
    }

    /// What reading the tokens could not apply as written — an unknown tokenizer model or
    /// decoder type — for the user to be warned: tokens may show otherwise than decoded.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// These sequences, with `notes` about how their tokens were read.
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
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

    /// Reads a tokens JSON file, decoding byte-level BPE spelling ([`TokenSpelling::Auto`]).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        Self::from_json_file_as(path, TokenSpelling::Auto)
    }

    /// Whether the tokens were read decoded from byte-level BPE spelling.
    pub fn decoded_byte_level(&self) -> bool {
        self.written.is_some()
    }

    /// Reads a tokens JSON file, its strings read as `spelling` says.
    pub fn from_json_file_as(path: &Path, spelling: TokenSpelling) -> Result<Self> {
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
                // serde_json reports a lone surrogate escape (a high half not followed by its
                // low half) as "unexpected end of hex escape" or "lone leading surrogate":
                // say what that means for a tokens file.
                let message = e.to_string();
                let hint = if message.contains("hex escape") || message.contains("surrogate") {
                    " (an escape \\uD800–\\uDFFF that is not half of a surrogate pair is not a character; write the token's text as UTF-8, or replace undecodable bytes with U+FFFD)"
                } else {
                    ""
                };
                Error::format(
                    path,
                    format!("expected a JSON list of lists of token strings (one list per sequence): {message}{hint}"),
                )
            })?;
        let bom = (map.len() - text.len()) as u64;
        let spans = sequence_spans(text, bom);
        if spans.len() != state.lengths.len() {
            return Err(Error::format(
                path,
                format!(
                    "found {} sequence lists where the parse found {} (did the file change while it was read?)",
                    spans.len(),
                    state.lengths.len()
                ),
            ));
        }
        let alphabet = super::tokenizer::byte_level_map();
        let (vocab, written) = if spelling == TokenSpelling::Auto
            && state.spelling.possible
            && marked_as_byte_level(&state.vocab)
        {
            let decoded = Vocab::from_strings(
                (0..state.vocab.len() as TokenId)
                    .map(|id| {
                        super::tokenizer::decode_byte_level(&state.vocab.token(id), &alphabet)
                    })
                    .collect(),
            );
            // Written strings that decode alike (parts of one multi-byte character
            // each decode to U+FFFD) are one token, counted once.
            let ids = decoded.canonical_ids();
            (
                decoded,
                Some(WrittenSpelling {
                    vocab: state.vocab,
                    ids,
                }),
            )
        } else {
            (state.vocab, None)
        };
        let is_file = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if !is_file {
            // A pipe or stream (`--tokens /dev/stdin`) cannot be read again as batches ask:
            // its ids are kept from the text read now.
            let mut sequences = Self::with_store(
                path.to_path_buf(),
                vocab,
                IdStore::Memory(Vec::new()),
                &state.lengths,
            );
            sequences.written = written;
            let mut ids = Vec::with_capacity(sequences.n_tokens() as usize);
            for (s, &(a, b)) in spans.iter().enumerate() {
                ids.extend(sequences.parse_sequence(s, &map[a as usize..b as usize])?);
            }
            sequences.ids = IdStore::Memory(ids);
            return Ok(sequences);
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut sequences = Self::with_store(
            path.to_path_buf(),
            vocab,
            IdStore::Json(JsonSpans { file, spans }),
            &state.lengths,
        );
        sequences.written = written;
        Ok(sequences)
    }

    /// The tokens file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Strings of the ids.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The key of each id for the distinct-token estimate (a batch's `token_keys`).
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The token ids of `rows` (rows count tokens sequence after sequence, as in
    /// [`TokenSequences::offsets`]): one id per distinct string (for token-id input, the
    /// smallest tokenizer id with the token's string, not necessarily the id in the input).
    ///
    /// From a tokens JSON file, the sequences holding `rows` are read and parsed again; an
    /// error means the file changed since it was opened.
    pub fn ids(&self, rows: Range<u64>) -> Result<Vec<TokenId>> {
        let total = self.n_tokens();
        if rows.start > rows.end || rows.end > total {
            return Err(Error::Invalid(format!(
                "{}: rows {}..{} asked of {total} tokens",
                self.path.display(),
                rows.start,
                rows.end
            )));
        }
        match &self.ids {
            IdStore::Memory(ids) => Ok(ids[rows.start as usize..rows.end as usize].to_vec()),
            IdStore::Json(_) if rows.is_empty() => Ok(Vec::new()),
            IdStore::Json(json) => self.json_ids(json, rows),
            IdStore::Array(array) => array.read(&self.path, rows),
        }
    }

    fn json_ids(&self, json: &JsonSpans, rows: Range<u64>) -> Result<Vec<TokenId>> {
        let first = self.offsets.partition_point(|&o| o <= rows.start) - 1;
        let end = self.offsets.partition_point(|&o| o < rows.end);
        let base = json.spans[first].0;
        let mut bytes = vec![0u8; (json.spans[end - 1].1 - base) as usize];
        read_at(&json.file, &mut bytes, base).map_err(|e| Error::io(&self.path, e))?;
        // The accumulator's threads wait for the batch: parse its sequences on all of them.
        let parsed = (first..end)
            .into_par_iter()
            .with_min_len(64)
            .map(|s| {
                let (a, b) = json.spans[s];
                self.parse_sequence(s, &bytes[(a - base) as usize..(b - base) as usize])
            })
            .collect::<Result<Vec<Vec<TokenId>>>>()?;
        let mut ids = Vec::with_capacity((self.offsets[end] - self.offsets[first]) as usize);
        for sequence in parsed {
            ids.extend(sequence);
        }
        let skip = (rows.start - self.offsets[first]) as usize;
        ids.truncate(skip + (rows.end - rows.start) as usize);
        ids.drain(..skip);
        Ok(ids)
    }

    /// The ids of sequence `s` from its list's bytes `list`.
    fn parse_sequence(&self, s: usize, list: &[u8]) -> Result<Vec<TokenId>> {
        let expected = self.offsets[s + 1] - self.offsets[s];
        let mut ids = Vec::with_capacity(expected as usize);
        let parsed = serde_json::Deserializer::from_slice(list)
            .deserialize_seq(Lookup {
                vocab: self.written.as_ref().map_or(&self.vocab, |w| &w.vocab),
                decoded: self.written.as_ref().map(|w| &w.ids[..]),
                ids: &mut ids,
            })
            .map_err(|e| e.to_string())
            .and_then(|known| known.then_some(()).ok_or("an unknown token".to_string()));
        if parsed.is_err() || ids.len() as u64 != expected {
            return Err(Error::format(
                &self.path,
                format!(
                    "sequence {s} no longer reads as the {expected} tokens it held when the file was opened ({}); was the file changed during the build?",
                    parsed.err().unwrap_or_else(|| format!("{} tokens", ids.len()))
                ),
            ));
        }
        Ok(ids)
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

/// Fills `buf` from `file` at `offset` without moving a shared cursor (so `&self` suffices).
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        use std::io::{Read, Seek, SeekFrom};
        // A handle of its own, so its cursor is nobody else's.
        let mut file = file.try_clone()?;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// The byte range `(start, end)` of each sequence's list in `text` (a JSON list of lists of
/// strings that has parsed), offset by `base`: a scan of brackets outside strings.
fn sequence_spans(text: &[u8], base: u64) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0u32, false, false, 0);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' => {
                depth += 1;
                if depth == 2 {
                    start = i;
                }
            }
            b']' => {
                if depth == 2 {
                    spans.push((base + start as u64, base + i as u64 + 1));
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    spans
}

/// Parses one sequence's list into ids of a complete vocabulary; `false` when a token is
/// not in it.
struct Lookup<'a> {
    vocab: &'a Vocab,
    /// The id of each written string's decoded text, when the vocabulary is decoded.
    decoded: Option<&'a [TokenId]>,
    ids: &'a mut Vec<TokenId>,
}

impl<'de> Visitor<'de> for Lookup<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of token strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<bool, A::Error> {
        while let Some(tok) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            match self.vocab.get(&tok) {
                Some(id) => self.ids.push(self.decoded.map_or(id, |d| d[id as usize])),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

#[derive(Default)]
struct Builder {
    vocab: Vocab,
    lengths: Vec<u64>,
    spelling: ByteLevelText,
}

/// Whether the sequences read so far can be text spelled in byte-level BPE: every token made
/// of the 256 characters of that alphabet, and each sequence's bytes together valid UTF-8
/// (but for a character cut at either end of it). Text written as it reads can pass the
/// first test (Maltese: `Ġ`, `ħ`, `ù` are in the alphabet) but hardly the second.
struct ByteLevelText {
    /// The byte of each character below U+0144 in the alphabet, −1 for the others.
    bytes: Vec<i16>,
    /// The current sequence's bytes.
    sequence: Vec<u8>,
    possible: bool,
}

impl Default for ByteLevelText {
    fn default() -> Self {
        let mut bytes = vec![-1i16; 0x144];
        for (c, b) in super::tokenizer::byte_level_map() {
            bytes[c as usize] = b as i16;
        }
        Self {
            bytes,
            sequence: Vec::new(),
            possible: true,
        }
    }
}

impl ByteLevelText {
    fn token(&mut self, token: &str) {
        if !self.possible {
            return;
        }
        for c in token.chars() {
            match self.bytes.get(c as usize) {
                Some(&b) if b >= 0 => self.sequence.push(b as u8),
                _ => {
                    self.possible = false;
                    return;
                }
            }
        }
    }

    fn end_sequence(&mut self) {
        if self.possible {
            let cut = self
                .sequence
                .iter()
                .take(3)
                .take_while(|&&b| (0x80..0xC0).contains(&b))
                .count();
            self.possible = match std::str::from_utf8(&self.sequence[cut..]) {
                Ok(_) => true,
                // Only a character cut at the end.
                Err(e) => e.error_len().is_none(),
            };
        }
        self.sequence.clear();
    }
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
        let mut length = 0;
        while let Some(tok) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            self.0.vocab.intern(&tok);
            self.0.spelling.token(&tok);
            length += 1;
        }
        self.0.spelling.end_sequence();
        self.0.lengths.push(length);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings of `t`'s tokens, as batches carry them.
    fn texts(t: &TokenSequences) -> Vec<String> {
        t.ids(0..t.n_tokens())
            .unwrap()
            .into_iter()
            .map(|id| t.vocab().token(id).into_owned())
            .collect()
    }

    #[test]
    fn byte_level_spelling_is_read_as_text_unless_asked_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        // "é" is two bytes; split over two tokens, each part alone decodes to U+FFFD, and
        // the two parts are then one token.
        std::fs::write(
            &p,
            r#"[["The", "Ġcat", "Ġsat", "Ċ"], ["ĠcafÃ", "©", "Ġcat", "Ã"]]"#,
        )
        .unwrap();
        let t = TokenSequences::from_json_file(&p).unwrap();
        assert!(t.decoded_byte_level());
        assert_eq!(
            texts(&t),
            [
                "The",
                " cat",
                " sat",
                "\n",
                " caf\u{FFFD}",
                "\u{FFFD}",
                " cat",
                "\u{FFFD}"
            ]
        );
        let ids = t.ids(0..8).unwrap();
        assert_eq!(ids[1], ids[6]);
        assert_eq!(ids[5], ids[7], "one id per decoded string");
        let raw = TokenSequences::from_json_file_as(&p, TokenSpelling::AsWritten).unwrap();
        assert!(!raw.decoded_byte_level());
        assert_eq!(texts(&raw)[1], "Ġcat");
    }

    #[test]
    fn text_that_is_not_byte_level_spelling_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        for text in [
            // Plain text: no Ġ or Ċ at all.
            r#"[["The", " cat", " sat"]]"#,
            // A character outside the byte alphabet (CJK) beside a Ġ.
            r#"[["Ġa", "猫"]]"#,
            // Maltese words (Ġ, ċ, ħ, ù are letters of it, and of the byte alphabet): many
            // hold Ġ, but their bytes are no UTF-8.
            r#"[["Ġesù", "ċiniku", "Ġenerali", "qalb", "Ċensiment", "Ġgantija", "ħafna"]]"#,
            // Ġ in one distinct token of 25 (Maltese writes Ġ as a letter).
            r#"[["Ġorġ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x"]]"#,
        ] {
            std::fs::write(&p, text).unwrap();
            let t = TokenSequences::from_json_file(&p).unwrap();
            assert!(!t.decoded_byte_level(), "{text}");
            let written: Vec<Vec<String>> = serde_json::from_str(text).unwrap();
            assert_eq!(texts(&t), written[0], "{text}");
        }
    }

    #[test]
    fn a_utf8_byte_order_mark_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, b"\xEF\xBB\xBF[[\"a\", \" b\"], [\"a\"]]").unwrap();
        let t = TokenSequences::from_json_file(&p).unwrap();
        assert_eq!(t.n_sequences(), 2);
        assert_eq!(t.lengths().collect::<Vec<_>>(), vec![2, 1]);
        let ids = t.ids(0..3).unwrap();
        assert_eq!(t.vocab().token(ids[1]), " b");
        assert_eq!(ids[2], ids[0]);
    }

    /// A lone surrogate escape (what Python's `json.dump` writes for a token decoded with
    /// "surrogateescape") is named as such, not only as serde's "end of hex escape"; a proper
    /// surrogate pair is one character.
    #[test]
    fn a_lone_surrogate_escape_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, br#"[["\ud800", "a"]]"#).unwrap();
        let e = TokenSequences::from_json_file(&p)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("tokens.json") && e.contains("surrogate pair"),
            "{e}"
        );
        std::fs::write(&p, br#"[["\ud83d\ude00", "a"]]"#).unwrap();
        let t = TokenSequences::from_json_file(&p).unwrap();
        assert_eq!(t.vocab().token(t.ids(0..1).unwrap()[0]), "\u{1F600}");
    }

    /// Every row range read from the file equals the same range of the sequences given in
    /// memory: ranges within one sequence, across several, starting or ending at sequence
    /// edges, through empty sequences, over strings holding brackets, quotes, backslashes
    /// and escapes.
    #[test]
    fn any_row_range_reads_back_as_the_tokens_of_the_file() {
        let sequences: Vec<Vec<&str>> = vec![
            vec!["a", " b", "]", "[", "c"],
            vec![],
            vec!["\\\\", "\"]\"", "x"],
            vec!["é", "\u{1F600}", "\n"],
            vec![],
            vec!["a"],
            vec![],
        ];
        let text = concat!(
            "\u{FEFF}[ [\"a\", \" b\", \"]\", \"[\", \"c\"],\n  [],\n",
            "  [\"\\\\\\\\\", \"\\\"]\\\"\", \"\\u0078\"],",
            "[\"\\u00e9\", \"\\ud83d\\ude00\", \"\\n\"] , [] ,[\"a\"],[]\n]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, text).unwrap();
        let from_file = TokenSequences::from_json_file(&p).unwrap();
        let in_memory = TokenSequences::from_strings(&sequences);
        assert!(matches!(from_file.ids, IdStore::Json(_)));
        assert_eq!(from_file.offsets(), in_memory.offsets());
        let n = in_memory.n_tokens();
        assert_eq!(n, 12);
        for a in 0..=n {
            for b in a..=n {
                let got: Vec<String> = from_file
                    .ids(a..b)
                    .unwrap()
                    .into_iter()
                    .map(|id| from_file.vocab().token(id).into_owned())
                    .collect();
                let want: Vec<String> = in_memory
                    .ids(a..b)
                    .unwrap()
                    .into_iter()
                    .map(|id| in_memory.vocab().token(id).into_owned())
                    .collect();
                assert_eq!(got, want, "rows {a}..{b}");
            }
        }
        assert!(from_file.ids(3..n + 1).is_err());
    }

    #[test]
    fn a_file_changed_after_opening_is_an_error_not_other_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, r#"[["a", "b"], ["c", "d"]]"#).unwrap();
        let t = TokenSequences::from_json_file(&p).unwrap();
        // Same length, other tokens: "e" was never seen when the file was opened.
        std::fs::write(&p, r#"[["a", "b"], ["e", "d"]]"#).unwrap();
        assert_eq!(t.ids(0..2).unwrap().len(), 2);
        let e = t.ids(1..4).unwrap_err().to_string();
        assert!(
            e.contains("tokens.json") && e.contains("sequence 1") && e.contains("changed"),
            "{e}"
        );
    }
}
