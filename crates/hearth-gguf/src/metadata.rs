//! Ordered metadata with typed accessors (`get_u32("llama.block_count")`).

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::value::{Array, Value};

/// Metadata key-value pairs in file order, indexed by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

macro_rules! int_getter {
    ($get:ident, $opt:ident, $t:ty) => {
        #[doc = concat!("The integer at `key` as ", stringify!($t), "; any integer type is accepted if the value fits.")]
        pub fn $get(&self, key: &str) -> Result<$t> {
            self.$opt(key)?.ok_or_else(|| missing(key))
        }

        #[doc = concat!("Like [`Self::", stringify!($get), "`], but `Ok(None)` when the key is absent.")]
        pub fn $opt(&self, key: &str) -> Result<Option<$t>> {
            let Some(v) = self.get(key) else { return Ok(None) };
            let i = v.as_integer().ok_or_else(|| wrong_type(key, "integer", v))?;
            <$t>::try_from(i).map(Some).map_err(|_| GgufError::ValueOutOfRange {
                key: key.to_string(),
                value: i.to_string(),
                target: stringify!($t),
            })
        }
    };
}

fn missing(key: &str) -> GgufError {
    GgufError::MissingKey {
        key: key.to_string(),
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: found.type_description(),
    }
}

impl Metadata {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a pair; an existing key is an error.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Result<()> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Sets `key` to `value`, replacing an existing value in place.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    int_getter!(get_u8, get_u8_opt, u8);
    int_getter!(get_u16, get_u16_opt, u16);
    int_getter!(get_u32, get_u32_opt, u32);
    int_getter!(get_u64, get_u64_opt, u64);
    int_getter!(get_i32, get_i32_opt, i32);
    int_getter!(get_i64, get_i64_opt, i64);

    /// The number at `key` as f32 (FLOAT32, FLOAT64 or an integer).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_f32_opt(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_f32`], but `Ok(None)` when the key is absent.
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::F32(f) => Ok(Some(*f)),
            _ => v
                .as_f64()
                .map(|f| Some(f as f32))
                .ok_or_else(|| wrong_type(key, "number", v)),
        }
    }

    /// The boolean at `key`.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get_bool_opt(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_bool`], but `Ok(None)` when the key is absent.
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(key, "BOOL", v)),
        }
    }

    /// The string at `key`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get_str_opt(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_str`], but `Ok(None)` when the key is absent.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(key, "STRING", v)),
        }
    }

    /// The array at `key`.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.get(key) {
            None => Err(missing(key)),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(wrong_type(key, "ARRAY", v)),
        }
    }

    /// The array of strings at `key`.
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        match self.get_array(key)? {
            Array::String(v) => Ok(v),
            _ => Err(wrong_type(
                key,
                "ARRAY[STRING]",
                self.get(key).unwrap_or(&Value::U8(0)),
            )),
        }
    }

    /// The array of f32 at `key`.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        match self.get_array(key)? {
            Array::F32(v) => Ok(v),
            _ => Err(wrong_type(
                key,
                "ARRAY[FLOAT32]",
                self.get(key).unwrap_or(&Value::U8(0)),
            )),
        }
    }

    /// The array of integers at `key`, each converted to i64 (any integer
    /// element type whose values fit).
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>> {
        let arr = self.get_array(key)?;
        let out: Option<Vec<i64>> = match arr {
            Array::U8(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::I8(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::U16(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::I16(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::U32(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::I32(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::I64(v) => Some(v.clone()),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect(),
            Array::Bool(v) => Some(v.iter().map(|&x| x.into()).collect()),
            _ => None,
        };
        out.ok_or_else(|| {
            wrong_type(
                key,
                "ARRAY[integer]",
                self.get(key).unwrap_or(&Value::U8(0)),
            )
        })
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }
}
