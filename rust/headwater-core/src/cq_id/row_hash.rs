//! From a row's key string to its `_cq_id`: SHA-256 of the string, then the UUIDv5 of that
//! digest (SHA-1 over 16 zero bytes and the digest).
//!
//! Each row costs one SHA-256 and one SHA-1 compression when its key string fits one block
//! (55 bytes or fewer, which is nearly every key). With the x86 SHA extensions a compression
//! is a chain of dependent `sha256rnds2` / `sha1rnds4` instructions, so one row at a time is
//! bound by the instructions' latency while the hashing unit could start another every cycle
//! or two. [`RowHasher`] therefore collects [`LANES`] one-block rows and compresses them in
//! lockstep, each instruction of one row next to the same instruction of the other, which
//! keeps the unit busy. Two lanes, not more: a third and fourth row's state no longer fit the
//! 16 vector registers, and the spills cost what the overlap gains. Longer keys, a row left
//! over at the end, and CPUs without the SHA extensions take the one-row-at-a-time path of the
//! `sha2`/`sha1` crates (which use SHA-NI or ARMv8 crypto instructions themselves where
//! present).

use sha2::digest::generic_array::GenericArray;

/// How many one-block rows are compressed together on the SHA-NI path.
pub(super) const LANES: usize = 2;

/// The longest key string that fits one SHA-256 block with its padding.
const ONE_BLOCK_MAX: usize = 55;

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-1's initial state.
const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// Turns key strings into ids, [`LANES`] at a time where the CPU has the SHA extensions.
///
/// Feed rows with [`RowHasher::push`] and call [`RowHasher::finish`] once at the end: a pushed
/// row's id may only be written to `out` at a later push or at `finish`.
#[derive(Debug)]
pub(super) struct RowHasher {
    /// Present when this hasher interleaves rows (the CPU has the SHA extensions).
    sha_ni: Option<interleaved::ShaNi>,
    /// Padded blocks of the rows waiting for a full group.
    blocks: [[u8; 64]; LANES],
    /// Where each waiting row's id goes in `out`.
    slots: [usize; LANES],
    waiting: usize,
}

impl RowHasher {
    /// A hasher that interleaves rows when this CPU can.
    pub(super) fn new() -> Self {
        Self::with_interleaving(true)
    }

    /// A hasher that interleaves rows only if `interleave` (and the CPU can); tests compare both.
    pub(super) fn with_interleaving(interleave: bool) -> Self {
        Self {
            sha_ni: interleaved::ShaNi::detect().filter(|_| interleave),
            blocks: [[0; 64]; LANES],
            slots: [0; LANES],
            waiting: 0,
        }
    }

    /// Hashes `key`, the row's key string, into `out[16 * slot..][..16]`. `key` is scratch
    /// space: it may be padded in place.
    pub(super) fn push(&mut self, key: &mut Vec<u8>, slot: usize, out: &mut [u8]) {
        let Some(sha_ni) = self.sha_ni.filter(|_| key.len() <= ONE_BLOCK_MAX) else {
            out[16 * slot..][..16].copy_from_slice(&uuid5_of_digest(&sha256_padding_in_place(key)));
            return;
        };
        let block = &mut self.blocks[self.waiting];
        // Zeroing the whole block is a few fixed stores; zeroing just the tail would be a
        // call to `memset` for every row.
        *block = [0; 64];
        block[..key.len()].copy_from_slice(key);
        block[key.len()] = 0x80;
        block[56..].copy_from_slice(&(key.len() as u64 * 8).to_be_bytes());
        self.slots[self.waiting] = slot;
        self.waiting += 1;
        if self.waiting == LANES {
            let ids = sha_ni.ids(&self.blocks);
            for (id, &slot) in ids.iter().zip(&self.slots) {
                out[16 * slot..][..16].copy_from_slice(id);
            }
            self.waiting = 0;
        }
    }

    /// Writes the ids of the rows still waiting for a full group.
    pub(super) fn finish(&mut self, out: &mut [u8]) {
        for (block, &slot) in self.blocks[..self.waiting].iter().zip(&self.slots) {
            out[16 * slot..][..16].copy_from_slice(&uuid5_of_digest(&sha256_of_block(block)));
        }
        self.waiting = 0;
    }
}

/// SHA-256 of `message`, which is padded in place (its contents are garbage afterwards) and fed
/// to the compression function block by block. A row's key string is usually a single block,
/// where the streaming API's buffering and copying cost about as much as the (SHA-NI
/// accelerated) compression itself.
fn sha256_padding_in_place(message: &mut Vec<u8>) -> [u8; 32] {
    let bits = (message.len() as u64).wrapping_mul(8);
    message.push(0x80);
    let padded = (message.len() + 8).next_multiple_of(64);
    message.resize(padded - 8, 0);
    message.extend_from_slice(&bits.to_be_bytes());
    let mut state = SHA256_IV;
    for block in message.chunks_exact(64) {
        sha2::compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(block)),
        );
    }
    digest_bytes(state)
}

/// SHA-256 of a message already padded into one block.
fn sha256_of_block(block: &[u8; 64]) -> [u8; 32] {
    let mut state = SHA256_IV;
    sha2::compress256(&mut state, &[GenericArray::from(*block)]);
    digest_bytes(state)
}

fn digest_bytes(state: [u32; 8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// UUIDv5 of a SHA-256 digest in the all-zero namespace (Go's
/// `uuid.NewSHA1(uuid.UUID{}, digest)`): SHA-1 over 16 zero bytes and the 32-byte digest,
/// which with its padding is exactly one block.
fn uuid5_of_digest(digest: &[u8; 32]) -> [u8; 16] {
    let mut block = [0u8; 64];
    block[16..48].copy_from_slice(digest);
    block[48] = 0x80;
    block[56..].copy_from_slice(&(48u64 * 8).to_be_bytes());
    let mut state = SHA1_IV;
    sha1::compress(&mut state, &[GenericArray::from(block)]);
    let mut id = [0u8; 16];
    for (out, word) in id.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    set_version_and_variant(&mut id);
    id
}

/// Marks a SHA-1 prefix as a version 5, RFC 4122 variant UUID.
fn set_version_and_variant(id: &mut [u8; 16]) {
    id[6] = (id[6] & 0x0f) | 0x50;
    id[8] = (id[8] & 0x3f) | 0x80;
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod interleaved {
    //! The SHA-NI path: [`LANES`] one-block rows hashed in lockstep.
    //!
    //! The register layouts follow Intel's SHA extensions: SHA-256 keeps its state as the word
    //! pairs ABEF and CDGH, SHA-1 as ABCD (A in the highest lane) plus E. A row's SHA-256
    //! state words are big-endian digest words, which is exactly how SHA-1 reads its message,
    //! so the digest goes from one to the other in registers, without a byte swap.

    use core::arch::x86_64::*;

    use super::{set_version_and_variant, LANES, SHA1_IV, SHA256_IV};

    /// SHA-256's round constants.
    #[rustfmt::skip]
    const K256: [u32; 64] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5,
        0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3,
        0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc,
        0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7,
        0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13,
        0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3,
        0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5,
        0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208,
        0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ];

    /// Proof that this CPU has the instructions [`ShaNi::ids`] uses: only [`ShaNi::detect`]
    /// makes one.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct ShaNi(());

    impl ShaNi {
        /// `Some` when the CPU has the SHA extensions and the SSE levels used with them.
        pub(super) fn detect() -> Option<Self> {
            let present = is_x86_feature_detected!("sha")
                && is_x86_feature_detected!("sse2")
                && is_x86_feature_detected!("ssse3")
                && is_x86_feature_detected!("sse4.1");
            present.then_some(Self(()))
        }

        /// The ids of [`LANES`] rows whose key strings are already padded into one block each.
        pub(super) fn ids(self, blocks: &[[u8; 64]; LANES]) -> [[u8; 16]; LANES] {
            // SAFETY: a `ShaNi` exists only where `detect` found every target feature that
            // `ids_sha_ni` enables.
            unsafe { ids_sha_ni(blocks) }
        }
    }

    /// `_mm_set_epi32` from `u32`s, highest lane first.
    #[inline(always)]
    unsafe fn lanes_high_first(l3: u32, l2: u32, l1: u32, l0: u32) -> __m128i {
        _mm_set_epi32(l3 as i32, l2 as i32, l1 as i32, l0 as i32)
    }

    // The lanes run in lockstep over several arrays of registers; indexing them by lane is the
    // point, not an iterator chain.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn ids_sha_ni(blocks: &[[u8; 64]; LANES]) -> [[u8; 16]; LANES] {
        // --- SHA-256 of each block.
        // Message words are big-endian; this shuffle byte-swaps each 32-bit lane.
        let byte_swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let iv = SHA256_IV;
        let iv_abef = lanes_high_first(iv[0], iv[1], iv[4], iv[5]);
        let iv_cdgh = lanes_high_first(iv[2], iv[3], iv[6], iv[7]);
        let mut abef = [iv_abef; LANES];
        let mut cdgh = [iv_cdgh; LANES];
        // The last four message quads W[4q..4q+4], W[4q] in the lowest lane.
        let mut w = [[_mm_setzero_si128(); 4]; LANES];
        for l in 0..LANES {
            let block = blocks[l].as_ptr().cast::<__m128i>();
            for q in 0..4 {
                w[l][q] = _mm_shuffle_epi8(_mm_loadu_si128(block.add(q)), byte_swap);
            }
        }
        // Rounds 4q..4q+4 of every lane. `q` is a literal at each use, so the indexing below
        // folds to fixed registers.
        macro_rules! sha256_quad {
            ($q:literal) => {{
                const Q: usize = $q;
                let k = _mm_loadu_si128(K256.as_ptr().add(4 * Q).cast::<__m128i>());
                for l in 0..LANES {
                    if Q >= 4 {
                        // W[4q..] from W[4q-16..], W[4q-12..], W[4q-8..] and W[4q-4..].
                        let (older, old, recent, last) = (
                            w[l][Q % 4],
                            w[l][(Q + 1) % 4],
                            w[l][(Q + 2) % 4],
                            w[l][(Q + 3) % 4],
                        );
                        let mixed = _mm_add_epi32(
                            _mm_sha256msg1_epu32(older, old),
                            _mm_alignr_epi8(last, recent, 4),
                        );
                        w[l][Q % 4] = _mm_sha256msg2_epu32(mixed, last);
                    }
                    let words = _mm_add_epi32(w[l][Q % 4], k);
                    cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], words);
                    abef[l] =
                        _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(words, 0x0e));
                }
            }};
        }
        sha256_quad!(0);
        sha256_quad!(1);
        sha256_quad!(2);
        sha256_quad!(3);
        sha256_quad!(4);
        sha256_quad!(5);
        sha256_quad!(6);
        sha256_quad!(7);
        sha256_quad!(8);
        sha256_quad!(9);
        sha256_quad!(10);
        sha256_quad!(11);
        sha256_quad!(12);
        sha256_quad!(13);
        sha256_quad!(14);
        sha256_quad!(15);

        // --- SHA-1 over 16 zero bytes, the digest and the padding: message words W0..W3 are
        // zero, W4..W11 are the digest's words H0..H7, W12 is the 0x80 marker, W15 the length
        // (384 bits). SHA-1 keeps W[4q] in the highest lane.
        let abcd_iv = lanes_high_first(SHA1_IV[0], SHA1_IV[1], SHA1_IV[2], SHA1_IV[3]);
        let e_iv = lanes_high_first(SHA1_IV[4], 0, 0, 0);
        let mut m = [[_mm_setzero_si128(); 4]; LANES];
        for l in 0..LANES {
            // A B E F and C D G H, highest lane first.
            let abef = _mm_add_epi32(abef[l], iv_abef);
            let cdgh = _mm_add_epi32(cdgh[l], iv_cdgh);
            m[l][1] = _mm_unpackhi_epi64(cdgh, abef); // A B C D
            m[l][2] = _mm_unpacklo_epi64(cdgh, abef); // E F G H
            m[l][3] = lanes_high_first(0x8000_0000, 0, 0, 48 * 8);
        }
        let mut abcd = [abcd_iv; LANES];
        // E plus the next four message words, alternating between two registers as the
        // rounds hand E on (`sha1nexte`).
        let mut e_even = [e_iv; LANES];
        let mut e_odd = [_mm_setzero_si128(); LANES];
        // Rounds 4q..4q+4 of every lane; round function `q / 5`.
        macro_rules! sha1_quad {
            ($q:literal) => {{
                const Q: usize = $q;
                const ROUND_FUNCTION: i32 = (Q / 5) as i32;
                for l in 0..LANES {
                    if Q == 0 {
                        // E + W0..W3, and W0..W3 are zero.
                        e_odd[l] = abcd[l];
                        abcd[l] = _mm_sha1rnds4_epu32(abcd[l], e_even[l], 0);
                    } else if Q % 2 == 1 {
                        e_odd[l] = _mm_sha1nexte_epu32(e_odd[l], m[l][Q % 4]);
                        e_even[l] = abcd[l];
                        abcd[l] = _mm_sha1rnds4_epu32(abcd[l], e_odd[l], ROUND_FUNCTION);
                    } else {
                        e_even[l] = _mm_sha1nexte_epu32(e_even[l], m[l][Q % 4]);
                        e_odd[l] = abcd[l];
                        abcd[l] = _mm_sha1rnds4_epu32(abcd[l], e_even[l], ROUND_FUNCTION);
                    }
                    // Quad q + 1, q + 2 and q + 3 of the schedule each take one more step.
                    if (1..=16).contains(&Q) {
                        m[l][(Q + 3) % 4] = _mm_sha1msg1_epu32(m[l][(Q + 3) % 4], m[l][Q % 4]);
                    }
                    if (2..=17).contains(&Q) {
                        m[l][(Q + 2) % 4] = _mm_xor_si128(m[l][(Q + 2) % 4], m[l][Q % 4]);
                    }
                    if (3..=18).contains(&Q) {
                        m[l][(Q + 1) % 4] = _mm_sha1msg2_epu32(m[l][(Q + 1) % 4], m[l][Q % 4]);
                    }
                }
            }};
        }
        sha1_quad!(0);
        sha1_quad!(1);
        sha1_quad!(2);
        sha1_quad!(3);
        sha1_quad!(4);
        sha1_quad!(5);
        sha1_quad!(6);
        sha1_quad!(7);
        sha1_quad!(8);
        sha1_quad!(9);
        sha1_quad!(10);
        sha1_quad!(11);
        sha1_quad!(12);
        sha1_quad!(13);
        sha1_quad!(14);
        sha1_quad!(15);
        sha1_quad!(16);
        sha1_quad!(17);
        sha1_quad!(18);
        sha1_quad!(19);

        // The id is the first 16 bytes of the SHA-1 digest: H0..H3, so E is not needed.
        let mut ids = [[0u8; 16]; LANES];
        for l in 0..LANES {
            let h = _mm_add_epi32(abcd[l], abcd_iv);
            let h = _mm_shuffle_epi8(
                h,
                _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f),
            );
            _mm_storeu_si128(ids[l].as_mut_ptr().cast::<__m128i>(), h);
            set_version_and_variant(&mut ids[l]);
        }
        ids
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod interleaved {
    //! No interleaved path off x86-64: every row takes the `sha2`/`sha1` crates' path.

    use super::LANES;

    /// Never made: there is no SHA-NI path here.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum ShaNi {}

    impl ShaNi {
        pub(super) fn detect() -> Option<Self> {
            None
        }

        pub(super) fn ids(self, _blocks: &[[u8; 64]; LANES]) -> [[u8; 16]; LANES] {
            match self {}
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use sha1::Sha1;
    use sha2::{Digest, Sha256};

    use super::*;

    /// The id by the streaming APIs, as the definition reads (the `cq_id` tests use it too).
    pub(in crate::cq_id) fn reference_id(key: &[u8]) -> [u8; 16] {
        let digest = Sha256::digest(key);
        let hash = Sha1::new()
            .chain_update([0u8; 16])
            .chain_update(digest)
            .finalize();
        let mut id: [u8; 16] = hash[..16].try_into().unwrap();
        set_version_and_variant(&mut id);
        id
    }

    #[test]
    fn padded_sha256_matches_the_streaming_api_at_every_block_boundary() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let expected: [u8; 32] = Sha256::digest(&data[..len]).into();
            let mut message = data[..len].to_vec();
            assert_eq!(
                sha256_padding_in_place(&mut message),
                expected,
                "length {len}"
            );
        }
    }

    #[test]
    fn one_block_uuid5_matches_the_streaming_api() {
        for seed in 0..64u8 {
            let digest: [u8; 32] = std::array::from_fn(|i| seed.wrapping_mul(31) ^ i as u8);
            let hash = Sha1::new()
                .chain_update([0u8; 16])
                .chain_update(digest)
                .finalize();
            let id = uuid5_of_digest(&digest);
            assert_eq!(id[..6], hash[..6]);
            assert_eq!(id[6], (hash[6] & 0x0f) | 0x50);
            assert_eq!(id[7], hash[7]);
            assert_eq!(id[8], (hash[8] & 0x3f) | 0x80);
            assert_eq!(id[9..], hash[9..16]);
        }
    }

    /// Keys of every length from empty to three blocks, in an order that mixes one-block and
    /// longer keys inside the same group of lanes, hashed into shuffled slots.
    fn keys_and_slots() -> (Vec<Vec<u8>>, Vec<usize>) {
        let keys: Vec<Vec<u8>> = (0..1000usize)
            .map(|i| {
                let len = (i * 37) % 150;
                (0..len).map(|j| (i * 131 + j * 17) as u8).collect()
            })
            .collect();
        let slots = (0..keys.len()).map(|i| (i * 389) % keys.len()).collect();
        (keys, slots)
    }

    fn hash_all(hasher: &mut RowHasher, keys: &[Vec<u8>], slots: &[usize]) -> Vec<u8> {
        let mut out = vec![0u8; 16 * keys.len()];
        for (key, &slot) in keys.iter().zip(slots) {
            hasher.push(&mut key.clone(), slot, &mut out);
        }
        hasher.finish(&mut out);
        out
    }

    #[test]
    fn both_paths_give_the_reference_id_of_every_key_in_its_slot() {
        let (keys, slots) = keys_and_slots();
        for interleave in [false, true] {
            let out = hash_all(&mut RowHasher::with_interleaving(interleave), &keys, &slots);
            for (key, &slot) in keys.iter().zip(&slots) {
                assert_eq!(
                    out[16 * slot..][..16],
                    reference_id(key),
                    "interleave {interleave}, key of {} bytes",
                    key.len()
                );
            }
        }
    }

    #[test]
    fn design_vectors_through_both_paths() {
        // DESIGN.md's ids, each key pushed twice in a row so both lanes of a group hash it.
        let vectors: [(&[u8], [u8; 16]); 2] = [
            (
                b"account_idacct-123id42",
                0x8efb8158_fd03_5c3b_8e04_4df9c21be81d_u128.to_be_bytes(),
            ),
            (
                b"arnarn:aws:s3:::my-bucketregionus-east-1",
                0xaefcc7cb_024e_5b0e_ab66_2e99c3657615_u128.to_be_bytes(),
            ),
        ];
        let keys: Vec<Vec<u8>> = vectors
            .iter()
            .flat_map(|(key, _)| [key.to_vec(), key.to_vec()])
            .collect();
        let slots: Vec<usize> = (0..keys.len()).collect();
        for interleave in [false, true] {
            let out = hash_all(&mut RowHasher::with_interleaving(interleave), &keys, &slots);
            for (slot, id) in out.chunks_exact(16).enumerate() {
                assert_eq!(
                    id,
                    vectors[slot / 2].1,
                    "interleave {interleave}, row {slot}"
                );
            }
        }
    }

    #[test]
    fn a_hasher_is_reusable_after_finish_with_any_number_of_rows_left_over() {
        let (keys, _) = keys_and_slots();
        let one_block: Vec<Vec<u8>> = keys.into_iter().filter(|k| k.len() <= 55).collect();
        let mut hasher = RowHasher::new();
        for rows in 0..=2 * LANES + 1 {
            let keys = &one_block[rows..2 * rows];
            let slots: Vec<usize> = (0..rows).rev().collect();
            let out = hash_all(&mut hasher, keys, &slots);
            for (key, &slot) in keys.iter().zip(&slots) {
                assert_eq!(out[16 * slot..][..16], reference_id(key), "{rows} rows");
            }
        }
    }
}
