//! [`Finalized`]: a finished dictionary held in Rust, from which the Python package builds its
//! `Feature` objects on demand.
//!
//! A feature's scalar fields (counts, means, labels, description, type) are cheap and become a
//! Python object at once; its examples (`top_activations`) and `metadata` (quantile samples,
//! histogram, per-token counts, …) are most of the data and are converted only when Python
//! first reads them (`Feature.__getattr__` in `features.py`). Finalizing 16,384 features used
//! to serialize ~290 MB of JSON and parse it back into tens of millions of objects that most
//! programs never look at.

use std::collections::HashMap;

use feature_dictionary::model::{
    DictionaryConfig, Feature, FeatureActivation, FeatureMetadata, FeatureSet, FeatureSetMetadata,
    FeatureType, FeatureView,
};
use feature_dictionary::{store, Error, FeatureDictionary};
use pyo3::exceptions::{PyKeyError, PyKeyboardInterrupt, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::labels;
use crate::topy::{to_py, Strings};
use std::sync::Mutex;

/// A finished dictionary (config and features) owned by Rust.
#[pyclass(module = "feature_dictionary._engine")]
pub struct Finalized {
    pub(crate) dict: FeatureDictionary,
    /// Python strings made so far (tokens recur across features); see [`topy::Strings`].
    strings: Mutex<Strings>,
}

impl Finalized {
    pub(crate) fn new(dict: FeatureDictionary) -> Self {
        Self {
            dict,
            strings: Mutex::new(Strings::default()),
        }
    }

    /// [`to_py`] with this dictionary's string cache.
    fn convert<'py, T: Serialize + ?Sized>(
        &self,
        py: Python<'py>,
        value: &T,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Creating objects can run Python code (a GC pass, finalizers) that converts again,
        // on this thread or another: never wait for the cache, go without it.
        match self.strings.try_lock() {
            Ok(mut strings) => to_py(py, value, &mut strings),
            Err(_) => to_py(py, value, &mut Strings::default()),
        }
    }
}

/// The feature set's own fields, without its features (what `FeatureSet` gets eagerly).
#[derive(Serialize)]
struct SetInfo<'a> {
    layer: i64,
    total_tokens_processed: u64,
    model_name: &'a str,
    sae_name: &'a str,
    metadata: &'a FeatureSetMetadata,
}

impl Finalized {
    fn set(&self) -> &FeatureSet {
        &self.dict.feature_set
    }

    fn feature(&self, id: u64) -> PyResult<&Feature> {
        self.set()
            .features
            .get(&id)
            .ok_or_else(|| PyKeyError::new_err(format!("feature {id} is not in this dictionary")))
    }
}

#[pymethods]
impl Finalized {
    /// Features held.
    fn __len__(&self) -> usize {
        self.set().len()
    }

    /// Feature ids, ascending.
    fn ids(&self) -> Vec<u64> {
        self.set().features.keys().copied().collect()
    }

    /// `{"config": ..., "feature_set": {layer, total_tokens_processed, model_name, sae_name,
    /// metadata}}` as Python objects (the feature set without its features).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let set = self.set();
        let d = PyDict::new(py);
        d.set_item("config", self.convert(py, &self.dict.config)?)?;
        d.set_item(
            "feature_set",
            self.convert(
                py,
                &SetInfo {
                    layer: set.layer,
                    total_tokens_processed: set.total_tokens_processed,
                    model_name: &set.model_name,
                    sae_name: &set.sae_name,
                    metadata: &set.metadata,
                },
            )?,
        )?;
        Ok(d.into_any())
    }

    /// `{id: Feature}` with every scalar field set and `top_activations` / `metadata` left
    /// to be loaded on first access through `_src = (self, id)`. `feature_cls` is the Python
    /// `Feature` class (instances are made without `__init__`, their `__dict__` filled as
    /// `Feature.from_dict` would); `types` maps type strings to `FeatureType` members.
    fn features<'py>(
        slf: &Bound<'py, Self>,
        feature_cls: &Bound<'py, PyAny>,
        types: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let this = slf.borrow();
        let out = PyDict::new(py);
        let new = feature_cls.getattr("__new__")?;
        let none = py.None();
        for (&id, f) in &this.set().features {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "id"), id)?;
            d.set_item(intern!(py, "dimension"), f.dimension)?;
            d.set_item(intern!(py, "decoder_weight"), &none)?;
            d.set_item(intern!(py, "encoder_weight"), &none)?;
            d.set_item(intern!(py, "bias"), finite_or_none(py, f.bias))?;
            d.set_item(intern!(py, "activation_count"), f.activation_count)?;
            d.set_item(
                intern!(py, "mean_activation"),
                finite_or_none(py, f.mean_activation),
            )?;
            d.set_item(
                intern!(py, "max_activation"),
                finite_or_none(py, f.max_activation),
            )?;
            d.set_item(
                intern!(py, "activation_frequency"),
                finite_or_none(py, f.activation_frequency),
            )?;
            d.set_item(intern!(py, "labels"), PyList::new(py, &f.labels)?)?;
            d.set_item(intern!(py, "description"), &f.description)?;
            d.set_item(intern!(py, "confidence"), finite_or_none(py, f.confidence))?;
            let ty = types.get_item(f.feature_type.as_str())?.ok_or_else(|| {
                PyValueError::new_err(format!("unknown feature type {:?}", f.feature_type))
            })?;
            d.set_item(intern!(py, "feature_type"), ty)?;
            d.set_item(
                intern!(py, "_src"),
                PyTuple::new(py, [slf.as_any().clone(), id.into_pyobject(py)?.into_any()])?,
            )?;
            let obj = new.call1((feature_cls,))?;
            obj.setattr(intern!(py, "__dict__"), d)?;
            out.set_item(id, obj)?;
        }
        Ok(out)
    }

    /// Feature `id`'s examples as instances of `activation_cls` (`FeatureActivation`), made
    /// without `__init__` with the `__dict__` `FeatureActivation.from_dict` would give.
    fn top_activations<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        activation_cls: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let f = self.feature(id)?;
        let new = activation_cls.getattr("__new__")?;
        let items = f
            .top_activations
            .iter()
            .map(|a| {
                let obj = new.call1((activation_cls,))?;
                // Attribute by attribute, the instance keeps its fields inline; assigning a
                // `__dict__` added one more dict per example, which CPython's cyclic GC then
                // walks on every full collection for as long as the example lives.
                let fields = self.convert(py, a)?;
                for (name, value) in fields.downcast::<PyDict>()?.iter() {
                    obj.setattr(name.downcast_into::<PyString>()?, value)?;
                }
                Ok(obj)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Feature `id`'s `metadata` dict.
    fn metadata<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyAny>> {
        self.convert(py, &self.feature(id)?.metadata)
    }

    /// Feature `id`'s `(token, firings, occurrences)` from `metadata.top_tokens`, without
    /// converting the rest of its metadata (`features.top_token_entries`).
    fn token_entries(&self, id: u64) -> PyResult<Vec<(String, u64, u64)>> {
        Ok(self
            .feature(id)?
            .metadata
            .top_tokens
            .iter()
            .map(|t| (t.token.clone(), t.firings, t.occurrences))
            .collect())
    }

    /// What `extraction._token_index` records for feature `id`: each stripped token it fired
    /// on with its firings, then the stripped tokens of its top examples not seen yet (1
    /// firing each), first occurrence of a token only.
    fn index_entries(&self, id: u64) -> PyResult<Vec<(String, u64)>> {
        let f = self.feature(id)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let tokens = f
            .metadata
            .top_tokens
            .iter()
            .map(|t| (t.token.as_str(), t.firings));
        let examples = f.top_activations.iter().map(|a| (a.token.as_str(), 1));
        for (token, firings) in tokens.chain(examples) {
            let key = labels::search_key(token);
            if seen.insert(key) {
                out.push((key.to_string(), firings));
            }
        }
        Ok(out)
    }

    /// The highest activation among feature `id`'s stored examples (top and quantile
    /// samples) whose stripped token is `key`, as the Python float of its JSON text; `None`
    /// when no example shows it.
    fn best_example_activation(&self, id: u64, key: &str) -> PyResult<Option<f64>> {
        let f = self.feature(id)?;
        let samples = f
            .metadata
            .quantile_examples
            .iter()
            .flat_map(|g| &g.examples);
        Ok(f.top_activations
            .iter()
            .chain(samples)
            .filter(|a| labels::search_key(&a.token) == key)
            .map(|a| a.activation)
            .reduce(f32::max)
            .map(f64::from))
    }

    /// Every distinct token a feature fired on, sorted.
    fn firing_tokens(&self) -> Vec<String> {
        labels::firing_tokens(self.set())
    }

    /// Labels and describes every feature as `FeatureLabeler.label_feature` and
    /// `generate_description` would (see `labels.rs`); `plan_json` is built by
    /// `FeatureLabeler._label_engine`.
    fn label(&mut self, py: Python<'_>, plan_json: &str) -> PyResult<()> {
        let plan: labels::Plan = serde_json::from_str(plan_json)
            .map_err(|e| PyValueError::new_err(format!("invalid labeling plan: {e}")))?;
        let set = &mut self.dict.feature_set;
        let threads = feature_dictionary::build::default_threads();
        // Ctrl-C gives up the labeling (the set, partly labeled, is then never adopted).
        crate::interruptible(py, |stop| labels::label_set(set, &plan, threads, stop))
    }

    /// Stores `values_json` (`{"<id>": value}`) under `key` in those features' metadata.
    fn set_metadata(&mut self, key: &str, values_json: &str) -> PyResult<()> {
        let values: HashMap<String, Value> = serde_json::from_str(values_json)
            .map_err(|e| PyValueError::new_err(format!("invalid metadata values: {e}")))?;
        for (k, v) in values {
            let id: u64 = k
                .parse()
                .map_err(|_| PyValueError::new_err(format!("feature key {k:?} is not an id")))?;
            if let Some(f) = self.dict.feature_set.features.get_mut(&id) {
                f.metadata.extra.insert(key.to_string(), v);
            }
        }
        Ok(())
    }
}

/// A float as serde_json writes it: non-finite values become `null`, i.e. `None`.
fn finite_or_none(py: Python<'_>, v: f64) -> PyObject {
    if v.is_finite() {
        v.into_pyobject(py).expect("float").into_any().unbind()
    } else {
        py.None()
    }
}

/// Reads a dictionary file — the native `.fdict` (SQLite) or the JSON of this package or of
/// the original library, told apart by content — into a [`Finalized`].
#[pyfunction]
///
/// Ctrl-C stops the wait at once (`KeyboardInterrupt`): reading changes nothing, so the
/// read is left to end on its own thread and its result is dropped.
pub fn load(py: Python<'_>, path: &str) -> PyResult<Finalized> {
    let path = std::path::PathBuf::from(path);
    let dict = crate::abandonable(py, move || store::load(&path))?.map_err(crate::to_py)?;
    Ok(Finalized::new(dict))
}

/// A feature as `Feature.to_dict()` gives it, except that `top_activations` and `metadata`
/// may be missing: those a Python object never converted are taken from its engine source.
/// The other fields deserialize as [`Feature`]'s do (same defaults).
#[derive(Deserialize)]
struct PartialFeature {
    id: u64,
    dimension: usize,
    #[serde(default)]
    bias: f64,
    #[serde(default)]
    activation_count: u64,
    #[serde(default)]
    mean_activation: f64,
    #[serde(default)]
    max_activation: f64,
    #[serde(default)]
    activation_frequency: f64,
    top_activations: Option<Vec<FeatureActivation>>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    confidence: f64,
    #[serde(default = "default_type")]
    feature_type: FeatureType,
    metadata: Option<FeatureMetadata>,
}

fn default_type() -> FeatureType {
    FeatureType::Sparse
}

/// The feature set with partial features (see [`PartialFeature`]), keyed by id text.
#[derive(Deserialize)]
struct PartialSet {
    layer: i64,
    features: std::collections::BTreeMap<String, PartialFeature>,
    #[serde(default)]
    total_tokens_processed: u64,
    #[serde(default)]
    model_name: String,
    #[serde(default)]
    sae_name: String,
    #[serde(default)]
    metadata: FeatureSetMetadata,
}

#[derive(Deserialize)]
struct PartialSaved {
    /// The Python config's keys; those it does not know (`ngram_capacity`, `correlation`,
    /// … of a `featdict build`) are taken from the engine's copy (see [`save`]).
    #[serde(default)]
    config: serde_json::Value,
    feature_set: PartialSet,
    /// `get_statistics()`, written as the JSON file's `statistics` (a `.fdict` computes
    /// its own).
    #[serde(default)]
    statistics: Option<serde_json::Value>,
}

/// Feature `f` to write, with its examples and metadata from the engine's copy named in
/// `lent` (id → (examples from, metadata from)) when Python never converted them.
fn lent_view<'a>(
    f: &'a Feature,
    lent: &HashMap<u64, (Option<&'a Feature>, Option<&'a Feature>)>,
) -> FeatureView<'a> {
    let mut view = FeatureView::from(f);
    if let Some(&(top_from, metadata_from)) = lent.get(&f.id) {
        if let Some(b) = top_from {
            view.top_activations = &b.top_activations;
        }
        if let Some(b) = metadata_from {
            view.metadata = &b.metadata;
        }
    }
    view
}

/// Validates `text` (`{"config", "feature_set", ...}` as `FeatureDictionary.export_all()`
/// gives it) against the engine's model and writes it atomically: a path ending in `.fdict`
/// as the SQLite file, any other path as the original's JSON (the original's `save` wrote
/// JSON whatever the name, so `save("dict")` or `save("dict.JSON")` must keep working). A feature whose `top_activations` or `metadata` is missing
/// from `text` takes it from `sources[key] = (Finalized, id)`: Python never converted it, so
/// the engine's copy is still what it holds.
#[pyfunction]
pub fn save(
    py: Python<'_>,
    text: &str,
    path: &str,
    sources: HashMap<String, (PyRef<'_, Finalized>, u64)>,
) -> PyResult<()> {
    let invalid =
        |e: String| Error::Invalid(format!("{path}: dictionary does not match the model: {e}"));
    // The path of the field at fault (`feature_set.features["3"].activation_count`, as the
    // readers name it): the text was made by the package, so its line and column would tell
    // the user nothing.
    let saved: PartialSaved = py
        .allow_threads(|| store::json::from_str(text))
        .map_err(|e| {
            crate::to_py(invalid(format!(
                "{} is {}",
                e.path,
                strip_position(&e.error.to_string())
            )))
        })?;
    let set = saved.feature_set;
    let statistics = saved.statistics;
    // The settings Python's config has no field for keep the values of the dictionary the
    // features came from (a loaded file's `--ngrams 4096` was saved back as 0).
    let mut config = match sources.values().next() {
        Some((fin, _)) => serde_json::to_value(&fin.dict.config)
            .map_err(|e| crate::to_py(invalid(e.to_string())))?,
        None => serde_json::Value::Object(Default::default()),
    };
    overlay(&mut config, saved.config);
    let config: DictionaryConfig = serde_json::from_value(config)
        .map_err(|e| crate::to_py(invalid(format!("config: {e}"))))?;
    let path = std::path::Path::new(path);
    let fdict = path.extension().and_then(|e| e.to_str()) == Some("fdict");
    let mut features = std::collections::BTreeMap::new();
    // Both writers lend a feature's examples and metadata from the engine's copy
    // (`FeatureView`) instead of cloning them in: id → (examples from, metadata from).
    let mut lent: HashMap<u64, (Option<&Feature>, Option<&Feature>)> = HashMap::new();
    for (key, p) in set.features {
        let id: u64 = key.parse().map_err(|_| {
            crate::to_py(invalid(format!("feature key {key:?} is not an integer id")))
        })?;
        // `load` refuses such a file (one feature shown under two ids): never write one.
        if p.id != id {
            return Err(crate::to_py(invalid(format!(
                "features[{key:?}] holds feature id {}; each feature must be stored under its own id",
                p.id
            ))));
        }
        let base = match sources.get(&key) {
            Some((fin, src_id)) => Some(fin.feature(*src_id)?),
            None => None,
        };
        let (top_activations, top_from) = match (p.top_activations, base) {
            (Some(v), _) => (v, None),
            (None, Some(b)) => (Vec::new(), Some(b)),
            (None, None) => (Vec::new(), None),
        };
        let (metadata, metadata_from) = match (p.metadata, base) {
            (Some(m), _) => (m, None),
            (None, Some(b)) => (FeatureMetadata::default(), Some(b)),
            (None, None) => (FeatureMetadata::default(), None),
        };
        if top_from.is_some() || metadata_from.is_some() {
            lent.insert(p.id, (top_from, metadata_from));
        }
        features.insert(
            id,
            Feature {
                id: p.id,
                dimension: p.dimension,
                bias: p.bias,
                activation_count: p.activation_count,
                mean_activation: p.mean_activation,
                max_activation: p.max_activation,
                activation_frequency: p.activation_frequency,
                top_activations,
                labels: p.labels,
                description: p.description,
                confidence: p.confidence,
                feature_type: p.feature_type,
                metadata,
            },
        );
    }
    let dict = FeatureDictionary::new(
        config,
        FeatureSet {
            layer: set.layer,
            features,
            total_tokens_processed: set.total_tokens_processed,
            model_name: set.model_name,
            sae_name: set.sae_name,
            metadata: set.metadata,
        },
    );
    // Ctrl-C stops the write between waves of features, or before the rename: the
    // temporary file is removed and the file at `path` keeps what it held.
    let written = crate::interruptible_with_result(py, |stop| {
        if fdict {
            store::fdict::write_with(&dict, path, |f| lent_view(f, &lent), stop)
        } else {
            store::seed_json::write_with_statistics(
                &dict,
                path,
                |f| lent_view(f, &lent),
                stop,
                statistics.as_ref(),
            )
        }
    });
    match written {
        Ok(result) => result.map_err(crate::to_py),
        // Ctrl-C came after the last look at the flag: the new file is in place, which the
        // interrupt must not hide.
        Err((_, Some(Ok(())))) => Err(PyKeyboardInterrupt::new_err(format!(
            "{}: interrupted after the save had finished: the file holds the new dictionary",
            path.display()
        ))),
        Err((interrupt, _)) => Err(interrupt),
    }
}

/// Writes the config `top` over `base`: its settings replace theirs whole (a pattern map
/// is the user's as it is now), and a setting only `base` has stays, at the top level and
/// inside `extraction` and `labeling`.
fn overlay(base: &mut serde_json::Value, top: serde_json::Value) {
    fn merge(base: &mut serde_json::Value, top: serde_json::Value, sections: &[&str]) {
        match (base, top) {
            (serde_json::Value::Object(b), serde_json::Value::Object(t)) => {
                for (k, v) in t {
                    match b.get_mut(&k) {
                        Some(slot) if sections.contains(&k.as_str()) => merge(slot, v, &[]),
                        _ => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (slot, top) => *slot = top,
        }
    }
    merge(base, top, &["extraction", "labeling"]);
}

/// A serde_json message without its " at line L column C" suffix.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}
