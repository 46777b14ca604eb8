//! Sections whose keys depend on a tag: `[storage.NAME]` by `kind`,
//! `[identity_provider]` by `type`.
//!
//! serde's own internally tagged enums (`#[serde(tag = "kind")]`) buffer
//! the section before choosing the variant, which loses the key path of
//! every error inside it (`storage.r: invalid type` instead of
//! `storage.r.endpoint: expected a string, got an integer`). So the tag is
//! read first, and the variant's struct is then read from the rest of the
//! section with [`crate::section`], keeping every key path. [`tagged!`]
//! declares such an enum with one line per variant: that line is the whole
//! registration of a new store kind or identity provider.

use serde::Deserializer;
use serde::de::{self, DeserializeOwned, Visitor};
use toml::{Table, Value};

use crate::problems::join;
use crate::{Problems, section};

/// An enum chosen by a tag key, one struct per variant; declared with
/// [`tagged!`].
pub trait Tagged: Sized {
    /// The tag's key: `kind`, `type`.
    const TAG: &'static str;
    /// Every tag value, in declaration order.
    const NAMES: &'static [&'static str];
    /// Reads the variant tagged `name` from `value` (the section without
    /// its tag and common keys); `None` after recording its problems.
    /// Only called with a name from [`Tagged::NAMES`].
    fn read(name: &str, value: Value, path: &str, problems: &mut Problems) -> Option<Self>;
    /// This variant's tag value.
    fn name(&self) -> &'static str;
}

/// Declares a [`Tagged`] enum: one line per variant, `"tag" =>
/// Variant(Struct)`, each struct a `Deserialize` with
/// `deny_unknown_fields`.
#[macro_export]
macro_rules! tagged {
    // With `dyn Trait`: every variant's struct implements `Trait`, and
    // `as_dyn` returns the chosen one as `&dyn Trait`.
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident (tag = $tag:literal, dyn $tr:path) {
            $( $(#[$vmeta:meta])* $key:literal => $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $crate::tagged! {
            $(#[$meta])*
            $vis enum $name (tag = $tag) {
                $( $(#[$vmeta])* $key => $variant($ty), )+
            }
        }

        impl $name {
            /// The chosen variant's settings.
            $vis fn as_dyn(&self) -> &dyn $tr {
                match self {
                    $( $name::$variant(inner) => inner, )+
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident (tag = $tag:literal) {
            $( $(#[$vmeta:meta])* $key:literal => $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $crate::Tagged for $name {
            const TAG: &'static str = $tag;
            const NAMES: &'static [&'static str] = &[$($key),+];

            fn read(
                name: &str,
                value: $crate::toml::Value,
                path: &str,
                problems: &mut $crate::Problems,
            ) -> Option<Self> {
                match name {
                    $( $key => $crate::section::<$ty>(value, path, problems).map($name::$variant), )+
                    _ => None,
                }
            }

            fn name(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => $key, )+
                }
            }
        }
    };
}

/// Reads a tagged section at `path`: the keys of `C` common to every
/// variant, and the variant of `V` its tag names (`default`, when the tag
/// is absent and there is one). Keys that neither `C` nor the chosen variant
/// knows are unknown.
pub fn tagged_section<C: DeserializeOwned, V: Tagged>(
    value: Value,
    path: &str,
    default: Option<&str>,
    problems: &mut Problems,
) -> Option<(C, V)> {
    let Value::Table(mut table) = value else {
        problems.push(path, "expected a table");
        return None;
    };
    let tag_path = join(path, V::TAG);
    let choices = || {
        V::NAMES
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tag = match (table.remove(V::TAG), default) {
        (Some(Value::String(tag)), _) => tag,
        (None, Some(default)) => default.to_owned(),
        (None, None) => {
            problems.push(
                &tag_path,
                format!("required, missing (one of {})", choices()),
            );
            return None;
        }
        (Some(_), _) => {
            problems.push(
                &tag_path,
                format!("expected a string (one of {})", choices()),
            );
            return None;
        }
    };
    if !V::NAMES.contains(&tag.as_str()) {
        problems.push(&tag_path, format!("\"{tag}\" is not one of {}", choices()));
        return None;
    }
    let mut common = Table::new();
    for name in field_names::<C>() {
        if let Some(value) = table.remove(*name) {
            common.insert((*name).to_owned(), value);
        }
    }
    let common = section::<C>(Value::Table(common), path, problems);
    let variant = V::read(&tag, Value::Table(table), path, problems);
    Some((common?, variant?))
}

/// The keys a derived `Deserialize` struct reads (its `fields`).
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the field list a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}
