//! Values read from files that may change while the process runs: a holder
//! whose readers take the current value at each use ([`Reloadable`]), and a
//! secret read from a file ([`SecretFile`]), such as a tenant's API key.
//! Who re-reads the files and when is `reload`'s job; this module only holds
//! the values, so that the layers below `reload` can read them.

use secrecy::SecretString;
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
};

/// A shared value that can be replaced as a whole. Readers get an `Arc` of
/// the value current at that moment and keep it for as long as they need:
/// a replacement never changes what a running call already holds.
pub struct Reloadable<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Reloadable<T> {
    pub fn new(value: impl Into<Arc<T>>) -> Self {
        Self { current: Arc::new(RwLock::new(value.into())) }
    }

    /// The value now. The lock is held only to clone an `Arc`.
    pub fn current(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the value for every later reader, in every clone of this holder.
    pub fn replace(&self, value: impl Into<Arc<T>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = value.into();
    }
}

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.current().fmt(f)
    }
}

/// A secret given inline (fixed) or read from a file (re-read when the file
/// changes). Clones share the value.
#[derive(Clone, Debug)]
pub struct SecretFile {
    value: Reloadable<SecretString>,
    path: Option<PathBuf>,
}

impl SecretFile {
    /// A secret read from `path`, `value` being its content now.
    pub fn from_file(value: SecretString, path: PathBuf) -> Self {
        Self { value: Reloadable::new(value), path: Some(path) }
    }

    /// The secret now: read it at each use, never keep it.
    pub fn current(&self) -> Arc<SecretString> {
        self.value.current()
    }

    /// The file it is read from; `None` when it was given inline.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Replaces the secret for every later use.
    pub fn replace(&self, value: SecretString) {
        self.value.replace(value);
    }
}

impl From<SecretString> for SecretFile {
    fn from(value: SecretString) -> Self {
        Self { value: Reloadable::new(value), path: None }
    }
}

impl From<&str> for SecretFile {
    fn from(value: &str) -> Self {
        SecretString::from(value.to_string()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn a_replacement_reaches_every_clone_but_not_a_value_already_taken() {
        let key = SecretFile::from_file(SecretString::from("old"), PathBuf::from("/k"));
        let clone = key.clone();
        let taken = key.current();
        clone.replace(SecretString::from("new"));
        assert_eq!(key.current().expose_secret(), "new");
        assert_eq!(taken.expose_secret(), "old", "a running call keeps what it had");
        assert!(!format!("{key:?}").contains("new"), "the secret never shows in debug output");
    }
}
