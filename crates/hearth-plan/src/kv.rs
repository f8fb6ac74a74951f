//! The KV cache's size, computed the way `hearth_model::KvCache` holds it.
//!
//! Per layer the cache keeps one K row (`n_head_kv * head_dim_k` values) and one V row
//! (`n_head_kv * head_dim_v` values) per cell, stored as f16 (2 bytes a value) or Q8_0 (ggml's
//! `block_q8_0`: 34 bytes per 32 values). A layer without a sliding window keeps every position
//! of the context. A sliding-window layer drops, before each micro-batch, the cells no query of
//! the batch can see, so it holds at most `window - 1` old cells plus the batch (at most
//! [`hearth_model::N_UBATCH`] tokens): `min(n_ctx, window - 1 + N_UBATCH)` cells at its peak.
//! The cache grows as tokens arrive (nothing is reserved up front): each layer's K and V rows
//! live in a `Vec` that starts with one row and doubles when full, so a layer holding `c` cells
//! has allocated `c.next_power_of_two()` cells' worth. The `bytes_*` figures count that
//! allocation (what the process may end up holding; pages of the spare capacity become
//! resident when the heap reuses freed memory for them), the `data_bytes_*` figures only the
//! rows. Both are for a full context unless they say otherwise.

use hearth_model::{KvType, ModelConfig, N_UBATCH};
use serde::Serialize;

/// Bytes of a row of `width` values stored as `ty`.
pub fn row_bytes(ty: KvType, width: usize) -> u64 {
    match ty {
        KvType::F16 => 2 * width as u64,
        // block_q8_0: an f16 scale and 32 int8 values (ggml-common.h).
        KvType::Q8_0 => width.div_ceil(32) as u64 * 34,
    }
}

/// The name of a cache type as on the command line (`f16`, `q8_0`).
pub fn kv_type_name(ty: KvType) -> &'static str {
    match ty {
        KvType::F16 => "f16",
        KvType::Q8_0 => "q8_0",
    }
}

/// One layer's cache geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvLayer {
    /// Sliding window of the layer, if any.
    pub window: Option<usize>,
    /// Values of a K row (`n_head_kv * head_dim_k`).
    pub k_width: usize,
    /// Values of a V row (`n_head_kv * head_dim_v`).
    pub v_width: usize,
}

impl KvLayer {
    /// Cells the layer holds at most, in a context of `n_ctx` positions.
    pub fn max_cells(&self, n_ctx: usize) -> usize {
        self.peak_cells(n_ctx, N_UBATCH)
    }

    /// The most cells the layer holds at once while `n_tokens` positions are evaluated in
    /// batches of at most `max_batch` tokens (micro-batches are at most `N_UBATCH`): all of
    /// them without a window; with one, `window - 1` old cells plus a batch.
    pub fn peak_cells(&self, n_tokens: usize, max_batch: usize) -> usize {
        match self.window {
            None => n_tokens,
            Some(w) => n_tokens.min((w + max_batch.clamp(1, N_UBATCH)).saturating_sub(1)),
        }
    }

    /// Cells a `Vec` that grew one row at a time to `cells` rows has room for.
    pub fn alloc_cells(cells: usize) -> usize {
        if cells == 0 {
            0
        } else {
            cells.next_power_of_two()
        }
    }

    /// Bytes of one cell (K row + V row).
    pub fn cell_bytes(&self, ty: KvType) -> u64 {
        row_bytes(ty, self.k_width) + row_bytes(ty, self.v_width)
    }
}

/// The cache geometry of a model: one entry per layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KvLayout {
    pub layers: Vec<KvLayer>,
}

impl KvLayout {
    /// The layout `hearth_model::Model::new_kv_cache` makes for `cfg`.
    pub fn from_config(cfg: &ModelConfig) -> KvLayout {
        let layers = cfg
            .kv_widths()
            .into_iter()
            .enumerate()
            .map(|(il, (k_width, v_width))| KvLayer {
                window: cfg.is_swa(il).then_some(cfg.sliding_window),
                k_width,
                v_width,
            })
            .collect();
        KvLayout { layers }
    }

    /// Bytes one sequence's cache has allocated when its context of `n_ctx` positions is full.
    pub fn bytes_full(&self, n_ctx: usize, ty: KvType) -> u64 {
        self.bytes_peak(n_ctx, N_UBATCH, ty)
    }

    /// Bytes of the rows one sequence's cache holds when its context is full.
    pub fn data_bytes_full(&self, n_ctx: usize, ty: KvType) -> u64 {
        self.data_bytes_peak(n_ctx, N_UBATCH, ty)
    }

    /// Bytes one sequence's cache has allocated after `n_tokens` positions evaluated in batches
    /// of at most `max_batch` tokens (see [`KvLayer::peak_cells`]).
    pub fn bytes_peak(&self, n_tokens: usize, max_batch: usize, ty: KvType) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                KvLayer::alloc_cells(l.peak_cells(n_tokens, max_batch)) as u64 * l.cell_bytes(ty)
            })
            .sum()
    }

    /// Bytes of the rows of [`KvLayout::bytes_peak`] (without the spare capacity).
    pub fn data_bytes_peak(&self, n_tokens: usize, max_batch: usize, ty: KvType) -> u64 {
        self.layers
            .iter()
            .map(|l| l.peak_cells(n_tokens, max_batch) as u64 * l.cell_bytes(ty))
            .sum()
    }

    /// Bytes per position of the layers without a window (what grows with the context).
    pub fn bytes_per_position(&self, ty: KvType) -> u64 {
        self.layers
            .iter()
            .filter(|l| l.window.is_none())
            .map(|l| l.cell_bytes(ty))
            .sum()
    }

    /// Number of sliding-window layers.
    pub fn n_swa(&self) -> usize {
        self.layers.iter().filter(|l| l.window.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout of `n_layer` identical layers, sliding-window where `swa(il)`.
    fn layout(
        n_layer: usize,
        n_head_kv: usize,
        head_dim: usize,
        window: usize,
        swa: impl Fn(usize) -> bool,
    ) -> KvLayout {
        KvLayout {
            layers: (0..n_layer)
                .map(|il| KvLayer {
                    window: swa(il).then_some(window),
                    k_width: n_head_kv * head_dim,
                    v_width: n_head_kv * head_dim,
                })
                .collect(),
        }
    }

    /// synthetic/llama (hparams.json): 2 layers, 2 KV heads of 64, no window. A cell is
    /// K 128 + V 128 values = 512 bytes as f16, 2 * (128 / 32 * 34) = 272 bytes as Q8_0;
    /// 512 positions x 2 layers x 512 B = 524,288 B (f16), x 272 B = 278,528 B (Q8_0). At
    /// 100,000 positions the rows take 102,400,000 B, in Vecs of 131,072 cells.
    #[test]
    fn llama_synthetic_kv_bytes() {
        let l = layout(2, 2, 64, 0, |_| false);
        assert_eq!(l.layers[0].cell_bytes(KvType::F16), 512);
        assert_eq!(l.layers[0].cell_bytes(KvType::Q8_0), 272);
        assert_eq!(l.bytes_full(512, KvType::F16), 524_288);
        assert_eq!(l.bytes_full(512, KvType::Q8_0), 278_528);
        assert_eq!(l.bytes_per_position(KvType::F16), 1024);
        assert_eq!(l.data_bytes_full(100_000, KvType::F16), 102_400_000);
        assert_eq!(l.bytes_full(100_000, KvType::F16), 2 * 131_072 * 512);
    }

    /// synthetic/gemma2: layer 0 uses a 64-token window, layer 1 is global. At n_ctx 512 the
    /// window layer is capped by the context (min(512, 64 - 1 + 512) = 512): 2 x 512 x 512 B =
    /// 524,288 B. At n_ctx 4096: 575 + 4096 cells = 4671 x 512 B = 2,391,552 B of rows, in
    /// Vecs of 1024 + 4096 cells = 2,621,440 B.
    #[test]
    fn gemma2_synthetic_kv_bytes_with_window() {
        let l = layout(2, 2, 64, 64, |il| il % 2 == 0);
        assert_eq!(l.bytes_full(512, KvType::F16), 524_288);
        assert_eq!(l.layers[0].max_cells(4096), 575);
        assert_eq!(l.data_bytes_full(4096, KvType::F16), 2_391_552);
        assert_eq!(l.bytes_full(4096, KvType::F16), 2_621_440);
        assert_eq!(l.data_bytes_full(4096, KvType::Q8_0), 4671 * 272);
        assert_eq!(l.bytes_full(4096, KvType::Q8_0), 5120 * 272);
        assert_eq!(l.bytes_per_position(KvType::F16), 512);
        assert_eq!(l.n_swa(), 1);
        // A 300-token prompt in one batch: the window layer holds all 300 at once (300 <
        // 64 - 1 + 300), the global layer 300.
        assert_eq!(l.data_bytes_peak(300, 512, KvType::F16), 600 * 512);
        assert_eq!(l.bytes_peak(300, 512, KvType::F16), 1024 * 512);
        // 2000 tokens decoded one at a time: at most 64 cells in the window layer.
        assert_eq!(l.data_bytes_peak(2000, 1, KvType::F16), (64 + 2000) * 512);
        assert_eq!(l.bytes_peak(2000, 1, KvType::F16), (64 + 2048) * 512);
    }

    /// gemma4 (synthetic): per-layer widths, n_head_kv [2, 1], head_dim 64 (SWA) / 128 (full):
    /// both layers' rows are 128 values wide, the window is 64.
    #[test]
    fn per_layer_widths_add_up() {
        let l = KvLayout {
            layers: vec![
                KvLayer {
                    window: Some(64),
                    k_width: 2 * 64,
                    v_width: 2 * 64,
                },
                KvLayer {
                    window: None,
                    k_width: 128,
                    v_width: 128,
                },
            ],
        };
        assert_eq!(l.data_bytes_full(8192, KvType::F16), (575 + 8192) * 512);
        assert_eq!(l.bytes_full(8192, KvType::F16), (1024 + 8192) * 512);
    }

    /// Gemma 3 270M: 18 layers, 1 KV head of 256, window 512, every 6th layer global
    /// (5, 11, 17). f16 cell: 2 x 256 x 2 = 1024 B. n_ctx 8192: 3 x 8192 + 15 x 1023 cells
    /// = 39,921 x 1024 B = 40,879,104 B of rows; allocated 3 x 8192 + 15 x 1024 = 39,936 cells
    /// = 40,894,464 B.
    #[test]
    fn gemma3_270m_kv_bytes() {
        let l = layout(18, 1, 256, 512, |il| il % 6 < 5);
        assert_eq!(l.n_swa(), 15);
        assert_eq!(l.data_bytes_full(8192, KvType::F16), 40_879_104);
        assert_eq!(l.bytes_full(8192, KvType::F16), 40_894_464);
        assert_eq!(l.data_bytes_full(8192, KvType::Q8_0), 39_921 * 2 * 8 * 34);
        assert_eq!(l.bytes_full(8192, KvType::Q8_0), 39_936 * 2 * 8 * 34);
        assert_eq!(l.data_bytes_full(1000, KvType::F16), 18 * 1000 * 1024);
        assert_eq!(l.bytes_full(1000, KvType::F16), 18 * 1024 * 1024);
    }

    #[test]
    fn q8_0_row_is_34_bytes_per_32_values() {
        assert_eq!(row_bytes(KvType::Q8_0, 32), 34);
        assert_eq!(row_bytes(KvType::Q8_0, 4096), 4352);
        assert_eq!(row_bytes(KvType::F16, 4096), 8192);
    }
}
