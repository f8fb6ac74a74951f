//! A small, fast, non-cryptographic hash (the Fx hash used by rustc) and a
//! byte-string interner built on it. Token texts are short and hashed in the
//! hot loop of every tokenizer, where SipHash would dominate the profile.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The Fx hash: multiply-rotate over 8-byte words.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i.into());
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub(crate) type FxHashSet<K> = HashSet<K, FxBuild>;

#[inline]
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    // Mix the high bits down: the table index uses the low bits.
    // Fx leaves the low bits weak; fold the high bits down (murmur3 finalizer).
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Byte strings stored back to back, each with a dense id, and an
/// open-addressing index from content to id. Ids are assigned in insertion
/// order, so inserting a vocabulary first makes string id == token id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    bytes: Vec<u8>,
    /// `ends[i]` is the end of string `i` in `bytes`; it starts at `ends[i-1]`.
    ends: Vec<u32>,
    /// Each slot holds `(high 32 bits of the hash) << 32 | (id + 1)`, 0 when
    /// empty, so most mismatches are rejected without touching the strings.
    /// The length is a power of two.
    slots: Vec<u64>,
}

impl Interner {
    pub(crate) fn with_capacity(n: usize, total_bytes: usize) -> Self {
        let mut s = Interner {
            bytes: Vec::with_capacity(total_bytes),
            ends: Vec::with_capacity(n),
            slots: Vec::new(),
        };
        s.rehash((n * 2).next_power_of_two().max(16));
        s
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The string with id `id`.
    #[inline]
    pub(crate) fn get_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let end = self.ends[i] as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..end]
    }

    /// The id of `s`, if interned.
    #[inline]
    pub(crate) fn get(&self, s: &[u8]) -> Option<u32> {
        let h = hash_bytes(s);
        let tag = h >> 32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            let id = (slot as u32).wrapping_sub(1);
            if slot >> 32 == tag && self.get_bytes(id) == s {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Interns `s`: `(id, true)` if it was new, `(existing id, false)` otherwise.
    pub(crate) fn insert(&mut self, s: &[u8]) -> (u32, bool) {
        if let Some(id) = self.get(s) {
            return (id, false);
        }
        if (self.ends.len() + 1) * 2 > self.slots.len() {
            self.rehash(self.slots.len() * 2);
        }
        let id = self.ends.len() as u32;
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len() as u32);
        self.place(id);
        (id, true)
    }

    fn place(&mut self, id: u32) {
        let h = hash_bytes(self.get_bytes(id));
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (h & !0xFFFF_FFFF) | u64::from(id + 1);
    }

    fn rehash(&mut self, size: usize) {
        self.slots = vec![0; size];
        for id in 0..self.ends.len() as u32 {
            self.place(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_round_trips_and_dedups() {
        let mut t = Interner::with_capacity(2, 0);
        let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.insert(w.as_bytes()), (i as u32, true));
        }
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(w.as_bytes()), Some(i as u32));
            assert_eq!(t.get_bytes(i as u32), w.as_bytes());
            assert_eq!(t.insert(w.as_bytes()), (i as u32, false));
        }
        assert_eq!(t.get(b"nope"), None);
        assert_eq!(t.insert(b""), (1000, true));
        assert_eq!(t.get(b""), Some(1000));
    }
}
