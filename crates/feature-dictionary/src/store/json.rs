//! Reading JSON whose errors name the field at fault.
//!
//! serde_json alone says "invalid type: string \"x\", expected f64 at line 1 column 91,512",
//! which in a one-line file of a million features tells a person nothing about which field
//! to fix. `serde_path_to_error` tracks the path, at a cost on every value, so files are
//! parsed by serde_json alone and only a file that fails is parsed again, with the path
//! tracked, to name the field.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// A JSON error with the path of the value it is about (empty: the document itself).
#[derive(Debug)]
pub struct JsonError {
    /// Where in the document, as `feature_set.features["3"].top_activations[0].position`.
    pub path: String,
    /// serde_json's error, with its line and column.
    pub error: serde_json::Error,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{}: {}", self.path, self.error)
        }
    }
}

/// Deserializes `bytes` as `T` (the whole input, as `serde_json::from_slice`); on failure,
/// says at which field.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    serde_json::from_slice(bytes)
        .map_err(|error| locate::<T, _>(&mut serde_json::Deserializer::from_slice(bytes), error))
}

/// [`from_slice`] for text already known to be UTF-8 (serde_json then skips checking it).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    serde_json::from_str(text)
        .map_err(|error| locate::<T, _>(&mut serde_json::Deserializer::from_str(text), error))
}

/// The path of `error`, found by parsing the input again with the path tracked. An error
/// the second parse does not meet (trailing characters after the value, which only the
/// first one checks) is given without a path.
fn locate<'de, T, R>(de: &mut serde_json::Deserializer<R>, error: serde_json::Error) -> JsonError
where
    T: DeserializeOwned,
    R: serde_json::de::Read<'de>,
{
    match serde_path_to_error::deserialize::<_, T>(de) {
        Err(e) => JsonError {
            path: path_text(e.path()),
            error: e.into_inner(),
        },
        Ok(_) => JsonError {
            path: String::new(),
            error,
        },
    }
}

/// `a.b["3"][0]`: object keys that are not plain identifiers (feature ids, keys with spaces
/// or dots) in brackets and quotes, so the path reads back unambiguously.
fn path_text(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let plain = key.chars().next().is_some_and(|c| !c.is_ascii_digit())
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{}]", serde_json::Value::from(key.as_str())));
                }
            }
            Segment::Unknown => out.push_str("[?]"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        items: BTreeMap<String, Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        values: Vec<f64>,
    }

    #[test]
    fn errors_name_the_field_keys_that_are_not_identifiers_in_brackets() {
        let text = br#"{"items": {"7": {"values": [1, 2]}, "a b": {"values": [1, "x"]}}}"#;
        let e = from_slice::<Doc>(text).unwrap_err();
        assert_eq!(e.path, r#"items["a b"].values[1]"#);
        assert_eq!(
            e.to_string(),
            r#"items["a b"].values[1]: invalid type: string "x", expected f64 at line 1 column 61"#
        );
        let e = from_slice::<Doc>(br#"{"items": {"3": {"values": {}}}}"#).unwrap_err();
        assert_eq!(e.path, r#"items["3"].values"#);
        // Errors of the document itself, and trailing text only the first parse checks.
        let e = from_slice::<Doc>(b"[]").unwrap_err();
        assert_eq!(e.path, "");
        let e = from_slice::<Doc>(br#"{"items": {}} x"#).unwrap_err();
        assert_eq!((e.path.as_str(), e.error.column()), ("", 15));
        assert!(from_slice::<Doc>(br#"{"items": {"1": {"values": []}}}"#).is_ok());
    }
}
