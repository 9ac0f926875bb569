//! SAE weight files: SAELens `sae_weights.safetensors` or Gemma Scope `params.npz` (a zip of
//! `.npy` arrays, stored or deflated). Every tensor is converted to f32 once at load, and
//! every tensor an SAE reads is checked to be finite when it is taken.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ingest::safetensors::{decode_floats, float_dtype, SafeTensors};

/// Why a non-finite weight is refused at load rather than met later: encoding would turn it
/// into NaN latents, reported against the residuals, and decoder analyses into empty answers.
const NONFINITE_WHY: &str =
    "every weight of an SAE must be finite (the file is damaged or its training diverged)";

/// Named float tensors read from one weight file.
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, (Vec<u64>, Vec<f32>)>,
    /// Names and shapes of the tensors already taken, so "the file has" lists stay whole.
    taken: Vec<(String, Vec<u64>)>,
    /// Tensors left out for not being floats, with their dtypes: a weight stored so is
    /// named as such rather than called missing.
    not_floats: Vec<(String, String)>,
}

impl Weights {
    /// Reads every float tensor of a `.safetensors` file.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let st = SafeTensors::open(path)?;
        Self::from_st(&st)
    }

    /// Reads every float tensor of parsed safetensors (non-float tensors are skipped).
    pub fn from_st(st: &SafeTensors) -> Result<Self> {
        let mut tensors = HashMap::new();
        let mut not_floats = Vec::new();
        for t in st.tensors() {
            if float_dtype(&t.dtype).is_some() {
                tensors.insert(t.name.clone(), (t.shape.clone(), st.to_f32(t)?));
            } else {
                not_floats.push((t.name.clone(), t.dtype.clone()));
            }
        }
        Ok(Self {
            path: st.path().to_path_buf(),
            tensors,
            taken: Vec::new(),
            not_floats,
        })
    }

    /// Reads every array of an `.npz` file.
    pub fn from_npz(path: &Path) -> Result<Self> {
        let map = crate::ingest::map_file(path)?;
        Self::from_npz_bytes(path, &map)
    }

    /// Parses `.npz` bytes in memory (`path` is used in messages).
    pub fn from_npz_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| Error::format(path, format!("not a valid .npz (zip) file: {e}")))?;
        let mut tensors = HashMap::new();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::format(path, format!("unreadable .npz entry {i}: {e}")))?;
            let name = entry.name().to_string();
            let Some(key) = name.strip_suffix(".npy") else {
                continue;
            };
            let declared = entry.size();
            // Read at most the declared size (+1 to notice a lie); the buffer grows only as
            // real bytes arrive, so a forged size never becomes an allocation.
            let mut buf = Vec::new();
            (&mut entry)
                .take(declared.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| Error::format(path, format!(".npz entry {name}: {e}")))?;
            if buf.len() as u64 != declared {
                return Err(Error::format(
                    path,
                    format!(
                        ".npz entry {name} declares {declared} bytes but holds {}",
                        buf.len()
                    ),
                ));
            }
            let entry_path = path.join(&name);
            let h = crate::ingest::npy::parse_header(&entry_path, &buf)?;
            if h.fortran_order {
                return Err(Error::format(
                    &entry_path,
                    "Fortran-order array; expected C order",
                ));
            }
            let dtype = crate::ingest::npy::dense_dtype(&entry_path, &h.descr)?;
            let needed = h
                .shape
                .iter()
                .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d));
            let data = &buf[h.data_offset..];
            if needed != Some(data.len() as u64) {
                return Err(Error::format(
                    &entry_path,
                    format!(
                        "array of shape {:?} and dtype {} does not match its {} data bytes",
                        h.shape,
                        h.descr,
                        data.len()
                    ),
                ));
            }
            tensors.insert(
                key.to_string(),
                (h.shape.clone(), decode_floats(data, dtype)),
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            taken: Vec::new(),
            not_floats: Vec::new(),
        })
    }

    /// The weight file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shape of a tensor found under any of `names`.
    pub fn shape(&self, names: &[&str]) -> Option<&[u64]> {
        names
            .iter()
            .find_map(|n| self.tensors.get(*n))
            .map(|t| t.0.as_slice())
    }

    /// The tensors of the file with their shapes, sorted, as error messages list them.
    pub fn list(&self) -> String {
        let mut v: Vec<String> = self
            .tensors
            .iter()
            .map(|(n, (s, _))| (n, s))
            .chain(self.taken.iter().map(|(n, s)| (n, s)))
            .map(|(n, s)| format!("{n} {s:?}"))
            .chain(self.not_floats.iter().map(|(n, d)| format!("{n} ({d})")))
            .collect();
        v.sort();
        v.join(", ")
    }

    /// Removes and returns the tensor found under any of `names`, checking its shape and
    /// that every value is finite.
    pub fn take(&mut self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>> {
        match self.take_opt(names, shape)? {
            Some(t) => Ok(t),
            None => {
                if let Some((name, dtype)) = self
                    .not_floats
                    .iter()
                    .find(|(n, _)| names.contains(&n.as_str()))
                {
                    return Err(Error::format(
                        &self.path,
                        format!("tensor {name} has dtype {dtype}; SAE weights must be floats (F32, F16, BF16 or F64)"),
                    ));
                }
                Err(Error::format(
                    &self.path,
                    format!(
                        "missing tensor {} (shape {shape:?}); the file has {}",
                        names[0],
                        self.list()
                    ),
                ))
            }
        }
    }

    /// Like [`Weights::take`] for an optional tensor.
    pub fn take_opt(&mut self, names: &[&str], shape: &[usize]) -> Result<Option<Vec<f32>>> {
        let Some(name) = names.iter().find(|n| self.tensors.contains_key(**n)) else {
            return Ok(None);
        };
        let (s, data) = self.tensors.remove(*name).expect("present");
        self.taken.push((name.to_string(), s.clone()));
        let want: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if s != want {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name} has shape {s:?}; expected {want:?} from d_in/d_sae in the config"
                ),
            ));
        }
        crate::finite::check(&self.path, name, &s, &data, NONFINITE_WHY)?;
        Ok(Some(data))
    }

    /// Fails when the tensor found under any of `names` (one not taken, e.g. a decoder that
    /// encoding does not read) holds a NaN or ±Inf; an absent tensor passes.
    pub fn check_finite(&self, names: &[&str]) -> Result<()> {
        match names.iter().find_map(|n| self.tensors.get_key_value(*n)) {
            Some((name, (shape, data))) => {
                crate::finite::check(&self.path, name, shape, data, NONFINITE_WHY)
            }
            None => Ok(()),
        }
    }
}
