//! The value types of `wharf.toml`, as serde helpers for
//! `#[serde(with = ...)]` / `deserialize_with`, so that every value is
//! parsed once, when the file is read, and a bad one is named by its key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// `15m`, `30s`, `1h30m`, `500ms`, `0s`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 30s, 15m or 1h");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// `8MiB`, `5MB`, `1GiB`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let bad = || format!("{text:?} is not a size like 8MiB");
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

/// `50000-50100`.
pub fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    text.split_once('-')
        .and_then(|(a, b)| {
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (a > 0 && a <= b).then_some(a..=b)
        })
        .ok_or_else(|| format!("{text:?} is not a port range like 50000-50100"))
}

/// A string read with `parse`, its error becoming the key's message.
fn parsed<'de, D, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(de::Error::custom)
}

/// A duration (`with = "wharf_config::values::duration"`).
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        parsed(deserializer, parse_duration)
    }
}

/// A size in bytes: `"8MiB"` or a plain integer.
pub mod size {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        struct Size;
        impl Visitor<'_> for Size {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 8MiB")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
                u64::try_from(n).map_err(|_| E::custom(format!("{n} is not a size like 8MiB")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
                Ok(n)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
                parse_size(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Size)
    }
}

/// A port range `50000-50100`.
pub mod ports {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<RangeInclusive<u16>, D::Error> {
        parsed(deserializer, parse_ports)
    }
}

/// An address to listen on, `127.0.0.1:2222`.
pub mod address {
    use super::*;

    pub fn parse(text: &str) -> Result<SocketAddr, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:2222"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        parsed(deserializer, parse)
    }
}

/// An address where `""` means none.
pub mod optional_address {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        parsed(deserializer, |text| match text {
            "" => Ok(None),
            text => address::parse(text).map(Some),
        })
    }
}

/// A string where `""` means not set.
pub mod optional_string {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        Ok(Some(String::deserialize(deserializer)?).filter(|s| !s.is_empty()))
    }
}

/// A path, relative to the configuration file's directory.
pub mod path {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
        Ok(crate::document::resolve(&String::deserialize(
            deserializer,
        )?))
    }
}

/// A path where `""` means none.
pub mod optional_path {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok((!text.is_empty()).then(|| crate::document::resolve(&text)))
    }
}

/// A list of paths.
pub mod paths {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PathBuf>, D::Error> {
        Ok(Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|p| crate::document::resolve(p))
            .collect())
    }
}

/// A list of CIDRs (`10.0.0.0/8`) or addresses (their own /32 or /128);
/// a bad item is named by its index.
pub mod cidrs {
    use super::*;

    struct Cidr(ipnet::IpNet);

    impl<'de> Deserialize<'de> for Cidr {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
            parsed(deserializer, |text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map(Cidr)
                    .map_err(|_| format!("{text:?} is not an address or a CIDR like 10.0.0.0/8"))
            })
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ipnet::IpNet>, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Vec<ipnet::IpNet>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut nets = Vec::new();
                while let Some(Cidr(net)) = seq.next_element()? {
                    nets.push(net);
                }
                Ok(nets)
            }
        }
        deserializer.deserialize_seq(List)
    }
}

/// A `database` value: a `postgres://` URL as given, or an SQLite file
/// (`sqlite://PATH` or a plain path) made absolute against the
/// configuration file's directory; `""` stays `""` (the default place).
/// What it names is checked by the crate that opens it.
pub mod database {
    use super::*;

    pub fn resolve(text: &str) -> String {
        let lower = text.to_ascii_lowercase();
        if text.is_empty() || lower.starts_with("postgres://") || lower.starts_with("postgresql://")
        {
            return text.to_owned();
        }
        match text.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() && !path.starts_with(':') => {
                let (file, query) = match path.split_once('?') {
                    Some((file, query)) => (file, format!("?{query}")),
                    None => (path, String::new()),
                };
                format!(
                    "sqlite://{}{query}",
                    crate::document::resolve(file).display()
                )
            }
            Some(_) => text.to_owned(),
            None if text.contains("://") => text.to_owned(),
            None => crate::document::resolve(text).display().to_string(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        Ok(resolve(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_sizes_and_ports() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "m", "5x", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8 parsecs").is_err());
        assert_eq!(parse_ports("50000-50100"), Ok(50000..=50100));
        for bad in ["50100-50000", "0-5", "x", "5"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_paths_resolve_against_the_file() {
        let doc = crate::Document::parse("", None, PathBuf::from("/etc/wharf"), &[]).unwrap();
        doc.read_sections(|| {
            for (given, expected) in [
                ("", ""),
                ("users.db", "/etc/wharf/users.db"),
                ("/var/u.db", "/var/u.db"),
                ("sqlite://u.db?mode=ro", "sqlite:///etc/wharf/u.db?mode=ro"),
                ("sqlite:///abs.db", "sqlite:///abs.db"),
                ("postgres://w:s@db/w", "postgres://w:s@db/w"),
                ("mysql://h/db", "mysql://h/db"),
            ] {
                assert_eq!(database::resolve(given), expected, "{given}");
            }
        });
    }
}
