//! Code point classification and UTF-8 helpers with llama.cpp's semantics
//! (`src/unicode.cpp`): its category flags, its whitespace set, its lenient
//! UTF-8 decoder (one U+FFFD per bad byte), and GPT-2's byte-to-char map.

use std::sync::OnceLock;

use crate::unicode_tables::{FLAG_RANGES, LOWERCASE, NFD_RANGES, WHITESPACE};

/// One past the largest code point.
pub(crate) const MAX_CODEPOINTS: u32 = 0x11_0000;

/// Category and helper flags of a code point (llama.cpp's `unicode_cpt_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(pub(crate) u16);

impl Flags {
    pub(crate) const UNDEFINED: u16 = 0x0001;
    pub(crate) const NUMBER: u16 = 0x0002;
    pub(crate) const LETTER: u16 = 0x0004;
    pub(crate) const ACCENT_MARK: u16 = 0x0010;
    pub(crate) const PUNCTUATION: u16 = 0x0020;
    pub(crate) const SYMBOL: u16 = 0x0040;
    pub(crate) const CONTROL: u16 = 0x0080;
    pub(crate) const MASK_CATEGORIES: u16 = 0x00FF;
    pub(crate) const WHITESPACE: u16 = 0x0100;

    /// Flags of a position outside the text: nothing set.
    pub(crate) const NONE: Flags = Flags(0);

    #[inline]
    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    #[inline]
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    #[inline]
    pub(crate) fn is_accent_mark(self) -> bool {
        self.0 & Self::ACCENT_MARK != 0
    }
    #[inline]
    pub(crate) fn is_punctuation(self) -> bool {
        self.0 & Self::PUNCTUATION != 0
    }
    #[inline]
    pub(crate) fn is_symbol(self) -> bool {
        self.0 & Self::SYMBOL != 0
    }
    #[inline]
    pub(crate) fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }
    #[inline]
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// Any flag at all (false only outside the text).
    #[inline]
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }
    #[inline]
    pub(crate) fn category(self) -> u16 {
        self.0 & Self::MASK_CATEGORIES
    }
}

fn flag_table() -> &'static [u16] {
    static TABLE: OnceLock<Box<[u16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![Flags::UNDEFINED; MAX_CODEPOINTS as usize];
        for w in FLAG_RANGES.windows(2) {
            let (start, flags) = w[0];
            let end = w[1].0;
            t[start as usize..end as usize].fill(flags.into());
        }
        for &c in WHITESPACE.iter() {
            t[c as usize] |= Flags::WHITESPACE;
        }
        t.into_boxed_slice()
    })
}

/// Flags of code point `cpt`; UNDEFINED beyond U+10FFFF.
#[inline]
pub(crate) fn flags(cpt: u32) -> Flags {
    match flag_table().get(cpt as usize) {
        Some(&f) => Flags(f),
        None => Flags(Flags::UNDEFINED),
    }
}

/// llama.cpp's `unicode_tolower`: the simple lowercase mapping, or `cpt`.
pub(crate) fn to_lower(cpt: u32) -> u32 {
    if cpt < 0x80 {
        return (cpt as u8).to_ascii_lowercase().into();
    }
    match LOWERCASE.binary_search_by_key(&cpt, |&(c, _)| c) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => cpt,
    }
}

/// The first code point of the NFD decomposition of `cpt` (what llama.cpp's
/// `unicode_cpts_normalize_nfd` keeps), or `cpt`.
pub(crate) fn nfd_first(cpt: u32) -> u32 {
    let i = NFD_RANGES.partition_point(|&(first, _, _)| first <= cpt);
    if i == 0 {
        return cpt;
    }
    let (first, last, nfd) = NFD_RANGES[i - 1];
    if first <= cpt && cpt <= last {
        nfd
    } else {
        cpt
    }
}

/// CJK ideograph ranges (llama.cpp's `unicode_cpt_is_han`).
pub(crate) fn is_han(cpt: u32) -> bool {
    matches!(cpt,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0x2CEB0..=0x2EBEF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// Length of the UTF-8 sequence that `lead` starts, from its top four bits
/// alone (continuation and invalid bytes count as 1; 0xF8.. as 4).
#[inline]
pub(crate) fn utf8_len(lead: u8) -> usize {
    const LOOKUP: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(lead >> 4) as usize] as usize
}

/// Decodes one code point at `*pos` the way llama.cpp does (overlong forms
/// and surrogates accepted; no check beyond lead and continuation bits).
/// On a bad sequence returns U+FFFD and advances one byte.
#[inline]
pub(crate) fn decode_one(s: &[u8], pos: &mut usize) -> u32 {
    let i = *pos;
    let b0 = s[i];
    let cont = |k: usize| s.get(i + k).is_some_and(|&b| b & 0xC0 == 0x80);
    let (len, cpt) = if b0 & 0x80 == 0 {
        (1, u32::from(b0))
    } else if b0 & 0x40 == 0 {
        (0, 0)
    } else if b0 & 0x20 == 0 {
        if cont(1) {
            (2, (u32::from(b0 & 0x1F) << 6) | u32::from(s[i + 1] & 0x3F))
        } else {
            (0, 0)
        }
    } else if b0 & 0x10 == 0 {
        if cont(1) && cont(2) {
            (
                3,
                (u32::from(b0 & 0x0F) << 12)
                    | (u32::from(s[i + 1] & 0x3F) << 6)
                    | u32::from(s[i + 2] & 0x3F),
            )
        } else {
            (0, 0)
        }
    } else if b0 & 0x08 == 0 {
        if cont(1) && cont(2) && cont(3) {
            (
                4,
                (u32::from(b0 & 0x07) << 18)
                    | (u32::from(s[i + 1] & 0x3F) << 12)
                    | (u32::from(s[i + 2] & 0x3F) << 6)
                    | u32::from(s[i + 3] & 0x3F),
            )
        } else {
            (0, 0)
        }
    } else {
        (0, 0)
    };
    if len == 0 {
        *pos = i + 1;
        0xFFFD
    } else {
        *pos = i + len;
        cpt
    }
}

/// All code points of `s` (llama.cpp's `unicode_cpts_from_utf8`).
pub(crate) fn decode_lossy(s: &[u8], out: &mut Vec<u32>) {
    out.clear();
    out.reserve(s.len());
    let mut pos = 0;
    while pos < s.len() {
        if s[pos] < 0x80 {
            out.push(s[pos].into());
            pos += 1;
        } else {
            out.push(decode_one(s, &mut pos));
        }
    }
}

/// Appends the UTF-8 encoding of `cpt`. Surrogates are encoded like any
/// other code point; values beyond U+10FFFF (which llama.cpp cannot encode
/// and throws on) become U+FFFD.
#[inline]
pub(crate) fn push_utf8(cpt: u32, out: &mut Vec<u8>) {
    if cpt < 0x80 {
        out.push(cpt as u8);
    } else if cpt < 0x800 {
        out.extend_from_slice(&[0xC0 | (cpt >> 6) as u8, 0x80 | (cpt & 0x3F) as u8]);
    } else if cpt < 0x1_0000 {
        out.extend_from_slice(&[
            0xE0 | (cpt >> 12) as u8,
            0x80 | ((cpt >> 6) & 0x3F) as u8,
            0x80 | (cpt & 0x3F) as u8,
        ]);
    } else if cpt < MAX_CODEPOINTS {
        out.extend_from_slice(&[
            0xF0 | (cpt >> 18) as u8,
            0x80 | ((cpt >> 12) & 0x3F) as u8,
            0x80 | ((cpt >> 6) & 0x3F) as u8,
            0x80 | (cpt & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice("\u{FFFD}".as_bytes());
    }
}

/// GPT-2's byte-level alphabet: the printable byte values stand for
/// themselves, the other 68 are shifted to U+0100.. in byte order.
pub(crate) fn byte_to_char(b: u8) -> u32 {
    static MAP: OnceLock<[u32; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = [0u32; 256];
        let mut n = 0;
        for (b, m) in map.iter_mut().enumerate() {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            *m = if printable {
                b as u32
            } else {
                n += 1;
                255 + n
            };
        }
        map
    })[b as usize]
}

/// Inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(cpt: u32) -> Option<u8> {
    static MAP: OnceLock<Vec<(u32, u8)>> = OnceLock::new();
    let map = MAP.get_or_init(|| {
        let mut v: Vec<(u32, u8)> = (0..=255u8).map(|b| (byte_to_char(b), b)).collect();
        v.sort_unstable();
        v
    });
    map.binary_search_by_key(&cpt, |&(c, _)| c)
        .ok()
        .map(|i| map[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_match_llama_cpp_categories() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags(0x3000).is_whitespace());
        assert!(flags('!' as u32).is_punctuation());
        assert!(flags('$' as u32).is_symbol());
        assert!(flags(0x0301).is_accent_mark());
        assert!(flags(0x200D).is_control());
        assert_eq!(flags(0x10_FFFF + 5), Flags(Flags::UNDEFINED));
    }

    #[test]
    fn lenient_decoder_replaces_each_bad_byte() {
        let mut v = Vec::new();
        decode_lossy(b"a\xE2\x82b\xFF\xC3\xA9", &mut v);
        assert_eq!(v, vec![0x61, 0xFFFD, 0xFFFD, 0x62, 0xFFFD, 0xE9]);
        // Overlong forms are accepted, as in llama.cpp.
        decode_lossy(b"\xC0\x80", &mut v);
        assert_eq!(v, vec![0]);
    }

    #[test]
    fn byte_alphabet_round_trips() {
        assert_eq!(byte_to_char(b'!'), '!' as u32);
        assert_eq!(byte_to_char(b' '), 0x120); // 'Ġ'
        assert_eq!(byte_to_char(b'\n'), 0x10A); // 'Ċ'
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
    }

    #[test]
    fn case_and_nfd() {
        assert_eq!(to_lower('A' as u32), 'a' as u32);
        assert_eq!(to_lower(0xC4), 0xE4);
        assert_eq!(nfd_first(0xE9), 'e' as u32);
        assert_eq!(nfd_first('x' as u32), 'x' as u32);
    }
}
