//! Hashes that stay the same across builds and Rust versions, for names and annotations written
//! to the cluster.

/// FNV-1a (64 bit).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}
