//! The `Authorization` header of a tenant's Broker-API calls, built from the
//! tenant's API key at each call: a key read from a file follows the file, so
//! the next vendor call after a rotation carries the new key, with no restart.

use http::HeaderValue;

use super::outgoing::authorization;
use crate::{reloadable::SecretFile, tenant::AuthScheme};

/// A tenant's API key and the scheme the vendor expects it in.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    key: SecretFile,
    scheme: AuthScheme,
}

impl Authorization {
    /// Checks that the key as it is now makes a valid header value.
    pub(crate) fn new(key: &SecretFile, scheme: AuthScheme) -> Result<Self, String> {
        authorization(&key.current(), scheme)?;
        Ok(Self { key: key.clone(), scheme })
    }

    /// The header value of the key now, marked sensitive so that it never
    /// shows in debug output.
    pub(crate) fn current(&self) -> HeaderValue {
        // A key is checked before it replaces another (see `tenant::read_api_key_file`),
        // so this holds; an empty value would be refused by the vendor, never leak.
        authorization(&self.key.current(), self.scheme).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn the_header_follows_the_key_and_its_scheme() {
        let key = SecretFile::from_file(SecretString::from("old"), "/key".into());
        let bearer = Authorization::new(&key, AuthScheme::Bearer).expect("valid");
        assert_eq!(bearer.current(), "Bearer old");
        key.replace(SecretString::from("new"));
        assert_eq!(bearer.current(), "Bearer new");
        assert!(bearer.current().is_sensitive());
        assert!(Authorization::new(&SecretFile::from("bad\nkey"), AuthScheme::Raw).is_err());
    }
}
