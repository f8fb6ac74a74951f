//! Building a [`Tokenizer`] from GGUF metadata, following llama.cpp's
//! `llama_vocab::impl::load` step by step (defaults per model type, flags,
//! special ids, attribute fix-ups, EOG set, caches), with typed errors where
//! llama.cpp would crash or silently misbehave.

use hearth_gguf::{Array, Metadata};

use crate::bpe::{Bpe, NONE};
use crate::hash::{FxHashMap, Interner};
use crate::pretok::{PreTokenizer, PreType};
use crate::special::Specials;
use crate::tokenizer::{Options, SpecialIds, TokenAttr, Tokenizer, VocabType};
use crate::unicode::{byte_to_char, char_to_byte, decode_lossy, push_utf8};
use crate::TokenizerError;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";

/// Pre-tokenizer names and how each adjusts the defaults (llama.cpp's table).
#[derive(Clone, Copy, Default)]
struct PreAdjust {
    ignore_merges: bool,
    add_bos: bool,
    keep_clean_spaces: bool,
    escape_whitespaces: bool,
    add_sep: bool,
    no_bos: bool,
    no_lowercase: bool,
}

fn pre_from_name(name: &str) -> Option<(PreType, PreAdjust)> {
    use PreType::*;
    let d = PreAdjust::default();
    // Most families keep llama.cpp's `clean_spaces = false`.
    let no_clean = PreAdjust {
        keep_clean_spaces: true,
        ..d
    };
    Some(match name {
        "default" => (Default, d),
        "minicpm5" => (
            Minicpm5,
            PreAdjust {
                ignore_merges: true,
                ..d
            },
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (
            Llama3,
            PreAdjust {
                ignore_merges: true,
                add_bos: true,
                ..d
            },
        ),
        "deepseek-llm" => (DeepseekLlm, no_clean),
        "deepseek-coder" => (DeepseekCoder, no_clean),
        "deepseek-v3" => (Deepseek3Llm, no_clean),
        "spark2_5" => (Spark25, no_clean),
        "youtu" => (
            Youtu,
            PreAdjust {
                ignore_merges: true,
                ..no_clean
            },
        ),
        "falcon" => (Falcon, d),
        "mpt" => (Mpt, d),
        "starcoder" => (Starcoder, d),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" => (Gpt2, d),
        "jais-2" => (Jais2, d),
        "gemma4" | "granite-embed-multi-311m" => (
            Gemma4,
            PreAdjust {
                escape_whitespaces: true,
                ..d
            },
        ),
        "sarvam-moe" => (
            SarvamMoe,
            PreAdjust {
                escape_whitespaces: true,
                ..no_clean
            },
        ),
        "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => (Gpt2, PreAdjust { add_sep: true, ..d }),
        "whitespace" => (
            Whitespace,
            PreAdjust {
                no_lowercase: true,
                ..d
            },
        ),
        "refact" => (Refact, d),
        "command-r" => (CommandR, no_clean),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => (Qwen2, no_clean),
        "qwen35" => (Qwen35, no_clean),
        "stablelm2" => (Stablelm2, d),
        "olmo" => (Olmo, d),
        "dbrx" => (Dbrx, d),
        "smaug-bpe" => (Smaug, d),
        "poro-chat" => (Poro, no_clean),
        "chatglm-bpe" => (Chatglm4, PreAdjust { no_bos: true, ..d }),
        "glm4" | "glm5" => (
            Chatglm4,
            PreAdjust {
                no_bos: true,
                ignore_merges: true,
                ..d
            },
        ),
        "viking" => (Viking, no_clean),
        "jais" => (Jais, d),
        "tekken" => (
            Tekken,
            PreAdjust {
                ignore_merges: true,
                add_bos: true,
                ..no_clean
            },
        ),
        "smollm" => (Smollm, no_clean),
        "codeshell" => (Codeshell, d),
        "bloom" => (Bloom, d),
        "gpt3-finnish" => (Gpt3Finnish, d),
        "exaone" => (Exaone, d),
        "exaone4" => (Gpt2, d),
        "exaone-moe" => (ExaoneMoe, d),
        "chameleon" => (
            Chameleon,
            PreAdjust {
                add_bos: true,
                ..no_clean
            },
        ),
        "minerva-7b" => (Minerva, d),
        "megrez" => (Qwen2, d),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => (Gpt4o, no_clean),
        "granite-embed-multi-97m" => (
            GraniteEmbMulti,
            PreAdjust {
                ignore_merges: true,
                ..no_clean
            },
        ),
        "tiny_aya" | "cohere2moe" => (TinyAya, no_clean),
        "superbpe" => (Superbpe, no_clean),
        "trillion" => (Trillion, no_clean),
        "granite-docling" => (GraniteDocling, no_clean),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => (Bailingmoe, no_clean),
        "seed-coder" => (SeedCoder, no_clean),
        "hunyuan" => (Hunyuan, no_clean),
        "hunyuan-dense" => (HunyuanDense, no_clean),
        "hy_v4" => (HyV4, no_clean),
        "joyai-llm" => (JoyaiLlm, no_clean),
        "kimi-k2" => (KimiK2, no_clean),
        "ufakzeka" => (Ufakzeka, no_clean),
        "grok-2" => (Grok2, no_clean),
        "afmoe" => (Afmoe, no_clean),
        "laguna" => (Laguna, no_clean),
        "minimax-m2" => (MinimaxM2, no_clean),
        "solar-open" => (SolarOpen, no_clean),
        "mellum2" => (Mellum2, d),
        _ => return None,
    })
}

/// Texts that mark end-of-turn tokens, in the order we prefer them when a
/// vocabulary has several (llama.cpp takes whichever its hash map yields first).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts of tokens that end generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn to_u32(n: usize) -> Result<u32, TokenizerError> {
    u32::try_from(n).map_err(|_| TokenizerError::TooManyTokens { n_vocab: n })
}

struct Loader<'a> {
    md: &'a Metadata,
    n: usize,
    texts: Interner,
    attrs: Vec<TokenAttr>,
}

impl Loader<'_> {
    fn id(&self, text: &str) -> Option<u32> {
        self.texts
            .get(text.as_bytes())
            .filter(|&i| (i as usize) < self.n)
    }

    fn text(&self, id: u32) -> &[u8] {
        self.texts.get_bytes(id)
    }

    fn bool_key(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        Ok(self.md.get_bool_opt(key)?)
    }

    /// Makes `id` a control token (what llama.cpp does to tokens it
    /// recognizes as EOT/EOG/FIM by their text).
    fn force_control(&mut self, id: u32) {
        let a = &mut self.attrs[id as usize];
        *a = *a | TokenAttr::CONTROL;
    }

    fn detect(&mut self, slot: &mut Option<u32>, texts: &[&str]) {
        if slot.is_some() {
            return;
        }
        if let Some(id) = texts.iter().find_map(|t| self.id(t)) {
            *slot = Some(id);
            self.force_control(id);
        }
    }
}

pub(crate) fn load(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
    let model = md.get_str(KEY_MODEL)?.to_string();
    let mut pre_name = md.get_str_opt(KEY_PRE)?.unwrap_or("").to_string();

    let mut opts = Options {
        lowercase: true,
        strip_accents: true,
        escape_whitespaces: true,
        ..Options::default()
    };
    // Default special ids per model type.
    let mut ids = SpecialIds::default();
    let vtype = match model.as_str() {
        "llama" => {
            ids.bos = Some(1);
            ids.eos = Some(2);
            ids.unk = Some(0);
            VocabType::Spm
        }
        "bert" => {
            ids.bos = Some(101);
            ids.unk = Some(100);
            ids.sep = Some(102);
            ids.pad = Some(0);
            ids.mask = Some(103);
            opts.add_sep = true;
            VocabType::Wpm
        }
        "gpt2" => {
            ids.bos = Some(11);
            ids.eos = Some(11);
            VocabType::Bpe
        }
        "gemma4" => {
            pre_name = "gemma4".to_string();
            VocabType::Bpe
        }
        "t5" | "rwkv" | "plamo2" | "hybriddna" | "whitespace" | "test" | "no_vocab" | "none" => {
            return Err(TokenizerError::UnsupportedModel { model });
        }
        _ => return Err(TokenizerError::UnknownModel { model }),
    };

    let mut pre = None;
    match vtype {
        VocabType::Bpe => {
            opts.add_space_prefix = false;
            opts.escape_whitespaces = false;
            opts.clean_spaces = true;
            let name = if pre_name.is_empty() {
                "default"
            } else {
                pre_name.as_str()
            };
            let (p, adj) =
                pre_from_name(name).ok_or_else(|| TokenizerError::UnknownPreTokenizer {
                    pre: pre_name.clone(),
                })?;
            pre = Some(p);
            opts.ignore_merges |= adj.ignore_merges;
            opts.add_bos |= adj.add_bos;
            opts.clean_spaces &= !adj.keep_clean_spaces;
            opts.escape_whitespaces |= adj.escape_whitespaces;
            opts.add_sep |= adj.add_sep;
            if adj.no_bos {
                ids.bos = None;
            }
            if adj.no_lowercase {
                opts.lowercase = false;
            }
        }
        VocabType::Spm => {
            opts.add_space_prefix = true;
            opts.clean_spaces = false;
            opts.add_bos = true;
            opts.add_eos = false;
        }
        VocabType::Wpm => {
            opts.add_space_prefix = false;
            opts.clean_spaces = true;
            opts.add_bos = true;
            opts.add_eos = false;
            opts.add_sep = true;
        }
    }
    if let Some(v) = md.get_bool_opt("tokenizer.ggml.add_space_prefix")? {
        opts.add_space_prefix = v;
    }
    if let Some(v) = md.get_bool_opt("tokenizer.ggml.remove_extra_whitespaces")? {
        opts.remove_extra_whitespaces = v;
    }

    // Tokens, scores, types.
    let tokens = md.get_str_array(KEY_TOKENS)?;
    let n = tokens.len();
    if n == 0 {
        return Err(TokenizerError::EmptyVocab);
    }
    to_u32(n)?;
    let scores: Vec<f32> = match md.get(KEY_SCORES) {
        None => vec![0.0; n],
        Some(_) => match md.get_array(KEY_SCORES)? {
            Array::F32(v) => v.clone(),
            Array::I32(v) => v.iter().map(|&x| x as f32).collect(),
            _ => {
                return Err(TokenizerError::WrongArrayType {
                    key: KEY_SCORES,
                    expected: "FLOAT32 or INT32",
                })
            }
        },
    };
    if scores.len() != n {
        return Err(TokenizerError::LengthMismatch {
            key: KEY_SCORES,
            len: scores.len(),
            n_vocab: n,
        });
    }
    let attrs: Vec<TokenAttr> = match md.get(KEY_TOKEN_TYPE) {
        None => vec![TokenAttr::NORMAL; n],
        Some(_) => {
            let types = md.get_int_array(KEY_TOKEN_TYPE)?;
            if types.len() != n {
                return Err(TokenizerError::LengthMismatch {
                    key: KEY_TOKEN_TYPE,
                    len: types.len(),
                    n_vocab: n,
                });
            }
            types.into_iter().map(TokenAttr::from_token_type).collect()
        }
    };

    let total: usize = tokens.iter().map(String::len).sum();
    // The interner addresses its bytes with u32 (merges add at most twice
    // their own length); no real vocabulary comes near.
    let merge_bytes: usize = match md.get(KEY_MERGES) {
        Some(_) if vtype == VocabType::Bpe => {
            md.get_str_array(KEY_MERGES)?.iter().map(String::len).sum()
        }
        _ => 0,
    };
    if total.saturating_add(merge_bytes.saturating_mul(2)) >= u32::MAX as usize {
        return Err(TokenizerError::TooManyTokens { n_vocab: n });
    }
    let mut texts = Interner::with_capacity(n, total);
    let mut max_token_len = 0;
    for (i, t) in tokens.iter().enumerate() {
        let renamed;
        let word: &str = if t.is_empty() {
            renamed = format!("[EMPTY_{i}]");
            &renamed
        } else {
            t
        };
        let (id, fresh) = texts.insert(word.as_bytes());
        if !fresh {
            return Err(TokenizerError::DuplicateToken {
                id: i as u32,
                first: id,
                text: word.to_string(),
            });
        }
        max_token_len = max_token_len.max(word.len());
    }
    let mut byte_values = vec![0u8; n];
    for (i, a) in attrs.iter().enumerate() {
        if a.contains(TokenAttr::BYTE) {
            let t = texts.get_bytes(i as u32);
            byte_values[i] = parse_byte_token(t).ok_or_else(|| TokenizerError::BadByteToken {
                id: i as u32,
                text: String::from_utf8_lossy(t).into_owned(),
            })?;
        }
    }

    let mut ld = Loader {
        md,
        n,
        texts,
        attrs,
    };

    // BPE merges, interned after the tokens.
    let bpe_merges = if vtype == VocabType::Bpe {
        match md.get(KEY_MERGES) {
            None if pre == Some(PreType::KimiK2) => Some(FxHashMap::default()),
            None => return Err(TokenizerError::MissingMerges),
            Some(_) => {
                let merges = md.get_str_array(KEY_MERGES)?;
                let mut map = FxHashMap::default();
                map.reserve(merges.len());
                let mut joined = Vec::new();
                for (rank, m) in merges.iter().enumerate() {
                    let b = m.as_bytes();
                    let (first, second) = match b.iter().skip(1).position(|&c| c == b' ') {
                        Some(p) => (&b[..p + 1], &b[p + 2..]),
                        None => (&b[..0], &b[..0]),
                    };
                    let l = ld.texts.insert(first).0;
                    let r = ld.texts.insert(second).0;
                    joined.clear();
                    joined.extend_from_slice(first);
                    joined.extend_from_slice(second);
                    let j = ld.texts.insert(&joined).0;
                    map.entry((l, r)).or_insert((to_u32(rank)?, j));
                }
                Some(map)
            }
        }
    } else {
        None
    };

    // Special token ids from GGUF.
    type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
    let keys: [(&'static str, Slot); 17] = [
        (KEY_BOS, |s| &mut s.bos),
        (KEY_EOS, |s| &mut s.eos),
        ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
        ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
        ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
        ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
        ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
        ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
        ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
        ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
        ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
        ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
        ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
        ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
        ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
        ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
        ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
    ];
    for (key, slot) in keys {
        let slot = slot(&mut ids);
        if slot.is_some_and(|id| id as usize >= n) {
            *slot = None; // a default outside the vocabulary is disabled
        }
        let Some(v) = md.get_i64_opt(key)? else {
            continue;
        };
        if v >= 0 && (v as u64) < n as u64 {
            *slot = Some(v as u32);
        } else if key == KEY_BOS || key == KEY_EOS {
            return Err(TokenizerError::SpecialTokenOutOfRange {
                key,
                id: v,
                n_vocab: n,
            });
        }
        // Other ids out of range keep their default, as in llama.cpp.
    }

    if let Some(v) = ld.bool_key("tokenizer.ggml.add_bos_token")? {
        opts.add_bos = v;
    }
    if let Some(v) = ld.bool_key("tokenizer.ggml.add_eos_token")? {
        opts.add_eos = v;
    }
    if let Some(v) = ld.bool_key("tokenizer.ggml.add_sep_token")? {
        opts.add_sep = v;
    }
    if pre == Some(PreType::Gemma4) {
        opts.add_bos = true; // llama.cpp overrides this for Gemma 4
    }
    if let Some(v) = ld.bool_key("tokenizer.ggml.normalizer.lowercase")? {
        opts.lowercase = v;
    }
    opts.strip_accents = opts.lowercase;
    if let Some(v) = ld.bool_key("tokenizer.ggml.normalizer.strip_accents")? {
        opts.strip_accents = v;
    }

    // Special tokens recognized by their text.
    ld.detect(&mut ids.eot, EOT_TEXTS);
    ld.detect(&mut ids.eom, EOM_TEXTS);
    ld.detect(&mut ids.fim_pre, FIM_PRE_TEXTS);
    ld.detect(&mut ids.fim_suf, FIM_SUF_TEXTS);
    ld.detect(&mut ids.fim_mid, FIM_MID_TEXTS);
    ld.detect(&mut ids.fim_pad, FIM_PAD_TEXTS);
    ld.detect(&mut ids.fim_rep, FIM_REP_TEXTS);
    ld.detect(&mut ids.fim_sep, FIM_SEP_TEXTS);

    // Control tokens named "unused" are unused.
    for i in 0..n {
        let a = ld.attrs[i];
        if a.contains(TokenAttr::CONTROL)
            && !a.contains(TokenAttr::UNUSED)
            && contains(ld.text(i as u32), b"unused")
        {
            ld.attrs[i] = a | TokenAttr::UNUSED;
        }
    }

    // End-of-generation set.
    let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
        .into_iter()
        .flatten()
        .collect();
    for t in EOG_TEXTS {
        if let Some(id) = ld.id(t) {
            eog.push(id);
            ld.force_control(id);
        }
    }
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(id) = ld.id(t) {
            ld.attrs[id as usize] = TokenAttr::USER_DEFINED; // gpt-oss: always rendered
        }
    }
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();
    let eog_has = |eog: &[u32], ld: &Loader, text: &str| ld.id(text).filter(|id| eog.contains(id));
    {
        // o200k_harmony / solar-open: <|end|> is not EOG next to <|return|> and <|call|>.
        let ret = eog_has(&eog, &ld, "<|return|>").is_some();
        let call =
            eog_has(&eog, &ld, "<|call|>").is_some() || eog_has(&eog, &ld, "<|calls|>").is_some();
        let flush = eog_has(&eog, &ld, "<|flush|>").is_some();
        if let Some(end) = eog_has(&eog, &ld, "<|end|>") {
            if call && (ret || flush) {
                eog.retain(|&x| x != end);
                ld.attrs[end as usize] = TokenAttr::USER_DEFINED;
            }
        }
        // Gemma 4 / PLaMo: </s> is a normal token.
        let marker = eog_has(&eog, &ld, "<|tool_response>").is_some()
            || eog_has(&eog, &ld, "<|plamo:eos|>").is_some();
        if let Some(s) = eog_has(&eog, &ld, "</s>") {
            if marker {
                eog.retain(|&x| x != s);
                ld.attrs[s as usize] = TokenAttr::NORMAL;
            }
        }
    }

    // Special tokens, longest first (ties by id).
    let mut special: Vec<u32> = (0..n as u32)
        .filter(|&i| {
            ld.attrs[i as usize]
                .intersects(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
        })
        .collect();
    special.sort_by_key(|&i| std::cmp::Reverse(ld.text(i).len()));

    // Piece cache (token_to_piece with special = true).
    let escape_ws = opts.escape_whitespaces;
    let mut pieces = Vec::with_capacity(ld.texts.len());
    let mut piece_ends = Vec::with_capacity(n);
    let mut cpts = Vec::new();
    for (i, (&a, &byte)) in ld.attrs.iter().zip(&byte_values).enumerate() {
        let t = ld.texts.get_bytes(i as u32);
        if a.intersects(TokenAttr::UNKNOWN | TokenAttr::CONTROL | TokenAttr::USER_DEFINED) {
            pieces.extend_from_slice(t);
        } else if a.contains(TokenAttr::NORMAL) {
            if vtype == VocabType::Bpe && !escape_ws {
                decode_byte_level(t, &mut cpts, &mut pieces);
            } else {
                unescape_spaces(t, &mut pieces);
            }
        } else if a.contains(TokenAttr::BYTE) {
            pieces.push(byte);
        }
        piece_ends.push(to_u32(pieces.len())?);
    }

    // Per-model attributes (llama.cpp sets them by name).
    let name = md.get_str_opt("general.name")?.unwrap_or("").to_lowercase();
    let arch = md.get_str_opt("general.architecture")?.unwrap_or("");
    let raw_pre = md.get_str_opt(KEY_PRE)?.unwrap_or("");
    let set = |ld: &mut Loader, text: &str, attr: TokenAttr, on: bool| {
        if let Some(id) = ld.id(text) {
            let a = &mut ld.attrs[id as usize];
            *a = if on {
                *a | attr
            } else {
                TokenAttr(a.0 & !attr.0)
            };
        }
    };
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
        .iter()
        .any(|s| raw_pre.contains(s))
        || ["nomic-bert-moe", "jina-bert-v3"]
            .iter()
            .any(|s| arch.contains(s))
    {
        set(&mut ld, "<mask>", TokenAttr::LSTRIP, true);
    } else if name.contains("phi-3") || name.contains("phi3") {
        for &id in &special {
            let a = &mut ld.attrs[id as usize];
            *a = *a | TokenAttr::RSTRIP;
        }
        set(&mut ld, "</s>", TokenAttr::RSTRIP, true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(&mut ld, t, TokenAttr::RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set(&mut ld, "[MASK]", TokenAttr::LSTRIP, true);
    }

    let specials = Specials::new(special, |i| ld.texts.get_bytes(i));

    // SPM byte fallback.
    let mut byte_tokens = [None; 256];
    for (b, slot) in byte_tokens.iter_mut().enumerate() {
        *slot = ld.id(&format!("<0x{b:02X}>")).or_else(|| {
            let c = [b as u8];
            std::str::from_utf8(&c).ok().and_then(|s| ld.id(s))
        });
    }

    let bpe = match (bpe_merges, pre) {
        (Some(merges), Some(pre_type)) => {
            let pre_tok = PreTokenizer::new(pre_type).map_err(|e| TokenizerError::BadPattern {
                pattern: e.pattern,
                message: e.message,
            })?;
            let byte_level = pre_tok.byte_encode();
            let mut byte_sym = [NONE; 256];
            let mut fallback = [None; 256];
            let mut buf = Vec::new();
            for b in 0..=255u8 {
                buf.clear();
                push_utf8(byte_to_char(b), &mut buf);
                byte_sym[b as usize] = ld.texts.get(&buf).unwrap_or(NONE);
                fallback[b as usize] = if byte_level {
                    if (0x21..=0x7E).contains(&b) {
                        ld.id(std::str::from_utf8(&[b]).unwrap_or_default())
                    } else {
                        None
                    }
                } else {
                    ld.id(&format!("<0x{b:02X}>"))
                };
            }
            Some(Bpe {
                pre: pre_tok,
                pre_type,
                merges,
                byte_sym,
                fallback,
            })
        }
        _ => None,
    };

    let mut tok = Tokenizer {
        vtype,
        pre,
        n_vocab: n,
        texts: ld.texts,
        scores,
        attrs: ld.attrs,
        ids,
        opts,
        eog,
        specials,
        pieces,
        piece_ends,
        byte_tokens,
        bpe,
        max_token_len,
        junctions: std::sync::OnceLock::new(),
    };

    // The newline token.
    tok.ids.nl = match vtype {
        VocabType::Spm => tok.byte_tokens[b'\n' as usize].or(tok.ids.pad),
        VocabType::Wpm => tok.ids.pad,
        VocabType::Bpe => tok
            .encode("\n", false, false)
            .first()
            .copied()
            .or(tok.ids.pad),
    };
    Ok(tok)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The byte of a `<0xHH>` token.
fn parse_byte_token(t: &[u8]) -> Option<u8> {
    if t.len() != 6 || &t[..3] != b"<0x" || t[5] != b'>' {
        return None;
    }
    let hex = std::str::from_utf8(&t[3..5]).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// `▁` back to a space.
fn unescape_spaces(t: &[u8], out: &mut Vec<u8>) {
    let marker = "\u{2581}".as_bytes();
    let mut rest = t;
    while let Some(i) = memchr::memmem::find(rest, marker) {
        out.extend_from_slice(&rest[..i]);
        out.push(b' ');
        rest = &rest[i + marker.len()..];
    }
    out.extend_from_slice(rest);
}

/// GPT-2 characters back to bytes (llama.cpp's `llama_decode_text`,
/// including its odd marker for characters outside the alphabet).
fn decode_byte_level(t: &[u8], cpts: &mut Vec<u32>, out: &mut Vec<u8>) {
    decode_lossy(t, cpts);
    for &c in cpts.iter() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = Vec::new();
                push_utf8(c, &mut utf8);
                for b in utf8 {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(t);
                out.push(b']');
            }
        }
    }
}
