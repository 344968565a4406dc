//! What the subset reader reads a document into: a tree in an arena
//! ([`bumpalo::Bump`]) that borrows its keys and plain strings from the
//! text, and that typed objects deserialize from directly.
//!
//! Going through a `serde_json::Value` cost an owned `String` per key and
//! a tree node per mapping, built and then freed again once the object was
//! typed: on the directory source's cold sync, more than the reading. With
//! a vector per mapping and sequence the tree still cost a third of the
//! reader's allocations, each freed a moment later; in the arena the tree
//! is freed at once, when the arena is reset for the next document.
//! [`Node::into_value`] gives the value the general parser would (the
//! tests and the fuzz target compare them), and a typed object deserialized
//! from a node is the one [`serde_json::from_value`] makes of that value:
//! the deserializer below hands a visitor what `serde_json::Value`'s does.

use std::fmt;

use serde::de::{self, IntoDeserializer, Visitor};
use serde_json::Value;

/// A node of a document in the subset: scalars are typed as YAML's core
/// schema reads them (integers fit an `i64`; the subset has no floats), and
/// a mapping's keys are strings, each once, in the document's order.
///
/// Collections are slices of the arena, taken from as a node is
/// deserialized (what is taken is left [`Node::Null`]).
#[derive(Debug, Default, PartialEq)]
pub enum Node<'a> {
    /// `null`, `~`, or nothing.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A canonical integer.
    Int(i64),
    /// A string: plain, quoted or a literal block; in the text, or in the
    /// arena when escapes or line folding made it differ from the text.
    Str(&'a str),
    /// A sequence.
    Seq(&'a mut [Node<'a>]),
    /// A mapping.
    Map(&'a mut [(&'a str, Node<'a>)]),
}

impl<'a> Node<'a> {
    /// The same document as a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(n) => Value::Number(n.into()),
            Node::Str(s) => Value::String(s.to_owned()),
            Node::Seq(items) => Value::Array(
                items
                    .iter_mut()
                    .map(|item| std::mem::take(item).into_value())
                    .collect(),
            ),
            Node::Map(entries) => Value::Object(
                entries
                    .iter_mut()
                    .map(|(k, v)| ((*k).to_owned(), std::mem::take(v).into_value()))
                    .collect(),
            ),
        }
    }

    /// The value at `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Node::Null => de::Unexpected::Unit,
            Node::Bool(b) => de::Unexpected::Bool(*b),
            Node::Int(n) => match u64::try_from(*n) {
                Ok(n) => de::Unexpected::Unsigned(n),
                Err(_) => de::Unexpected::Signed(*n),
            },
            Node::Str(s) => de::Unexpected::Str(s),
            Node::Seq(_) => de::Unexpected::Seq,
            Node::Map(_) => de::Unexpected::Map,
        }
    }
}

/// Why a node did not make the object asked for. Its text is what
/// `serde_json::from_value` would say.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl<'de> de::Deserializer<'de> for Node<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            // As a JSON value's number: non-negative ones are unsigned.
            Node::Int(n) => match u64::try_from(n) {
                Ok(n) => visitor.visit_u64(n),
                Err(_) => visitor.visit_i64(n),
            },
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Seq(items) => {
                let mut seq = de::value::SeqDeserializer::new(items.iter_mut().map(std::mem::take));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Map(entries) => {
                // Keys borrowed, as serde_json gives its unescaped ones, so
                // a reader that keeps them need not copy them.
                let mut map = de::value::MapDeserializer::new(entries.iter_mut().map(|(k, v)| {
                    (
                        de::value::BorrowedStrDeserializer::new(k),
                        std::mem::take(v),
                    )
                }));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_none(),
            node => visitor.visit_some(node),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_unit(),
            node => Err(de::Error::invalid_type(node.unexpected(), &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            // A unit variant by name, as a JSON string is one.
            Node::Str(s) => visitor.visit_enum(s.into_deserializer()),
            // Variants with data are not in the objects read here: the
            // caller reads such a document the long way.
            node => Err(de::Error::invalid_type(
                node.unexpected(),
                &"a unit variant",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
