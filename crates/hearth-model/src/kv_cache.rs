//! The KV cache of one sequence: per layer, the K and V rows of every cached position, stored as
//! f16 (llama.cpp's default `-ctk f16 -ctv f16`) or Q8_0.
//!
//! Layers with a sliding window keep only the cells a future query can still see (at most
//! `window - 1` old cells plus the current batch), like llama.cpp's SWA cache. The cache knows the
//! context size and, when the caller asks for it, how many tokens a context shift keeps.

use hearth_gguf::GgmlType;
use hearth_kernels::quant::{self, f16_to_f32, f32_to_f16};

use crate::error::{ModelError, Result};

/// How K and V rows are stored (`--cache-type-k/-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Rounded to f16 when written (llama.cpp's default).
    #[default]
    F16,
    /// Quantized to Q8_0 blocks of 32 values when written. llama.cpp additionally rotates
    /// quantized caches with a Hadamard transform; hearth does not, so results with a Q8_0 cache
    /// are close to but not the same as llama.cpp's.
    Q8_0,
}

impl KvType {
    fn ggml(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
        }
    }
}

/// Part of a cached row, as stored or converted.
pub(crate) enum RowSlice<'a> {
    F16(&'a [u16]),
    F32(&'a [f32]),
}

/// Rows of one tensor (K or V) of one layer.
#[derive(Clone, Debug)]
pub(crate) struct KvRows {
    ty: KvType,
    width: usize,
    /// f16 bits, `width` per cell.
    f16: Vec<u16>,
    /// Q8_0 blocks, `width / 32 * 34` bytes per cell.
    q8: Vec<u8>,
}

impl KvRows {
    fn new(ty: KvType, width: usize) -> KvRows {
        KvRows {
            ty,
            width,
            f16: Vec::new(),
            q8: Vec::new(),
        }
    }

    /// The f16 values of every cell, `width` per cell, when the cache is f16.
    pub(crate) fn f16_cells(&self) -> Option<(&[u16], usize)> {
        (self.ty == KvType::F16).then_some((&self.f16, self.width))
    }

    fn row_bytes(&self) -> usize {
        self.width / 32 * 34
    }

    fn push(&mut self, row: &[f32]) {
        match self.ty {
            KvType::F16 => self.f16.extend(row.iter().map(|&x| f32_to_f16(x))),
            KvType::Q8_0 => {
                let start = self.q8.len();
                self.q8.resize(start + self.row_bytes(), 0);
                // Width is a multiple of 32 (checked when the cache is made).
                let _ = quant::quantize(GgmlType::Q8_0, row, &mut self.q8[start..]);
            }
        }
    }

    fn drain_front(&mut self, n_cells: usize) {
        match self.ty {
            KvType::F16 => {
                self.f16.drain(..n_cells * self.width);
            }
            KvType::Q8_0 => {
                let rb = self.row_bytes();
                self.q8.drain(..n_cells * rb);
            }
        }
    }

    fn remove_range(&mut self, cells: std::ops::Range<usize>) {
        match self.ty {
            KvType::F16 => {
                self.f16
                    .drain(cells.start * self.width..cells.end * self.width);
            }
            KvType::Q8_0 => {
                let rb = self.row_bytes();
                self.q8.drain(cells.start * rb..cells.end * rb);
            }
        }
    }

    /// Values `range` of cell `cell`, as f16 bits when the cache is f16 (no copy), else
    /// dequantized into `scratch`.
    pub(crate) fn slice<'a>(
        &'a self,
        cell: usize,
        range: std::ops::Range<usize>,
        scratch: &'a mut Vec<f32>,
    ) -> RowSlice<'a> {
        match self.ty {
            KvType::F16 => {
                let base = cell * self.width;
                RowSlice::F16(&self.f16[base + range.start..base + range.end])
            }
            KvType::Q8_0 => {
                // The whole blocks covering `range`.
                let rb = self.row_bytes();
                let (v0, v1) = (range.start / 32 * 32, range.end.div_ceil(32) * 32);
                let row = &self.q8[cell * rb..(cell + 1) * rb];
                scratch.resize(v1 - v0, 0.0);
                let _ =
                    quant::dequantize(GgmlType::Q8_0, &row[v0 / 32 * 34..v1 / 32 * 34], scratch);
                RowSlice::F32(&scratch[range.start - v0..range.end - v0])
            }
        }
    }

    /// Cell `cell` as f32.
    pub(crate) fn read(&self, cell: usize, out: &mut [f32]) {
        match self.ty {
            KvType::F16 => {
                let src = &self.f16[cell * self.width..(cell + 1) * self.width];
                out.iter_mut()
                    .zip(src)
                    .for_each(|(o, &h)| *o = f16_to_f32(h));
            }
            KvType::Q8_0 => {
                let rb = self.row_bytes();
                let _ = quant::dequantize(
                    GgmlType::Q8_0,
                    &self.q8[cell * rb..(cell + 1) * rb],
                    &mut out[..self.width],
                );
            }
        }
    }

    /// Every cell as f32, `width` values per cell.
    pub(crate) fn read_all(&self, n_cells: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(n_cells * self.width, 0.0);
        for (c, row) in out.chunks_exact_mut(self.width).enumerate() {
            self.read(c, row);
        }
    }

    fn write(&mut self, cell: usize, row: &[f32]) {
        match self.ty {
            KvType::F16 => {
                let dst = &mut self.f16[cell * self.width..(cell + 1) * self.width];
                dst.iter_mut()
                    .zip(row)
                    .for_each(|(d, &x)| *d = f32_to_f16(x));
            }
            KvType::Q8_0 => {
                let rb = self.row_bytes();
                let _ = quant::quantize(
                    GgmlType::Q8_0,
                    row,
                    &mut self.q8[cell * rb..(cell + 1) * rb],
                );
            }
        }
    }
}

/// The cache of one layer.
#[derive(Clone, Debug)]
pub(crate) struct LayerKv {
    /// Sliding window of the layer, if any.
    pub(crate) window: Option<usize>,
    /// Cells llama.cpp's cache for this layer has (`n_ctx`, or the smaller SWA cache), which
    /// bounds the KV view its attention kernels see.
    pub(crate) capacity: usize,
    /// Position of every cell, ascending.
    pub(crate) pos: Vec<i64>,
    pub(crate) k: KvRows,
    pub(crate) v: KvRows,
}

impl LayerKv {
    pub(crate) fn n_cells(&self) -> usize {
        self.pos.len()
    }

    /// Drops the cells no query at position `>= first_pos` can see through the window.
    pub(crate) fn evict_for(&mut self, first_pos: i64) {
        let Some(w) = self.window else { return };
        let min_visible = first_pos - w as i64 + 1;
        let n = self.pos.partition_point(|&p| p < min_visible);
        if n > 0 {
            self.pos.drain(..n);
            self.k.drain_front(n);
            self.v.drain_front(n);
        }
    }

    pub(crate) fn push(&mut self, pos: i64, k: &[f32], v: &[f32]) {
        self.pos.push(pos);
        self.k.push(k);
        self.v.push(v);
    }

    pub(crate) fn kv_type(&self) -> KvType {
        self.k.ty
    }
}

/// The KV cache of one sequence. Made by [`crate::Model::new_kv_cache`] for that model.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) n_ctx: usize,
    pub(crate) kv_type: KvType,
    /// Number of positions evaluated so far (the next token's position).
    pub(crate) n_past: usize,
    /// `Some(n_keep)`: shift the context instead of failing when it is full.
    pub(crate) context_shift: Option<usize>,
    pub(crate) layers: Vec<LayerKv>,
    /// Identity of the model the cache was made for: (K width, V width) of each layer.
    pub(crate) shape: Vec<(usize, usize)>,
}

impl KvCache {
    pub(crate) fn new(
        n_ctx: usize,
        kv_type: KvType,
        windows: &[Option<usize>],
        widths: &[(usize, usize)],
    ) -> Result<KvCache> {
        if n_ctx == 0 {
            return Err(ModelError::KvCache {
                reason: "context size 0".into(),
            });
        }
        let (bv, _) = quant::block_geometry(kv_type.ggml());
        for &(k_width, v_width) in widths {
            if !k_width.is_multiple_of(bv) || !v_width.is_multiple_of(bv) {
                return Err(ModelError::KvCache {
                    reason: format!(
                        "{:?} cache needs rows of whole blocks of {bv}; K has {k_width}, V {v_width}",
                        kv_type
                    ),
                });
            }
        }
        let layers = windows
            .iter()
            .zip(widths)
            .map(|(&window, &(k_width, v_width))| LayerKv {
                window,
                // llama_kv_cache_iswa: SWA caches hold window + n_ubatch cells, padded to 256.
                capacity: match window {
                    Some(w) => n_ctx.min(w + crate::model::N_UBATCH).div_ceil(256) * 256,
                    None => n_ctx,
                },
                pos: Vec::new(),
                k: KvRows::new(kv_type, k_width),
                v: KvRows::new(kv_type, v_width),
            })
            .collect();
        Ok(KvCache {
            n_ctx,
            kv_type,
            n_past: 0,
            context_shift: None,
            layers,
            shape: widths.to_vec(),
        })
    }

    /// Asks for llama.cpp's `--context-shift` behaviour: when a batch would overflow the context,
    /// keep the first `n_keep` tokens, discard the oldest half of the rest, and go on. Without
    /// it (the default), overflowing the context is an error.
    pub fn with_context_shift(mut self, n_keep: usize) -> KvCache {
        self.context_shift = Some(n_keep);
        self
    }

    /// Sets or clears the context shift (see [`KvCache::with_context_shift`]).
    pub fn set_context_shift(&mut self, n_keep: Option<usize>) {
        self.context_shift = n_keep;
    }

    /// The context size in tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Number of positions in the sequence so far (= position of the next token).
    pub fn len(&self) -> usize {
        self.n_past
    }

    /// Whether nothing has been evaluated yet.
    pub fn is_empty(&self) -> bool {
        self.n_past == 0
    }

    /// The storage type of K and V.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Number of cells held by layer `il` (window-sized for sliding-window layers).
    pub fn n_cells(&self, il: usize) -> usize {
        self.layers.get(il).map_or(0, LayerKv::n_cells)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.n_past = 0;
        for l in &mut self.layers {
            l.pos.clear();
            l.k.q8.clear();
            l.k.f16.clear();
            l.v.q8.clear();
            l.v.f16.clear();
        }
    }

    /// Keeps the first `n` positions and forgets the rest (`llama_memory_seq_rm(seq, n, -1)`),
    /// so that a new continuation can be evaluated from position `n`: how a prompt that
    /// starts like the cached sequence reuses its KV. Returns `false`, changing nothing, when
    /// that is impossible: `n` is beyond the cached positions, or a sliding-window layer has
    /// already dropped positions a token at `n` would attend to (the caller then clears the
    /// cache and evaluates from the start).
    pub fn truncate(&mut self, n: usize) -> bool {
        if n > self.n_past {
            return false;
        }
        let reachable = self.layers.iter().all(|l| match (l.window, l.pos.first()) {
            (Some(w), Some(&first)) => first <= (n as i64 - w as i64 + 1).max(0),
            _ => true,
        });
        if !reachable {
            return false;
        }
        for l in &mut self.layers {
            let keep = l.pos.partition_point(|&p| p < n as i64);
            let end = l.pos.len();
            if keep < end {
                l.pos.truncate(keep);
                l.k.remove_range(keep..end);
                l.v.remove_range(keep..end);
            }
        }
        self.n_past = n;
        true
    }

    /// Removes positions `[p0, p1)` from every layer and moves later positions down by
    /// `p1 - p0`, re-rotating their K rows with `rerope(layer, k_row, delta)`
    /// (`llama_memory_seq_rm` + `llama_memory_seq_add`).
    pub(crate) fn discard(
        &mut self,
        p0: usize,
        p1: usize,
        mut rerope: impl FnMut(usize, &mut [f32], i64),
    ) {
        let delta = p1 as i64 - p0 as i64;
        if delta <= 0 {
            return;
        }
        for (il, l) in self.layers.iter_mut().enumerate() {
            let a = l.pos.partition_point(|&p| p < p0 as i64);
            let b = l.pos.partition_point(|&p| p < p1 as i64);
            if b > a {
                l.pos.drain(a..b);
                l.k.remove_range(a..b);
                l.v.remove_range(a..b);
            }
            let mut row = vec![0.0f32; l.k.width];
            for c in a..l.pos.len() {
                l.pos[c] -= delta;
                l.k.read(c, &mut row);
                rerope(il, &mut row, -delta);
                l.k.write(c, &row);
            }
        }
        self.n_past -= delta as usize;
    }
}
