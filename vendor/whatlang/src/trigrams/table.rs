//! Trigram tables laid out for 32-bit targets such as WebAssembly.
//!
//! The upstream crate counts a text's trigrams in a `hashbrown` map and
//! looks every trigram of every language profile up in it: about 300
//! lookups per language, each hashed with foldhash, whose 64×64→128-bit
//! multiply is emulated on `wasm32`. Here a map hashes with 32-bit
//! multiplies only, and each script's profiles are inverted once into
//! trigram → (language, rank) postings, so a text costs one lookup per
//! ranked trigram whatever the number of languages.

use super::{LangProfileList, Trigram};

/// An open-addressing map from trigrams to dense indices, hashed with
/// 32-bit arithmetic and probed linearly. Each index has a random seed, so
/// no text can be crafted whose trigrams all collide; nothing computed from
/// an index depends on its hash order.
#[derive(Debug)]
pub(crate) struct TrigramIndex {
    /// `0` for an empty slot, otherwise the key's index plus one.
    slots: Vec<u32>,
    keys: Vec<Trigram>,
    seed: u32,
}

impl TrigramIndex {
    /// An index sized for about `n` keys before it grows.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let slots = (n.max(8) * 2).next_power_of_two();
        TrigramIndex {
            slots: vec![0; slots],
            keys: Vec::with_capacity(n),
            seed: random_seed(),
        }
    }

    /// The number of keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys, in the order of their indices.
    pub(crate) fn keys(&self) -> &[Trigram] {
        &self.keys
    }

    #[inline]
    fn hash(&self, t: &Trigram) -> u32 {
        const K: u32 = 0x9E37_79B1;
        let mut h = (self.seed ^ t.0 as u32).wrapping_mul(K);
        h = (h.rotate_left(5) ^ t.1 as u32).wrapping_mul(K);
        h = (h.rotate_left(5) ^ t.2 as u32).wrapping_mul(K);
        h ^ (h >> 15)
    }

    /// The slot holding `t`, or the empty slot where it would go.
    #[inline]
    fn slot(&self, t: &Trigram) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.hash(t) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return i,
                k if self.keys[k as usize - 1] == *t => return i,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The index of `t`, if it is a key.
    #[inline]
    pub(crate) fn get(&self, t: &Trigram) -> Option<usize> {
        match self.slots[self.slot(t)] {
            0 => None,
            k => Some(k as usize - 1),
        }
    }

    /// The index of `t`, which becomes a key (with the next index) when it
    /// is not one yet.
    // Always inlined: a text calls it once per character, and in
    // WebAssembly every call made also checks the call's deadline.
    #[inline(always)]
    pub(crate) fn insert(&mut self, t: Trigram) -> usize {
        let i = self.slot(&t);
        if self.slots[i] != 0 {
            return self.slots[i] as usize - 1;
        }
        self.keys.push(t);
        self.slots[i] = self.keys.len() as u32;
        if self.keys.len() * 2 > self.slots.len() {
            self.grow();
        }
        self.keys.len() - 1
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let mut slots = vec![0u32; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (k, t) in self.keys.iter().enumerate() {
            let mut i = self.hash(t) as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = k as u32 + 1;
        }
        self.slots = slots;
    }
}

/// A seed from the standard library's randomly keyed hasher.
fn random_seed() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5EED_u32) as u32
}

/// One script's language profiles, inverted: for every trigram, the
/// languages whose profile has it and its rank there.
#[derive(Debug)]
pub(crate) struct InvertedProfiles {
    index: TrigramIndex,
    /// Postings of key `k`: `postings[starts[k]..starts[k + 1]]`.
    starts: Vec<u32>,
    /// (language's position in the profile list, rank in its profile).
    postings: Vec<(u16, u16)>,
}

impl InvertedProfiles {
    pub(crate) fn new(list: LangProfileList) -> Self {
        let total: usize = list.iter().map(|(_, p)| p.len()).sum();
        let mut index = TrigramIndex::with_capacity(total / 2);
        let mut keyed = Vec::with_capacity(total);
        for (l, (_, profile)) in list.iter().enumerate() {
            for (rank, &t) in profile.iter().enumerate() {
                keyed.push((index.insert(t), l as u16, rank as u16));
            }
        }
        // A counting sort of the postings by key.
        let mut starts = vec![0u32; index.len() + 1];
        for &(k, _, _) in &keyed {
            starts[k + 1] += 1;
        }
        for k in 0..index.len() {
            starts[k + 1] += starts[k];
        }
        let mut next = starts.clone();
        let mut postings = vec![(0u16, 0u16); keyed.len()];
        for (k, l, rank) in keyed {
            postings[next[k] as usize] = (l, rank);
            next[k] += 1;
        }
        InvertedProfiles {
            index,
            starts,
            postings,
        }
    }

    /// The (language position, rank) pairs of `t`; empty when no profile
    /// has it.
    #[inline]
    pub(crate) fn postings(&self, t: &Trigram) -> &[(u16, u16)] {
        match self.index.get(t) {
            Some(k) => &self.postings[self.starts[k] as usize..self.starts[k + 1] as usize],
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_keeps_every_key_across_growth() {
        let mut index = TrigramIndex::with_capacity(1);
        let keys: Vec<Trigram> = "abcdefghijklmnopqrstuvwxyzäöüßéèàçñ"
            .chars()
            .flat_map(|a| ['x', ' ', 'я'].map(move |b| Trigram(a, b, ' ')))
            .collect();
        for (i, &t) in keys.iter().enumerate() {
            assert_eq!(index.insert(t), i);
            assert_eq!(index.insert(t), i, "inserting again keeps the index");
        }
        for (i, t) in keys.iter().enumerate() {
            assert_eq!(index.get(t), Some(i));
        }
        assert_eq!(index.get(&Trigram('q', 'q', 'q')), None);
        assert_eq!(index.keys(), &keys[..]);
    }

    #[test]
    fn inverted_profiles_list_every_rank() {
        let inverted = InvertedProfiles::new(super::super::LATIN_LANGS);
        for (l, (_, profile)) in super::super::LATIN_LANGS.iter().enumerate() {
            for (rank, t) in profile.iter().enumerate() {
                assert!(
                    inverted.postings(t).contains(&(l as u16, rank as u16)),
                    "{t:?}"
                );
            }
        }
    }
}
