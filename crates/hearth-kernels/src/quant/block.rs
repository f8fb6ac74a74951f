//! Block plumbing: decoding `#[repr(C)]` block structs from unaligned
//! little-endian bytes, encoding them back, and running a per-block function
//! over whole rows.

/// A ggml quantization block. `BYTES` equals `size_of::<Self>()` (checked by
/// a `const` assertion next to every block type).
pub trait Block: Sized {
    /// Weights per block.
    const VALUES: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Decodes one block from the first `BYTES` bytes of `bytes` (any
    /// alignment; every byte pattern is a valid block).
    ///
    /// # Panics
    /// If `bytes` is shorter than `BYTES`.
    fn decode(bytes: &[u8]) -> Self;
    /// Encodes the block into the first `BYTES` bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than `BYTES`.
    fn encode(&self, out: &mut [u8]);
}

/// Sequential little-endian reader over a block's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    #[inline]
    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        out
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    #[inline]
    pub(crate) fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.bytes())
    }

    #[inline]
    pub(crate) fn i8s<const N: usize>(&mut self) -> [i8; N] {
        self.bytes::<N>().map(|b| b as i8)
    }

    #[inline]
    pub(crate) fn u16s<const N: usize>(&mut self) -> [u16; N] {
        let mut out = [0u16; N];
        for v in &mut out {
            *v = self.u16();
        }
        out
    }

    #[inline]
    pub(crate) fn i16s<const N: usize>(&mut self) -> [i16; N] {
        self.u16s::<N>().map(|v| v as i16)
    }
}

/// Sequential little-endian writer into a block's bytes.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
}

impl<'a> Writer<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf }
    }

    #[inline]
    pub(crate) fn bytes(&mut self, src: &[u8]) {
        let (head, rest) = std::mem::take(&mut self.buf).split_at_mut(src.len());
        head.copy_from_slice(src);
        self.buf = rest;
    }

    #[inline]
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    #[inline]
    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    #[inline]
    pub(crate) fn f32(&mut self, v: f32) {
        self.bytes(&v.to_le_bytes());
    }

    #[inline]
    pub(crate) fn i8s(&mut self, v: &[i8]) {
        for &x in v {
            self.u8(x as u8);
        }
    }

    #[inline]
    pub(crate) fn u16s(&mut self, v: &[u16]) {
        for &x in v {
            self.u16(x);
        }
    }

    #[inline]
    pub(crate) fn i16s(&mut self, v: &[i16]) {
        for &x in v {
            self.u16(x as u16);
        }
    }
}

/// Implements [`Block`] for a struct by listing its fields in order with the
/// reader/writer method that handles each.
macro_rules! impl_block {
    ($ty:ident, $values:expr, { $($field:ident: $read:ident / $write:ident),* $(,)? }) => {
        impl $crate::quant::block::Block for $ty {
            const VALUES: usize = $values;
            const BYTES: usize = ::std::mem::size_of::<$ty>();

            #[inline]
            fn decode(bytes: &[u8]) -> Self {
                let mut r = $crate::quant::block::Reader::new(bytes);
                $( let $field = r.$read(); )*
                $ty { $($field),* }
            }

            #[inline]
            fn encode(&self, out: &mut [u8]) {
                let mut w = $crate::quant::block::Writer::new(out);
                $( impl_block!(@write w, self.$field, $write); )*
            }
        }
    };
    (@write $w:ident, $v:expr, bytes) => { $w.bytes(&$v) };
    (@write $w:ident, $v:expr, i8s) => { $w.i8s(&$v) };
    (@write $w:ident, $v:expr, u16s) => { $w.u16s(&$v) };
    (@write $w:ident, $v:expr, i16s) => { $w.i16s(&$v) };
    (@write $w:ident, $v:expr, u8) => { $w.u8($v) };
    (@write $w:ident, $v:expr, u16) => { $w.u16($v) };
    (@write $w:ident, $v:expr, f32) => { $w.f32($v) };
}
pub(crate) use impl_block;

/// Runs `f` on every block of `src`, writing `B::VALUES` floats per block.
/// Lengths are validated by the caller; extra bytes or values are ignored.
#[inline]
pub(crate) fn dequantize_blocks<B: Block>(src: &[u8], dst: &mut [f32], f: impl Fn(&B, &mut [f32])) {
    for (bytes, out) in src
        .chunks_exact(B::BYTES)
        .zip(dst.chunks_exact_mut(B::VALUES))
    {
        f(&B::decode(bytes), out);
    }
}

/// Runs `f` on every `B::VALUES` floats of `src`, encoding each block.
#[inline]
pub(crate) fn quantize_blocks<B: Block>(
    src: &[f32],
    dst: &mut [u8],
    mut f: impl FnMut(&[f32]) -> B,
) {
    for (x, out) in src
        .chunks_exact(B::VALUES)
        .zip(dst.chunks_exact_mut(B::BYTES))
    {
        f(x).encode(out);
    }
}
