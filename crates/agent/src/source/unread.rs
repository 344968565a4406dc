//! Decoding objects without the fields the agent never reads, so they are
//! never built.
//!
//! Each object is decoded whole, from a list page, a watch event or a
//! manifest's document: k8s-openapi builds its `managedFields` (a
//! `serde_json::Value` tree for every entry's `fieldsV1`), the `kubectl
//! apply` annotation (the whole applied object, as a string), each
//! endpoint's `targetRef`, and the agent drops them unread ([`Trim`]). On a
//! realistic cluster that is most of what decoding allocates. [`Unread`]
//! decodes an object through a deserializer that passes over those values
//! in the input instead: the object's own `Deserialize` runs as it would,
//! and sees every other key and value unchanged.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::trim::{Trim, LAST_APPLIED};

/// An API object decoded without the fields its kind's [`Unneeded::FIELDS`]
/// passes over; the resource its object is. Those fields are not checked
/// either: a malformed `managedFields` does not make the object invalid.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unread<K>(pub(crate) K);

impl<'de, K: de::Deserialize<'de> + Unneeded> de::Deserialize<'de> for Unread<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Filtered {
            inner: deserializer,
            shape: Shape::Map(K::FIELDS),
        })
        .map(Unread)
    }
}

impl<K: kube::Resource> kube::Resource for Unread<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &K::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &K::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &K::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &K::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &K::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn metadata_api() -> bool {
        K::metadata_api()
    }

    fn url_path(dt: &K::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }

    fn meta(&self) -> &kube::api::ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        self.0.meta_mut()
    }
}

/// A kind whose objects [`Unread`] decodes: the fields it passes over,
/// which are those its [`Trim`] drops.
pub(crate) trait Unneeded: Trim {
    /// The object's fields.
    const FIELDS: &'static Fields;
}

/// Keys of a map passed over, and keys whose values have such keys of their
/// own; any other key is read as it is. A handful each: looked up in order.
#[derive(Debug)]
pub(crate) struct Fields(&'static [(&'static str, Field)]);

/// What becomes of a key's value.
#[derive(Debug)]
enum Field {
    /// Passed over, and its key with it.
    Skipped,
    /// A map (or struct), read with these fields passed over.
    Map(&'static Fields),
    /// A list of maps, each read with these fields passed over.
    Each(&'static Fields),
}

impl Fields {
    fn get(&self, key: &str) -> Option<&'static Field> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, field)| field)
    }
}

const META: Field = Field::Map(&Fields(&[
    ("managedFields", Field::Skipped),
    (
        "annotations",
        Field::Map(&Fields(&[(LAST_APPLIED, Field::Skipped)])),
    ),
]));

impl Unneeded for Service {
    /// kube-proxy does not read a Service's selector either: its endpoints
    /// come from the EndpointSlices.
    const FIELDS: &'static Fields = &Fields(&[
        ("metadata", META),
        ("spec", Field::Map(&Fields(&[("selector", Field::Skipped)]))),
    ]);
}

impl Unneeded for EndpointSlice {
    /// An endpoint's pod, zone and host name: topology reads the hints, not
    /// the zone, as kube-proxy's does.
    const FIELDS: &'static Fields = &Fields(&[
        ("metadata", META),
        (
            "endpoints",
            Field::Each(&Fields(&[
                ("targetRef", Field::Skipped),
                ("zone", Field::Skipped),
                ("hostname", Field::Skipped),
                ("deprecatedTopology", Field::Skipped),
            ])),
        ),
    ]);
}

impl Unneeded for Endpoints {
    const FIELDS: &'static Fields = &Fields(&[("metadata", META)]);
}

impl Unneeded for Node {
    const FIELDS: &'static Fields = &Fields(&[
        ("metadata", META),
        ("status", Field::Map(&Fields(&[("images", Field::Skipped)]))),
    ]);
}

impl Unneeded for ConfigMap {
    const FIELDS: &'static Fields = &Fields(&[("metadata", META), ("binaryData", Field::Skipped)]);
}

/// Where a value's fields are passed over.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// In the map it is (or, as an option, holds).
    Map(&'static Fields),
    /// In each map of the list it is (or holds).
    Each(&'static Fields),
}

/// A deserializer whose value, shaped as `shape` says, has its unneeded
/// fields passed over. A map or list is found where its type asks for one
/// (a struct, a map or a sequence, or an option of one); anything else is
/// read as it is.
struct Filtered<D> {
    inner: D,
    shape: Shape,
}

/// Hands a method on to the inner deserializer with the visitor as it is.
macro_rules! as_it_is {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* visitor)
            }
        )*
    };
}

/// Hands a method on to the inner deserializer with the visitor wrapped in
/// a [`Filter`] of this deserializer's shape.
macro_rules! filtered {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* Filter { inner: visitor, shape: self.shape })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Filtered<D> {
    type Error = D::Error;

    filtered! {
        deserialize_option();
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_seq();
    }

    as_it_is! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor whose map or list, if it is given one of the `shape`, has its
/// unneeded fields passed over; given anything else, it visits as its inner
/// visitor does.
struct Filter<V> {
    inner: V,
    shape: Shape,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Filter<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        match self.shape {
            Shape::Map(fields) => self.inner.visit_map(FilteredMap {
                inner: map,
                fields,
                next: None,
            }),
            Shape::Each(_) => self.inner.visit_map(map),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        match self.shape {
            Shape::Each(fields) => self.inner.visit_seq(FilteredSeq { inner: seq, fields }),
            Shape::Map(_) => self.inner.visit_seq(seq),
        }
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Filtered {
            inner: deserializer,
            shape: self.shape,
        })
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
}

/// A map's entries, less those its fields pass over.
struct FilteredMap<A> {
    inner: A,
    fields: &'static Fields,
    /// How the value of the key last given is read: filtered, or as it is.
    next: Option<Shape>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilteredMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        while let Some(key) = self.inner.next_key::<Key<'de>>()? {
            self.next = match self.fields.get(key.as_str()) {
                Some(Field::Skipped) => {
                    self.inner.next_value::<IgnoredAny>()?;
                    continue;
                }
                Some(Field::Map(fields)) => Some(Shape::Map(fields)),
                Some(Field::Each(fields)) => Some(Shape::Each(fields)),
                None => None,
            };
            return key.give(seed).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.next.take() {
            Some(shape) => self
                .inner
                .next_value_seed(FilterSeed { inner: seed, shape }),
            None => self.inner.next_value_seed(seed),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        // At most this many; only capacities use a hint.
        self.inner.size_hint()
    }
}

/// A list's maps, each with its fields passed over.
struct FilteredSeq<A> {
    inner: A,
    fields: &'static Fields,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for FilteredSeq<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.inner.next_element_seed(FilterSeed {
            inner: seed,
            shape: Shape::Map(self.fields),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A seed whose value is read filtered, as `shape` says.
struct FilterSeed<S> {
    inner: S,
    shape: Shape,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for FilterSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Filtered {
            inner: deserializer,
            shape: self.shape,
        })
    }
}

/// A map's key, borrowed from the input where the input allows.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Key<'de> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        }
    }

    /// The key, given to the seed of the map's own reader.
    fn give<S: DeserializeSeed<'de>, E: de::Error>(self, seed: S) -> Result<S::Value, E> {
        match self {
            Key::Borrowed(key) => seed.deserialize(BorrowedStrDeserializer::new(key)),
            Key::Owned(key) => seed.deserialize(StringDeserializer::new(key)),
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(key))
    }
}

#[cfg(test)]
mod tests;
