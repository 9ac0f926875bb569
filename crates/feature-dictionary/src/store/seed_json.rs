//! The original library's saved JSON: `{"config", "feature_set", "statistics"}`.
//!
//! Our extra measurements ride in each feature's `metadata` and in the feature set's
//! `metadata`, which the original loads as opaque dicts, so its `FeatureDictionary.load`
//! reads our files and our reader gets every field back.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dictionary::{FeatureDictionary, Statistics, StatisticsTally};
use crate::error::{Error, Result};
use crate::model::{DictionaryConfig, Feature, FeatureSet, FeatureView};

/// Features serialized per parallel task, and per wave of tasks written before the next
/// wave starts: a wave bounds the text held at once (tens of KB per feature with its
/// examples' contexts, so ~50 MB at 2,048) while still giving every core many tasks.
const FEATURES_PER_TASK: usize = 64;
const FEATURES_PER_WAVE: usize = 2048;

#[derive(Serialize)]
struct SavedRef<'a> {
    config: &'a DictionaryConfig,
    feature_set: &'a FeatureSet,
    statistics: StatisticsBlock<'a>,
}

/// The file's `statistics`: [`FeatureDictionary::statistics`], or what a caller computed
/// (the Python package writes its `get_statistics()`, as the original wrote `export_all()`).
#[derive(Serialize)]
#[serde(untagged)]
enum StatisticsBlock<'a> {
    Computed(Statistics),
    Given(&'a serde_json::Value),
}

#[derive(Deserialize)]
struct Saved {
    #[serde(default)]
    config: Option<DictionaryConfig>,
    feature_set: FeatureSet,
}

/// Writes `dict` as compact JSON (the original indents; compact is half the size and loads
/// the same).
///
/// The bytes are exactly `serde_json::to_writer` of the whole dictionary, but the features
/// (nearly all of the file) are serialized on all cores: serde_json writes ~300 MB/s on one,
/// which made writing the largest part of a build.
pub fn write(dict: &FeatureDictionary, path: &Path) -> Result<()> {
    write_with(dict, path, |f| f.into(), &AtomicBool::new(false))
}

/// [`write()`], with each feature written as `view(feature)`: a caller whose features hold
/// only their scalar fields and labels (all the header's statistics need) lends their
/// examples and metadata from another copy instead of cloning them in.
///
/// Given up soon after `stop` is set (it is looked at before each wave of
/// 2,048 features and once more before the rename): the temporary file is removed, the file at `path` is left as it was, and
/// the error is an I/O error of kind [`std::io::ErrorKind::Interrupted`] (the Python
/// package stops a save so on Ctrl-C).
pub fn write_with<'a>(
    dict: &'a FeatureDictionary,
    path: &Path,
    view: impl Fn(&'a Feature) -> FeatureView<'a> + Sync,
    stop: &AtomicBool,
) -> Result<()> {
    write_with_statistics(dict, path, view, stop, None)
}

/// [`write_with`], with `statistics` (when given) as the file's `statistics` object instead
/// of [`FeatureDictionary::statistics`].
pub fn write_with_statistics<'a>(
    dict: &'a FeatureDictionary,
    path: &Path,
    view: impl Fn(&'a Feature) -> FeatureView<'a> + Sync,
    stop: &AtomicBool,
    statistics: Option<&serde_json::Value>,
) -> Result<()> {
    super::check_link_format(path)?;
    let (head, before_statistics) = around_features(dict)?;
    let statistics = match statistics {
        Some(given) => StatisticsBlock::Given(given),
        None => StatisticsBlock::Computed(dict.statistics()),
    };
    let statistics = to_json(&statistics)?;
    super::write_atomically(path, |w| {
        w.write_all(head.as_bytes())?;
        let features: Vec<(&u64, &Feature)> = dict.feature_set.features.iter().collect();
        let mut first = true;
        for wave in features.chunks(FEATURES_PER_WAVE) {
            if stop.load(Ordering::Relaxed) {
                return Err(super::stopped());
            }
            write_entries(w, wave, |(id, f)| (**id, view(f)), &mut first)?;
        }
        finish(w, &before_statistics, &statistics, stop)
    })
}

/// Writes a dictionary whose features are made a wave at a time, as
/// [`super::fdict::write_waves`] does: `shell` gives the dictionary-wide fields (its own
/// features are ignored), `wave(i)` the features of wave `i` (of `n_waves`, together in
/// increasing id order; an error of `wave` ends the write with that error). Each wave is
/// made, serialized on all threads, written, and dropped, so memory holds one wave rather
/// than the whole dictionary. The file is what [`write()`] makes of the whole dictionary,
/// byte for byte; its statistics are tallied as the features go by (the `statistics`
/// object comes last in the file) and returned. `stop` as in [`write_with`].
pub fn write_waves(
    shell: &FeatureDictionary,
    path: &Path,
    n_waves: usize,
    mut wave: impl FnMut(usize) -> Result<Vec<Feature>>,
    stop: &AtomicBool,
) -> Result<Statistics> {
    super::check_link_format(path)?;
    let (head, before_statistics) = around_features(shell)?;
    let mut tally = StatisticsTally::default();
    let mut written = None;
    // An error of `wave` (reading another file) is its own, not one of writing this one.
    let mut failed = None;
    let result = super::write_atomically(path, |w| {
        w.write_all(head.as_bytes())?;
        let mut first = true;
        for i in 0..n_waves {
            if stop.load(Ordering::Relaxed) {
                return Err(super::stopped());
            }
            let features = match wave(i) {
                Ok(features) => features,
                Err(e) => {
                    let message = e.to_string();
                    failed = Some(e);
                    return Err(std::io::Error::other(message));
                }
            };
            features.iter().for_each(|f| tally.add(f.into()));
            write_entries(w, &features, |f| (f.id, f.into()), &mut first)?;
        }
        let statistics = tally.finish(shell.feature_set.total_tokens_processed);
        let text = serde_json::to_string(&statistics).map_err(std::io::Error::other)?;
        written = Some(statistics);
        finish(w, &before_statistics, &text, stop)
    });
    if let Some(e) = failed {
        return Err(e);
    }
    result?;
    Ok(written.expect("the statistics are made before the file is renamed"))
}

/// Writes the entries `"id":{…}` of `items` (as `entry` gives them), serialized on all
/// cores; each but the features object's first (`first`, then cleared) after a comma, as
/// serde_json writes a map.
fn write_entries<T: Sync>(
    w: &mut impl Write,
    items: &[T],
    entry: impl for<'b> Fn(&'b T) -> (u64, FeatureView<'b>) + Sync,
    first: &mut bool,
) -> std::io::Result<()> {
    let parts: Vec<Vec<u8>> = items
        .par_chunks(FEATURES_PER_TASK)
        .map(|task| {
            let mut buf = Vec::new();
            for item in task {
                let (id, f) = entry(item);
                write!(buf, "\"{id}\":")?;
                serde_json::to_writer(&mut buf, &f).map_err(std::io::Error::other)?;
                buf.push(b',');
            }
            Ok(buf)
        })
        .collect::<std::io::Result<_>>()?;
    for part in parts {
        let part = &part[..part.len().saturating_sub(1)];
        if part.is_empty() {
            continue;
        }
        if !std::mem::take(first) {
            w.write_all(b",")?;
        }
        w.write_all(part)?;
    }
    Ok(())
}

/// Ends the file after the last feature: the rest of the feature set, the `statistics`
/// value, and the closing brace. Looks at `stop` a last time before `write_atomically`
/// syncs and renames: a stop by now must leave the previous file.
fn finish(
    w: &mut impl Write,
    before_statistics: &str,
    statistics: &str,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    w.write_all(before_statistics.as_bytes())?;
    w.write_all(statistics.as_bytes())?;
    w.write_all(b"}")?;
    if stop.load(Ordering::Relaxed) {
        return Err(super::stopped());
    }
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}

/// The file's text before the entries of the features object, and after them up to the
/// `statistics` value (the file's last field): the dictionary serialized with no features
/// and a null `statistics`, cut inside its empty `"features":{}` and before the `null`.
fn around_features(dict: &FeatureDictionary) -> Result<(String, String)> {
    let mut config = dict.config.clone();
    config.num_features = dict.num_features();
    let empty = dict.feature_set.without_features();
    let null = serde_json::Value::Null;
    let text = to_json(&SavedRef {
        config: &config,
        feature_set: &empty,
        statistics: StatisticsBlock::Given(&null),
    })?;
    // `features` is the feature set's second field, after the integer `layer`, so its key is
    // the first `"features":` after `"feature_set":` (the config before it may hold any
    // string).
    let set_at = text
        .find("\"feature_set\":{\"layer\":")
        .ok_or_else(|| Error::Invalid("feature set not found in its own JSON".into()))?;
    let marker = "\"features\":{}";
    let at = set_at
        + text[set_at..]
            .find(marker)
            .ok_or_else(|| Error::Invalid("features not found in their own JSON".into()))?;
    let open = at + marker.len() - 1;
    let end = text
        .strip_suffix("null}")
        .ok_or_else(|| Error::Invalid("statistics not last in their own JSON".into()))?
        .len();
    Ok((text[..open].to_string(), text[open..end].to_string()))
}

/// Serializes `dict` to a JSON string (what [`write()`] puts in the file).
pub fn to_string(dict: &FeatureDictionary) -> Result<String> {
    let saved = SavedRef {
        config: &dict.config,
        feature_set: &dict.feature_set,
        statistics: StatisticsBlock::Computed(dict.statistics()),
    };
    serde_json::to_string_pretty(&saved).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a dictionary written by us or by the original library.
pub fn read(path: &Path) -> Result<FeatureDictionary> {
    read_bytes(path, &crate::ingest::map_file(path)?)
}

/// [`read`] of the file's contents `map`, already read (`path` names it in errors).
pub(crate) fn read_bytes(path: &Path, map: &[u8]) -> Result<FeatureDictionary> {
    let expected = "expected a JSON object {\"config\", \"feature_set\", \"statistics\"}";
    // serde's message for another JSON type names the internal struct ("invalid length 1,
    // expected struct Saved with 2 elements" for `[]`): say what the file holds instead.
    let first = map.iter().find(|b| !b.is_ascii_whitespace());
    if let Some(&b) = first.filter(|&&b| b != b'{') {
        let found = match b {
            b'[' => "an array",
            b'"' => "a string",
            b'-' | b'0'..=b'9' => "a number",
            b't' | b'f' => "a boolean",
            b'n' => "null",
            _ => "something that is not JSON",
        };
        return Err(Error::format(
            path,
            format!("not a feature dictionary JSON ({expected}, found {found})"),
        ));
    }
    // An error inside the dictionary names its field (a hand-edited file's mistake); one
    // about the document as a whole says what the document should be.
    let saved: Saved = super::json::from_slice(map).map_err(|e| {
        let message = if e.path.is_empty() {
            format!("not a feature dictionary JSON ({expected}): {e}")
        } else {
            e.to_string()
        };
        Error::format(path, message)
    })?;
    // The original keys each feature by its id; a key that says otherwise would show one
    // feature under two ids (and a .fdict cannot hold it).
    if let Some((key, f)) = saved.feature_set.features.iter().find(|(k, f)| **k != f.id) {
        return Err(Error::format(
            path,
            format!(
                "feature_set.features[\"{key}\"] holds feature id {}; each feature must be stored under its own id",
                f.id
            ),
        ));
    }
    let mut feature_set = saved.feature_set;
    // The original's examples say neither sequence nor context start; the window its
    // configuration was collected with places each firing token exactly, where the
    // inference from the context alone can pick a repeat of the token.
    if let Some(config) = &saved.config {
        let window = config.extraction.context_window;
        for f in feature_set.features.values_mut() {
            f.top_activations
                .iter_mut()
                .for_each(|a| a.place_in_window(window));
        }
    }
    Ok(dictionary_of(
        saved.config.unwrap_or_default(),
        feature_set,
        0,
    ))
}

/// The dictionary a file's `config` and `feature_set` make: names the config lacks taken
/// from the feature set (the original saved them only there), `num_features` counting the
/// stored ids and at least `streamed` (one past the largest id of features not held).
fn dictionary_of(
    mut config: DictionaryConfig,
    feature_set: FeatureSet,
    streamed: usize,
) -> FeatureDictionary {
    if config.model_name.is_empty() {
        config.model_name = feature_set.model_name.clone();
    }
    if config.sae_name.is_empty() {
        config.sae_name = feature_set.sae_name.clone();
    }
    let mut dict = FeatureDictionary::new(config, feature_set);
    dict.config.num_features = dict.num_features().max(streamed);
    dict
}

/// What [`stream_features`] passes along with each feature: the dictionary's `config`, as
/// the file gave it before its features, and the feature set's `layer` when it came first.
#[derive(Debug, Clone, Default)]
pub struct StreamHead {
    /// The file's `config`.
    pub config: DictionaryConfig,
    /// `feature_set.layer`, when it precedes `feature_set.features`.
    pub layer: Option<i64>,
}

/// Reads the dictionary JSON from `reader` feature by feature, calling `sink`
/// with each in the file's order, so no more than one is held; returns the dictionary
/// without its features, its config made as [`read`] makes it (`num_features` counting the
/// streamed ids).
///
/// `Ok(None)` when the file does not stream in one pass: its `config` does not precede its
/// `feature_set` (each example's place in its context window needs the window first), its
/// feature ids are not increasing, or it does not parse — [`read`] takes such a file whole
/// (and names what is wrong with one that does not parse). `sink` may then have been given
/// some features already. An error of `sink` ends the read and is returned.
pub fn stream_features(
    reader: impl std::io::Read,
    sink: &mut dyn FnMut(&StreamHead, Feature) -> Result<()>,
) -> Result<Option<FeatureDictionary>> {
    use serde::de::DeserializeSeed;
    let mut failure = None;
    // Read through a buffer, not mapped: a mapped file's pages would stay resident as the
    // parse goes by, and a JSON of millions of features is gigabytes.
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 20, reader));
    let parsed = stream::Document {
        sink,
        failure: &mut failure,
    }
    .deserialize(&mut de)
    .and_then(|doc| de.end().map(|()| doc));
    if let Some(e) = failure {
        return Err(e);
    }
    let Ok((config, feature_set, last_id)) = parsed else {
        return Ok(None);
    };
    let streamed = last_id.map_or(0, |id| id as usize + 1);
    Ok(Some(dictionary_of(config, feature_set, streamed)))
}

/// The serde visitors of [`stream_features`]: the document, its feature set, its features.
mod stream {
    use std::fmt;

    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
    use serde::Deserializer;

    use super::StreamHead;
    use crate::error::Error;
    use crate::model::{DictionaryConfig, Feature, FeatureSet, FeatureSetMetadata};

    pub(super) type Sink<'a> = &'a mut dyn FnMut(&StreamHead, Feature) -> crate::Result<()>;

    /// The whole file: `{"config", "feature_set", "statistics"}`.
    pub(super) struct Document<'a, 'b> {
        pub sink: Sink<'a>,
        pub failure: &'b mut Option<Error>,
    }

    /// What a streamed document gives: its config, its feature set without features, and
    /// the last feature id streamed.
    type Parsed = (DictionaryConfig, FeatureSet, Option<u64>);

    impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
        type Value = Parsed;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Document<'_, '_> {
        type Value = Parsed;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a feature dictionary JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
            let mut head: Option<StreamHead> = None;
            let mut set = None;
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "config" if head.is_none() && set.is_none() => {
                        head = Some(StreamHead {
                            config: map.next_value()?,
                            layer: None,
                        });
                    }
                    // Repeated, or after the features: [`super::read`] decides.
                    "config" => return Err(A::Error::custom("config not first")),
                    "feature_set" if set.is_none() => {
                        let Some(head) = head.as_mut() else {
                            return Err(A::Error::custom("config not first"));
                        };
                        set = Some(map.next_value_seed(Set {
                            sink: &mut *self.sink,
                            failure: &mut *self.failure,
                            head,
                        })?);
                    }
                    "feature_set" => return Err(A::Error::custom("repeated feature_set")),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let (Some(head), Some((set, last))) = (head, set) else {
                return Err(A::Error::custom("no feature_set"));
            };
            Ok((head.config, set, last))
        }
    }

    /// `feature_set`: its fields as [`FeatureSet`] reads them, its features streamed.
    struct Set<'a, 'b, 'c> {
        sink: Sink<'a>,
        failure: &'b mut Option<Error>,
        head: &'c mut StreamHead,
    }

    impl<'de> DeserializeSeed<'de> for Set<'_, '_, '_> {
        type Value = (FeatureSet, Option<u64>);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Set<'_, '_, '_> {
        type Value = (FeatureSet, Option<u64>);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a feature set object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut set = FeatureSet {
                layer: 0,
                features: Default::default(),
                total_tokens_processed: 0,
                model_name: String::new(),
                sae_name: String::new(),
                metadata: FeatureSetMetadata::default(),
            };
            let (mut layer, mut features) = (None, None);
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom("repeated key"));
                }
                match key.as_str() {
                    "layer" => {
                        let l: i64 = map.next_value()?;
                        layer = Some(l);
                        if features.is_none() {
                            self.head.layer = Some(l);
                        }
                    }
                    "features" => {
                        features = Some(map.next_value_seed(Features {
                            sink: &mut *self.sink,
                            failure: &mut *self.failure,
                            head: &*self.head,
                        })?);
                    }
                    "total_tokens_processed" => set.total_tokens_processed = map.next_value()?,
                    "model_name" => set.model_name = map.next_value()?,
                    "sae_name" => set.sae_name = map.next_value()?,
                    "metadata" => set.metadata = map.next_value()?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let (Some(layer), Some(last)) = (layer, features) else {
                return Err(A::Error::custom("layer or features missing"));
            };
            set.layer = layer;
            Ok((set, last))
        }
    }

    /// `feature_set.features`: `{"<id>": feature}`, ids increasing.
    struct Features<'a, 'b, 'c> {
        sink: Sink<'a>,
        failure: &'b mut Option<Error>,
        head: &'c StreamHead,
    }

    impl<'de> DeserializeSeed<'de> for Features<'_, '_, '_> {
        type Value = Option<u64>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Features<'_, '_, '_> {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("features by id")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let window = self.head.config.extraction.context_window;
            let mut last: Option<u64> = None;
            while let Some(key) = map.next_key::<String>()? {
                let id: u64 = key
                    .parse()
                    .map_err(|_| A::Error::custom("feature key is not an id"))?;
                let mut f: Feature = map.next_value()?;
                if f.id != id || last.is_some_and(|l| id <= l) {
                    return Err(A::Error::custom("ids out of order or mismatched"));
                }
                last = Some(id);
                f.top_activations
                    .iter_mut()
                    .for_each(|a| a.place_in_window(window));
                if let Err(e) = (self.sink)(self.head, f) {
                    *self.failure = Some(e);
                    return Err(A::Error::custom("the sink failed"));
                }
            }
            Ok(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// What `write` must put in the file: the whole dictionary through serde_json at once.
    fn serial_bytes(dict: &FeatureDictionary) -> Vec<u8> {
        let mut config = dict.config.clone();
        config.num_features = dict.num_features();
        serde_json::to_vec(&SavedRef {
            config: &config,
            feature_set: &dict.feature_set,
            statistics: StatisticsBlock::Computed(dict.statistics()),
        })
        .unwrap()
    }

    fn dictionary(ids: impl Iterator<Item = u64>) -> FeatureDictionary {
        let mut set = FeatureSet {
            layer: 7,
            features: BTreeMap::new(),
            total_tokens_processed: 1000,
            // Strings that look like the cut point must not move it.
            model_name: "m \"features\":{} \"feature_set\":{\"layer\":".into(),
            sae_name: "s".into(),
            metadata: Default::default(),
        };
        for id in ids {
            let mut f = Feature::new(id, 16);
            f.activation_count = id % 5;
            f.max_activation = id as f64 / 3.0;
            f.labels = vec![format!("token:\"{id}\"\n<script>")];
            set.features.insert(id, f);
        }
        let mut config = DictionaryConfig {
            model_name: set.model_name.clone(),
            ..Default::default()
        };
        config.sae_name = "\"features\":{}".into();
        FeatureDictionary::new(config, set)
    }

    #[test]
    fn parallel_write_gives_the_bytes_of_one_serde_json_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        // No feature, one, a task's worth, and several waves with ids whose decimal order
        // differs from their numeric order.
        let cases: Vec<Vec<u64>> = vec![
            vec![],
            vec![5],
            (0..FEATURES_PER_TASK as u64 + 3).collect(),
            (0..2 * FEATURES_PER_WAVE as u64 + 77)
                .map(|i| 3 * i + 1)
                .collect(),
        ];
        for ids in cases {
            let dict = dictionary(ids.iter().copied());
            write(&dict, &path).unwrap();
            let written = std::fs::read(&path).unwrap();
            assert!(written == serial_bytes(&dict), "{} features", ids.len());
            let back = read(&path).unwrap();
            assert_eq!(back.feature_set, dict.feature_set);
        }
    }

    /// Waves of any sizes (an empty one included) give the bytes of one pass, and their
    /// statistics; an error of a wave is the write's error, and leaves the previous file
    /// and no temporary one.
    #[test]
    fn waves_give_the_bytes_of_one_pass_or_their_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        let ids: Vec<u64> = (0..700).map(|i| 3 * i + 1).collect();
        let dict = dictionary(ids.iter().copied());
        let features: Vec<Feature> = dict.features().cloned().collect();
        let bounds = [0, 0, 1, 300, 300, 699, 700];
        let mut shell = dict.clone();
        // Without its features, the width is the config's (as a finalizer's shell has it).
        shell.config.num_features = dict.num_features();
        shell.feature_set.features.clear();
        let never = AtomicBool::new(false);
        let wave = |i: usize| Ok(features[bounds[i]..bounds[i + 1]].to_vec());
        let statistics = write_waves(&shell, &path, bounds.len() - 1, wave, &never).unwrap();
        assert!(std::fs::read(&path).unwrap() == serial_bytes(&dict));
        assert_eq!(statistics, dict.statistics());

        let failing = |i: usize| {
            if i == 2 {
                Err(Error::Invalid("the source failed".into()))
            } else {
                wave(i)
            }
        };
        let e = write_waves(&shell, &path, bounds.len() - 1, failing, &never).unwrap_err();
        assert_eq!(e.to_string(), "the source failed");
        assert!(std::fs::read(&path).unwrap() == serial_bytes(&dict));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
