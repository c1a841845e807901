//! Integers without the `config` crate's coercions (it turns `true` into 1 and `1.5` into 2):
//! an integer in range, or a string of decimal digits (what an environment variable gives).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Deserializes an unsigned integer of type `T` strictly.
pub(crate) fn uint<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    d.deserialize_any(UintVisitor(PhantomData))
}

struct UintVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> Visitor<'_> for UintVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a non-negative integer (of {} bytes)",
            std::mem::size_of::<T>()
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let t = v.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_type(Unexpected::Str(v), &self));
        }
        match t.parse::<u64>() {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}
