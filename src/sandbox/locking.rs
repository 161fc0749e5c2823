//! How the sandbox takes its locks. Apart from `vendor.rs` so that the parts
//! `vendor::Shared` holds (the request log) can lock without importing it.

use std::sync::{Mutex, MutexGuard};

/// A lock that survives a panicked holder: the sandbox state stays usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
