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

use feature_dictionary::model::{FeatureSet, FeatureSetMetadata};
use feature_dictionary::{store, FeatureDictionary};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde::Serialize;
use serde_json::Value;

use crate::labels;
use crate::topy::to_py;

/// A finished dictionary (config and features) owned by Rust.
#[pyclass(module = "feature_dictionary._engine")]
pub struct Finalized {
    pub(crate) dict: FeatureDictionary,
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

    fn feature(&self, id: u64) -> PyResult<&feature_dictionary::model::Feature> {
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
        d.set_item("config", to_py(py, &self.dict.config)?)?;
        d.set_item(
            "feature_set",
            to_py(
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
            d.set_item("id", id)?;
            d.set_item("dimension", f.dimension)?;
            d.set_item("decoder_weight", &none)?;
            d.set_item("encoder_weight", &none)?;
            d.set_item("bias", finite_or_none(py, f.bias))?;
            d.set_item("activation_count", f.activation_count)?;
            d.set_item("mean_activation", finite_or_none(py, f.mean_activation))?;
            d.set_item("max_activation", finite_or_none(py, f.max_activation))?;
            d.set_item(
                "activation_frequency",
                finite_or_none(py, f.activation_frequency),
            )?;
            d.set_item("labels", PyList::new(py, &f.labels)?)?;
            d.set_item("description", &f.description)?;
            d.set_item("confidence", finite_or_none(py, f.confidence))?;
            let ty = types.get_item(f.feature_type.as_str())?.ok_or_else(|| {
                PyValueError::new_err(format!("unknown feature type {:?}", f.feature_type))
            })?;
            d.set_item("feature_type", ty)?;
            d.set_item(
                "_src",
                PyTuple::new(py, [slf.as_any().clone(), id.into_pyobject(py)?.into_any()])?,
            )?;
            let obj = new.call1((feature_cls,))?;
            obj.setattr("__dict__", d)?;
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
                obj.setattr("__dict__", to_py(py, a)?)?;
                Ok(obj)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Feature `id`'s `metadata` dict.
    fn metadata<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.feature(id)?.metadata)
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
        py.allow_threads(|| labels::label_set(set, &plan, threads));
        Ok(())
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
pub fn load(py: Python<'_>, path: &str) -> PyResult<Finalized> {
    let dict = py
        .allow_threads(|| store::load(std::path::Path::new(path)))
        .map_err(crate::to_py)?;
    Ok(Finalized { dict })
}
