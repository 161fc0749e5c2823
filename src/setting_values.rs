//! Parsers for setting values that the command line and the tenants file
//! share: durations written like `30s`, base URLs, secret files. They sit
//! below both `tenant` and `config`, so that each reads values the same way.

use std::{path::Path, time::Duration};
use url::Url;

/// Parses `30s`, `15m`, `250ms`, ... into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 30s or 15m: {e}"))
}

/// An `http(s)` URL with a host and neither query nor fragment, to which
/// endpoint paths are appended.
pub fn parse_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{text}` must be an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    Ok(url)
}

/// A secret file's content without the trailing newline that secret mounts
/// and editors add, which is not part of the secret.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// `value`, unless it is zero.
pub fn positive(value: Duration) -> Result<Duration, String> {
    if value.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(value)
}

/// `value`, unless it is zero or has a fraction of a second (the vendor
/// counts validity in whole seconds).
pub fn whole_seconds(value: Duration) -> Result<Duration, String> {
    if value.subsec_nanos() != 0 || value.is_zero() {
        return Err("must be a whole, positive number of seconds".into());
    }
    Ok(value)
}

/// Durations in the tenants file are written like the flags: `"15m"`.
pub mod optional_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes an optional duration the way it is read, e.g. `"15m"`.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => s.serialize_str(&humantime::format_duration(*duration).to_string()),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration string with [`super::parse_duration`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_need_a_web_scheme_and_a_host_and_no_query() {
        assert!(parse_base_url("https://broker.example.com/api").is_ok());
        for bad in ["nope", "ftp://host.example", "https://host.example/?a=1", "https://host.example/#x"] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_seconds_refuse_fractions_and_zero() {
        assert!(whole_seconds(Duration::from_secs(60)).is_ok());
        assert!(whole_seconds(Duration::from_millis(1500)).is_err());
        assert!(whole_seconds(Duration::ZERO).is_err());
    }
}
