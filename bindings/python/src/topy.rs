//! A serde serializer that builds Python objects directly, giving exactly what
//! `json.loads(serde_json::to_string(value))` would give — same keys, lists for sequences and
//! tuples, `None` for non-finite floats — without the JSON text in between; f32 values become
//! the float holding exactly their value (the JSON has their shortest decimal, which reads
//! back as the same f32).
//!
//! Going through text cost more than everything else in `finalize()` (a 16,384-feature
//! dictionary is ~290 MB of JSON), and the equivalence keeps the Python objects identical to
//! those of a saved file loaded back with `FeatureDictionary.load` (which reads it through
//! the same model).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3::IntoPyObjectExt;
use rustc_hash::FxHashMap;
use serde::ser::{self, Serialize};
use std::cell::RefCell;
use std::fmt::Display;

/// Strings up to this many bytes are shared through a [`Strings`] cache: tokens, keys and
/// label texts recur in every feature, contexts (long) rarely do.
const SHARED_MAX_LEN: usize = 48;

/// Python `str` objects already made, by content, so a token that appears in thousands of
/// examples is one object (fewer allocations, and dict keys whose hash is computed once).
pub type Strings = FxHashMap<Box<str>, Py<PyString>>;

/// Converts `value` to Python objects (see the module documentation); short strings are
/// taken from and added to `strings`.
pub fn to_py<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
    strings: &mut Strings,
) -> PyResult<Bound<'py, PyAny>> {
    let cell = RefCell::new(std::mem::take(strings));
    let out = value.serialize(ToPy { py, strings: &cell });
    *strings = cell.into_inner();
    out.map_err(|e| e.0)
}

/// `s` as a Python string, shared through `strings` when it is short.
fn py_str<'py>(py: Python<'py>, strings: &RefCell<Strings>, s: &str) -> Bound<'py, PyString> {
    if s.len() > SHARED_MAX_LEN {
        return PyString::new(py, s);
    }
    let mut map = strings.borrow_mut();
    if let Some(v) = map.get(s) {
        return v.bind(py).clone();
    }
    let v = PyString::new(py, s);
    map.insert(s.into(), v.clone().unbind());
    v
}

/// A serializer error carrying the Python exception.
#[derive(Debug)]
pub struct Error(PyErr);

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(PyValueError::new_err(msg.to_string()))
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error(e)
    }
}

type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Copy)]
struct ToPy<'a, 'py> {
    py: Python<'py>,
    strings: &'a RefCell<Strings>,
}

impl<'py> ToPy<'_, 'py> {
    fn obj<T: IntoPyObject<'py>>(self, v: T) -> Result<Bound<'py, PyAny>> {
        v.into_bound_py_any(self.py).map_err(Error)
    }
}

struct Seq<'a, 'py> {
    py: Python<'py>,
    strings: &'a RefCell<Strings>,
    items: Vec<Bound<'py, PyAny>>,
    /// Set for a tuple variant: the list is wrapped as `{variant: [...]}`.
    variant: Option<&'static str>,
}

impl<'py> Seq<'_, 'py> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.items.push(v.serialize(ToPy {
            py: self.py,
            strings: self.strings,
        })?);
        Ok(())
    }

    fn end(self) -> Result<Bound<'py, PyAny>> {
        let list = PyList::new(self.py, self.items)?.into_any();
        wrap(self.py, self.variant, list)
    }
}

fn wrap<'py>(
    py: Python<'py>,
    variant: Option<&'static str>,
    value: Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>> {
    match variant {
        None => Ok(value),
        Some(name) => {
            let d = PyDict::new(py);
            d.set_item(name, value)?;
            Ok(d.into_any())
        }
    }
}

struct Map<'a, 'py> {
    py: Python<'py>,
    strings: &'a RefCell<Strings>,
    dict: Bound<'py, PyDict>,
    key: Option<Bound<'py, PyString>>,
    variant: Option<&'static str>,
}

impl<'py> Map<'_, 'py> {
    fn to_py(&self) -> ToPy<'_, 'py> {
        ToPy {
            py: self.py,
            strings: self.strings,
        }
    }

    fn end(self) -> Result<Bound<'py, PyAny>> {
        wrap(self.py, self.variant, self.dict.into_any())
    }
}

/// The four sequence-like serde traits all append to the list.
macro_rules! seq_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<'py> ser::$trait for Seq<'_, 'py> {
            type Ok = Bound<'py, PyAny>;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
                self.push(v)
            }
            fn end(self) -> Result<Self::Ok> {
                Seq::end(self)
            }
        }
    )*};
}

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<'py> ser::SerializeMap for Map<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<()> {
        let key = k.serialize(KeyToStr)?;
        self.key = Some(py_str(self.py, self.strings, &key));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value without a key"))?;
        self.dict.set_item(key, v.serialize(self.to_py())?)?;
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Map::end(self)
    }
}

/// Both struct-like serde traits set `key: value` in the dict.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl<'py> ser::$trait for Map<'_, 'py> {
            type Ok = Bound<'py, PyAny>;
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<()> {
                let key = py_str(self.py, self.strings, key);
                self.dict.set_item(key, v.serialize(self.to_py())?)?;
                Ok(())
            }
            fn end(self) -> Result<Self::Ok> {
                Map::end(self)
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl<'a, 'py> ser::Serializer for ToPy<'a, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    type SerializeSeq = Seq<'a, 'py>;
    type SerializeTuple = Seq<'a, 'py>;
    type SerializeTupleStruct = Seq<'a, 'py>;
    type SerializeTupleVariant = Seq<'a, 'py>;
    type SerializeMap = Map<'a, 'py>;
    type SerializeStruct = Map<'a, 'py>;
    type SerializeStructVariant = Map<'a, 'py>;

    fn serialize_bool(self, v: bool) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_i128(self, v: i128) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_u128(self, v: u128) -> Result<Self::Ok> {
        self.obj(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Self::Ok> {
        // serde_json writes non-finite floats as null.
        if v.is_finite() {
            // Exactly the float32 value, as `float(np.float32(x))` (the original's examples
            // held the input's values); its statistics (f64) are then equal where they should be.
            self.obj(v as f64)
        } else {
            Ok(self.py.None().into_bound(self.py))
        }
    }
    fn serialize_f64(self, v: f64) -> Result<Self::Ok> {
        if v.is_finite() {
            self.obj(v)
        } else {
            Ok(self.py.None().into_bound(self.py))
        }
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok> {
        self.obj(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok> {
        Ok(py_str(self.py, self.strings, v).into_any())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Self::Ok> {
        // serde_json writes bytes as an array of numbers.
        Ok(PyList::new(self.py, v)?.into_any())
    }
    fn serialize_none(self) -> Result<Self::Ok> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Self::Ok> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Self::Ok> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok> {
        self.obj(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Self::Ok> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Self::Ok> {
        let inner = v.serialize(self)?;
        wrap(self.py, Some(variant), inner)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(Seq {
            py: self.py,
            strings: self.strings,
            items: Vec::with_capacity(len.unwrap_or(0)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Ok(Seq {
            py: self.py,
            strings: self.strings,
            items: Vec::with_capacity(len),
            variant: Some(variant),
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(Map {
            py: self.py,
            strings: self.strings,
            dict: PyDict::new(self.py),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Ok(Map {
            py: self.py,
            strings: self.strings,
            dict: PyDict::new(self.py),
            key: None,
            variant: Some(variant),
        })
    }
}

/// Map keys as serde_json writes them: strings as they are, numbers and booleans as text.
struct KeyToStr;

fn key_error() -> Error {
    <Error as ser::Error>::custom("map keys must be strings, numbers or booleans")
}

impl ser::Serializer for KeyToStr {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<String> {
        Err(key_error())
    }
    fn serialize_char(self, v: char) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(key_error())
    }
}
