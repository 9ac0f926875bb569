//! HuggingFace `tokenizer.json` → the readable string of every token id.
//!
//! Each id is decoded on its own, like `tokenizer.decode([id])`: byte-level BPE tokens
//! (GPT-2 style, `Ġ` = space, `Ċ` = newline) are mapped back to their bytes and read as
//! UTF-8, a token holding part of a multi-byte character showing as U+FFFD. Special tokens
//! are shown as their content (e.g. `<|endoftext|>`) rather than hidden, because a
//! dictionary should show what the model saw.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::Vocab;
use crate::error::{Error, Result};

/// How a token's vocabulary string becomes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// GPT-2 byte-level: every char stands for one byte.
    ByteLevel,
    /// SentencePiece style: `▁` is a space; `<0xNN>` tokens are raw bytes.
    Metaspace,
    /// WordPiece: the vocabulary string, a continuation keeping its leading `##` as the
    /// tokenizer's `decode([id])` does (so `##s` and the word `s` stay two tokens); contexts
    /// join a continuation to the word before it ([`crate::ingest::join_tokens`]).
    WordPiece,
    /// The vocabulary string is the text.
    Identity,
}

/// The decoded string of every token id.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    strings: Vec<String>,
    decoder: Decoder,
    /// What the file holds that is read as something simpler (an unknown model or decoder
    /// type), for the user to be told.
    notes: Vec<String>,
}

/// GPT-2's `bytes_to_unicode` inverted: char → byte.
pub(crate) fn byte_level_map() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map.insert(char::from_u32(c).expect("valid char"), b as u8);
    }
    map
}

pub(crate) fn decode_byte_level(token: &str, map: &HashMap<char, u8>) -> String {
    // Like HF's ByteLevel decoder: if any char is outside the byte alphabet the token's own
    // UTF-8 bytes are used unchanged.
    let bytes: Option<Vec<u8>> = token.chars().map(|c| map.get(&c).copied()).collect();
    match bytes {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => token.to_string(),
    }
}

fn decode_metaspace(token: &str) -> String {
    if let Some(hex) = token
        .strip_prefix("<0x")
        .and_then(|t| t.strip_suffix('>'))
        .filter(|h| h.len() == 2)
    {
        if let Ok(b) = u8::from_str_radix(hex, 16) {
            return String::from_utf8_lossy(&[b]).into_owned();
        }
    }
    token.replace('\u{2581}', " ")
}

/// Decoder types whose effect [`decoder_kind`] reproduces or that change nothing a single
/// token shows (`Fuse` joins, `Strip` trims a sequence's ends).
const KNOWN_DECODERS: [&str; 8] = [
    "ByteLevel",
    "Metaspace",
    "ByteFallback",
    "WordPiece",
    "Replace",
    "Sequence",
    "Fuse",
    "Strip",
];

/// Decoder types in `v` (a decoder, or a `Sequence` of them) that are not applied.
fn unknown_decoders(v: &Value, out: &mut Vec<String>) {
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if kind == "Sequence" {
        for d in v
            .get("decoders")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            unknown_decoders(d, out);
        }
    } else if !KNOWN_DECODERS.contains(&kind) && !out.iter().any(|k| k == kind) {
        out.push(kind.to_string());
    }
}

fn decoder_kind(v: &Value) -> Decoder {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("ByteLevel") => Decoder::ByteLevel,
        Some("Metaspace") | Some("ByteFallback") => Decoder::Metaspace,
        Some("WordPiece") => Decoder::WordPiece,
        Some("Replace") => {
            let pat = v.pointer("/pattern/String").and_then(|p| p.as_str());
            if pat == Some("\u{2581}") {
                Decoder::Metaspace
            } else {
                Decoder::Identity
            }
        }
        Some("Sequence") => v
            .get("decoders")
            .and_then(|d| d.as_array())
            .map(|ds| {
                ds.iter()
                    .map(decoder_kind)
                    .find(|d| *d != Decoder::Identity)
                    .unwrap_or(Decoder::Identity)
            })
            .unwrap_or(Decoder::Identity),
        _ => Decoder::Identity,
    }
}

impl Tokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let map = super::dense::map_file_expecting(path, "a HuggingFace tokenizer.json")?;
        Self::from_slice(path, &map)
    }

    /// Parses `tokenizer.json` bytes (`path` is used in messages).
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self> {
        // A UTF-8 byte order mark is allowed before JSON text (RFC 8259).
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let root: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::format(path, format!("not a tokenizer.json: invalid JSON ({e})"))
        })?;
        let bad =
            |what: String| Error::format(path, format!("not a usable tokenizer.json: {what}"));
        let model = root
            .get("model")
            .ok_or_else(|| bad("no \"model\" object".into()))?;
        let mut pairs: Vec<(u64, String)> = Vec::new();
        match model.get("vocab") {
            // BPE, WordPiece, WordLevel: {"token": id}.
            Some(Value::Object(m)) => {
                pairs.reserve(m.len());
                for (tok, id) in m {
                    let id = id
                        .as_u64()
                        .ok_or_else(|| bad(format!("vocab id of {tok:?} is not an integer")))?;
                    pairs.push((id, tok.clone()));
                }
            }
            // Unigram: [["piece", score], ...], id = position.
            Some(Value::Array(a)) => {
                for (i, e) in a.iter().enumerate() {
                    let tok = e
                        .get(0)
                        .and_then(|t| t.as_str())
                        .ok_or_else(|| bad(format!("vocab entry {i} is not [piece, score]")))?;
                    pairs.push((i as u64, tok.to_string()));
                }
            }
            _ => return Err(bad("model has no \"vocab\" map or list".into())),
        }
        if let Some(added) = root.get("added_tokens").and_then(|a| a.as_array()) {
            for t in added {
                let id = t.get("id").and_then(|i| i.as_u64());
                let content = t.get("content").and_then(|c| c.as_str());
                match (id, content) {
                    (Some(id), Some(c)) => pairs.push((id, c.to_string())),
                    _ => return Err(bad("an added_tokens entry lacks id or content".into())),
                }
            }
        }
        if pairs.is_empty() {
            return Err(bad("the vocabulary is empty".into()));
        }
        let max_id = pairs.iter().map(|p| p.0).max().unwrap_or(0);
        // Ids are dense in real tokenizers; a huge id would make us allocate for nothing.
        if max_id > 16 * pairs.len() as u64 + 1024 {
            return Err(bad(format!(
                "token id {max_id} is absurd for a vocabulary of {} entries",
                pairs.len()
            )));
        }
        let decoder = root
            .get("decoder")
            .map(decoder_kind)
            .unwrap_or(Decoder::Identity);
        let mut notes = Vec::new();
        if let Some(kind) = model.get("type").and_then(|t| t.as_str()) {
            if !["BPE", "WordPiece", "WordLevel", "Unigram"].contains(&kind) {
                notes.push(format!(
                    "{}: model type {kind:?} is not one featdict knows (BPE, WordPiece, WordLevel, Unigram); its vocabulary is read as they are",
                    path.display()
                ));
            }
        }
        let mut unknown = Vec::new();
        if let Some(d) = root.get("decoder").filter(|d| !d.is_null()) {
            unknown_decoders(d, &mut unknown);
        }
        if !unknown.is_empty() {
            notes.push(format!(
                "{}: decoder {} is not applied (featdict applies {}): tokens may show as the vocabulary spells them rather than as decoded",
                path.display(),
                unknown
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                KNOWN_DECODERS.join(", ")
            ));
        }
        let byte_map = byte_level_map();
        let mut strings = vec![String::new(); max_id as usize + 1];
        // Vocabulary first, added tokens override (they come later in `pairs`).
        for (id, tok) in pairs {
            strings[id as usize] = match decoder {
                Decoder::ByteLevel => decode_byte_level(&tok, &byte_map),
                Decoder::Metaspace => decode_metaspace(&tok),
                Decoder::WordPiece | Decoder::Identity => tok,
            };
        }
        Ok(Self {
            strings,
            decoder,
            notes,
        })
    }

    /// Number of ids (one more than the largest).
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// The decoder that was applied.
    pub fn decoder(&self) -> Decoder {
        self.decoder
    }

    /// Decoded string of `id`.
    pub fn decode(&self, id: u32) -> Option<&str> {
        self.strings.get(id as usize).map(|s| s.as_str())
    }

    /// What the file holds that is not applied as written (an unknown model or decoder
    /// type): tokens may then be shown otherwise than the tokenizer would decode them.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// A [`Vocab`] whose ids are the tokenizer's ids.
    pub fn into_vocab(self) -> Vocab {
        Vocab::from_strings(self.strings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_markers_and_partial_utf8() {
        let json = r#"{"model":{"type":"BPE","vocab":{"Ġthe":0,"Ċ":1,"Ã©":2,"Ã":3,"hi":4}},
            "added_tokens":[{"id":5,"content":"<|endoftext|>","special":true}],
            "decoder":{"type":"ByteLevel"}}"#;
        let t = Tokenizer::from_slice(Path::new("tokenizer.json"), json.as_bytes()).unwrap();
        assert_eq!(t.decode(0), Some(" the"));
        assert_eq!(t.decode(1), Some("\n"));
        assert_eq!(t.decode(2), Some("é"));
        assert_eq!(t.decode(3), Some("\u{FFFD}"));
        assert_eq!(t.decode(5), Some("<|endoftext|>"));
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn a_utf8_byte_order_mark_is_ignored() {
        let json = "\u{FEFF}{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\u{120}a\":0}},\"decoder\":{\"type\":\"ByteLevel\"}}";
        let t = Tokenizer::from_slice(Path::new("tokenizer.json"), json.as_bytes()).unwrap();
        assert_eq!(t.decode(0), Some(" a"));
    }

    #[test]
    fn wordpiece_continuations_keep_their_marker_as_decode_of_one_id_does() {
        let json = r###"{"model":{"type":"WordPiece","vocab":{"[UNK]":0,"play":1,"##ing":2,"##":3,"#":4}},
            "decoder":{"type":"WordPiece","prefix":"##","cleanup":true}}"###;
        let t = Tokenizer::from_slice(Path::new("tokenizer.json"), json.as_bytes()).unwrap();
        assert_eq!(t.decode(1), Some("play"));
        assert_eq!(t.decode(2), Some("##ing"));
        assert_eq!(t.decode(3), Some("##"));
        assert_eq!(t.decode(4), Some("#"));
    }

    /// An unknown model or decoder type is read as well as it can be, and said (it was
    /// silent: an unknown decoder showed raw vocabulary strings without a word).
    #[test]
    fn unknown_model_and_decoder_types_are_noted() {
        let p = Path::new("tok.json");
        let read = |json: &str| Tokenizer::from_slice(p, json.as_bytes()).unwrap();
        let known = read(
            r#"{"model":{"type":"BPE","vocab":{"a":0}},"decoder":{"type":"Sequence","decoders":[
                {"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},
                {"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}}"#,
        );
        assert!(known.notes().is_empty(), "{:?}", known.notes());
        let odd = read(
            r#"{"model":{"type":"Frobnicate","vocab":{"a</w>":0}},"decoder":{"type":"Sequence","decoders":[{"type":"BPEDecoder","suffix":"</w>"},{"type":"Fuse"}]}}"#,
        );
        assert_eq!(odd.decode(0), Some("a</w>"));
        assert_eq!(odd.notes().len(), 2, "{:?}", odd.notes());
        assert!(odd.notes()[0].contains("model type \"Frobnicate\""));
        assert!(odd.notes()[1].contains("decoder \"BPEDecoder\" is not applied"));
        assert!(read(r#"{"model":{"vocab":{"a":0}},"decoder":null}"#)
            .notes()
            .is_empty());
    }

    #[test]
    fn bad_tokenizers_are_errors() {
        let p = Path::new("tok.json");
        for bad in [
            "",
            "{}",
            r#"{"model":{}}"#,
            r#"{"model":{"vocab":{"a":-1}}}"#,
            r#"{"model":{"vocab":{"a":1000000000000}}}"#,
        ] {
            let e = Tokenizer::from_slice(p, bad.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("tok.json"), "{e}");
        }
    }
}
