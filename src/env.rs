//! The environment as a serde format: `LOCKKIT_<FIELD>` for the top-level
//! fields and `LOCKKIT_<SECTION>_<FIELD>` for a section's, read through the
//! same `Deserialize` impls as TOML and JSON, so a value is checked by one
//! rule whichever way it came.
//!
//! The fields to look for come from the types themselves (serde hands a
//! struct's field names to its deserializer); which top-level fields are
//! sections comes from the facade's registry of backends. Values are
//! trimmed of surrounding whitespace. What was looked for is recorded, so a
//! misspelt variable of a section this build reads can be refused.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use lockkit_core::redact_url;
use serde::de::value::Error;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// The prefix of every variable.
const PREFIX: &str = "LOCKKIT";

/// The variable a field's path (`redis.min_replicas`) is read from.
pub(crate) fn variable(path: &str) -> String {
    if path == "." {
        return format!("{PREFIX}_*");
    }
    format!("{PREFIX}_{}", path.replace('.', "_").to_uppercase())
}

/// What a read looked for: every variable name, and the prefixes of the
/// sections whose fields it knew.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    names: RefCell<BTreeSet<String>>,
    sections: RefCell<Vec<String>>,
}

impl Seen {
    /// A refusal of the first variable in `names` that belongs to a section
    /// read field by field (`LOCKKIT_REDIS_*` where the `redis` feature is
    /// on) but names none of its fields.
    pub(crate) fn unknown<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Option<String> {
        let known = self.names.borrow();
        let sections = self.sections.borrow();
        names.into_iter().find_map(|name| {
            let section = sections.iter().find(|prefix| {
                name == prefix.as_str()
                    || name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('_'))
            })?;
            if known.contains(name) {
                return None;
            }
            let fields: Vec<&str> = known
                .iter()
                .filter(|known| known.starts_with(&format!("{section}_")))
                .map(String::as_str)
                .collect();
            Some(format!(
                "{name} is not a setting of this section; its variables are {}",
                fields.join(", ")
            ))
        })
    }
}

/// The whole configuration, read from variables through `var`.
pub(crate) struct Env<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    sections: &'a [&'a str],
    seen: &'a Seen,
}

impl<'a> Env<'a> {
    pub(crate) fn new(
        var: &'a dyn Fn(&str) -> Option<String>,
        sections: &'a [&'a str],
        seen: &'a Seen,
    ) -> Self {
        Self {
            var,
            sections,
            seen,
        }
    }
}

impl<'de> Deserializer<'de> for Env<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let names = Names {
            var: self.var,
            seen: self.seen,
        };
        visitor.visit_map(Fields::new(names, PREFIX.to_owned(), fields, self.sections))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(
            "the environment holds a configuration struct",
        ))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Where variables are read, and where what was looked for is recorded.
#[derive(Clone, Copy)]
struct Names<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    seen: &'a Seen,
}

impl Names<'_> {
    /// The variable `name`, trimmed, recording that it was looked for.
    fn get(&self, name: &str) -> Option<String> {
        self.seen.names.borrow_mut().insert(name.to_owned());
        (self.var)(name).map(|text| text.trim().to_owned())
    }
}

/// The fields of one struct whose variables are set, in order.
struct Fields<'a> {
    names: Names<'a>,
    prefix: String,
    fields: std::slice::Iter<'static, &'static str>,
    sections: &'a [&'a str],
    /// The value of the field just yielded.
    next: Option<Node<'a>>,
}

impl<'a> Fields<'a> {
    fn new(
        names: Names<'a>,
        prefix: String,
        fields: &'static [&'static str],
        sections: &'a [&'a str],
    ) -> Self {
        Self {
            names,
            prefix,
            fields: fields.iter(),
            sections,
            next: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for &field in self.fields.by_ref() {
            let name = format!("{}_{}", self.prefix, field.to_uppercase());
            let node = if self.sections.contains(&field) {
                Node::Section {
                    names: self.names,
                    prefix: name,
                }
            } else {
                match self.names.get(&name) {
                    Some(text) => Node::Text(text),
                    None => continue,
                }
            };
            self.next = Some(node);
            return seed.deserialize(field.into_deserializer()).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.next.take() {
            Some(node) => seed.deserialize(node),
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }
}

/// One field's value: a variable's text, or a section whose fields are
/// variables of their own.
enum Node<'a> {
    Text(String),
    Section { names: Names<'a>, prefix: String },
}

impl Node<'_> {
    fn text(&self) -> Result<&str, Error> {
        match self {
            Node::Text(text) => Ok(text),
            Node::Section { prefix, .. } => Err(de::Error::custom(format!(
                "{prefix}_* hold a section, not one value"
            ))),
        }
    }

    /// The text parsed as a `T`, or a refusal saying what was expected.
    fn parse<T: std::str::FromStr>(&self, expected: impl fmt::Display) -> Result<T, Error> {
        let text = self.text()?;
        text.trim().parse().map_err(|_| {
            de::Error::custom(format!("expected {expected}, got `{}`", redact_url(text)))
        })
    }
}

/// "a whole number from MIN to MAX" for an integer type.
macro_rules! whole {
    ($type:ty) => {
        format_args!("a whole number from {} to {}", <$type>::MIN, <$type>::MAX)
    };
}

macro_rules! parsed {
    ($($method:ident => $visit:ident: $expected:expr),+ $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                visitor.$visit(self.parse($expected)?)
            }
        )+
    };
}

impl<'de> Deserializer<'de> for Node<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(text) => visitor.visit_string(text),
            // A section this build keeps raw: its variables are not read.
            Node::Section { .. } => visitor.visit_map(Empty),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(_) => visitor.visit_some(self),
            Node::Section { .. } => visitor.visit_none(),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Section { names, prefix } => {
                names.seen.sections.borrow_mut().push(prefix.clone());
                visitor.visit_map(Fields::new(names, prefix, fields, &[]))
            }
            Node::Text(_) => Err(de::Error::custom(format!(
                "expected the section {name}, got one value"
            ))),
        }
    }

    parsed! {
        deserialize_bool => visit_bool: "true or false",
        deserialize_i8 => visit_i8: whole!(i8),
        deserialize_i16 => visit_i16: whole!(i16),
        deserialize_i32 => visit_i32: whole!(i32),
        deserialize_i64 => visit_i64: whole!(i64),
        deserialize_u8 => visit_u8: whole!(u8),
        deserialize_u16 => visit_u16: whole!(u16),
        deserialize_u32 => visit_u32: whole!(u32),
        deserialize_u64 => visit_u64: whole!(u64),
        deserialize_f32 => visit_f32: "a number",
        deserialize_f64 => visit_f64: "a number",
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct newtype_struct
        seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// A section with no fields.
struct Empty;

impl<'de> MapAccess<'de> for Empty {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _seed: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("an empty section has no values"))
    }
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}
