//! Pre-tokenizers: how BPE vocabularies split text into words before merging,
//! one family per `tokenizer.ggml.pre` value, as in llama.cpp's
//! `llm_tokenizer_bpe` and `unicode_regex_split`.
//!
//! Each family is a list of patterns applied in turn: every pattern splits
//! each segment left by the previous one into matches and the gaps between
//! them. The common patterns (GPT-2, Llama 3, Qwen 2/3.5, Kimi K2, digit
//! grouping, newline runs) have hand-written splitters, exactly like
//! llama.cpp; the others run through [`crate::regex`] with llama.cpp's
//! `std::regex` conventions (see that module).

use crate::regex::{collapse, uses_categories, widen, Regex, RegexError};
use crate::unicode::{self, flags, Flags};

/// A pre-tokenizer family (llama.cpp's `llama_vocab_pre_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum PreType {
    Default,
    Llama3,
    Jais2,
    Dbrx,
    Smaug,
    DeepseekLlm,
    Deepseek3Llm,
    HunyuanDense,
    JoyaiLlm,
    HyV4,
    Spark25,
    Youtu,
    DeepseekCoder,
    Falcon,
    Starcoder,
    Refact,
    CommandR,
    Smollm,
    Codeshell,
    Exaone,
    Minerva,
    Mellum2,
    Gpt2,
    Mpt,
    Olmo,
    Jais,
    Trillion,
    GraniteDocling,
    Stablelm2,
    Qwen2,
    Hunyuan,
    SolarOpen,
    Qwen35,
    Poro,
    Bloom,
    Gpt3Finnish,
    Chatglm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    MinimaxM2,
    GraniteEmbMulti,
    TinyAya,
    KimiK2,
    Superbpe,
    Bailingmoe,
    SeedCoder,
    Ufakzeka,
    Grok2,
    Afmoe,
    Laguna,
    ExaoneMoe,
    Gemma4,
    SarvamMoe,
    Minicpm5,
    Whitespace,
}

impl PreType {
    /// The patterns llama.cpp applies for this family, in order.
    pub(crate) fn patterns(self) -> &'static [&'static str] {
        match self {
        PreType::Llama3 => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Jais2 => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"#,
        ],
        PreType::Dbrx | PreType::Smaug => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::DeepseekLlm => &[
    "[\r\n]",
    r#"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"#,
    r#"\s?[!-/:-~！-／：-～‘-‟　-。]+"#,
    r#"\s+$"#,
    r#"[一-龥ࠀ-一가-퟿]+"#,
    r#"\p{N}+"#,
        ],
        PreType::Deepseek3Llm | PreType::HunyuanDense | PreType::JoyaiLlm | PreType::HyV4 => &[
    r#"\p{N}{1,3}"#,
    r#"[一-龥぀-ゟ゠-ヿ]+"#,
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ],
        PreType::Spark25 => &[
    r#"\p{N}{1,3}"#,
    r#"[一-龥぀-ゟ゠-ヿ]+"#,
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    r#"\p{N}"#,
        ],
        PreType::Youtu => &[
    r#"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+"#,
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::DeepseekCoder => &[
    "[\r\n]",
    r#"\s?\p{L}+"#,
    r#"\s?\p{P}+"#,
    r#"[一-龥ࠀ-一가-퟿]+"#,
    r#"\p{N}"#,
        ],
        PreType::Falcon => &[
    r#"[\p{P}\$\+<=>\^~\|`]+"#,
    r#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#,
    r#"[0-9][0-9][0-9]"#,
        ],
        PreType::Starcoder | PreType::Refact | PreType::CommandR | PreType::Smollm | PreType::Codeshell | PreType::Exaone | PreType::Minerva | PreType::Mellum2 => &[
    r#"\p{N}"#,
    r#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#,
        ],
        PreType::Gpt2 | PreType::Mpt | PreType::Olmo | PreType::Jais | PreType::Trillion | PreType::GraniteDocling => &[
    r#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#,
        ],
        PreType::Stablelm2 | PreType::Qwen2 | PreType::Hunyuan | PreType::SolarOpen => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Qwen35 => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Poro | PreType::Bloom | PreType::Gpt3Finnish => &[
    r#" ?[^(\s|.,!?…。，、।۔،)]+"#,
        ],
        PreType::Chatglm4 => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Viking => &[
    r#" ?[^(\s|.,!?…。，、।۔،)]+"#,
    r#"\p{N}"#,
        ],
        PreType::Tekken => &[
    r#"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Chameleon => &[
    r#"<sentinel:[0-9]+>"#,
    r#"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"#,
    r#"([\t\n]|    |  )"#,
    r#"\p{N}"#,
    r#"[\p{P}!-/:-@\[-`{-~]"#,
    r#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#,
        ],
        PreType::Gpt4o | PreType::MinimaxM2 => &[
    r#"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::GraniteEmbMulti => &[
    r#"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::TinyAya => &[
    r#"\d{1,3}(?=(?:\d{3})*\b)"#,
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::KimiK2 => &[
    r#"\p{Han}+"#,
        ],
        PreType::Superbpe => &[
    r#"\p{N}+"#,
    r#"(?=(\d{3})+(?!\d))"#,
        ],
        PreType::Bailingmoe => &[
    r#"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#,
        ],
        PreType::SeedCoder => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Ufakzeka => &[
    r#"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Grok2 => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Afmoe => &[
    r#"\p{AFMoE_digits}"#,
    r#"[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+"#,
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        PreType::Laguna => &[
    r#"[^\n]+|[\n]+"#,
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::ExaoneMoe => &[
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"#,
        ],
        PreType::Gemma4 => &[
    r#"[^\n]+|[\n]+"#,
        ],
        PreType::SarvamMoe => &[
    r#"[^\n]+|[\n]+"#,
        ],
        PreType::Minicpm5 => &[
    r#"\p{N}{1,3}"#,
    r#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
        PreType::Whitespace => &[
    r#"\S+"#,
        ],
        PreType::Default => &[
    r#"[\p{P}\$\+<=>\^~\|]+"#,
    r#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#,
    r#"\p{N}+"#,
    r#"[0-9][0-9][0-9]"#,
        ],        }
    }

    /// Whether words are mapped to GPT-2's byte-level alphabet before
    /// merging (false for SPM-style BPE on raw UTF-8).
    pub(crate) fn byte_encode(self) -> bool {
        !matches!(
            self,
            PreType::Gemma4 | PreType::SarvamMoe | PreType::Whitespace
        )
    }
}

/// A pattern llama.cpp recognizes by its exact text and splits by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Custom {
    Gpt2,
    /// Llama 3 and Qwen 2 / 3.5: digits per group, letters may take marks.
    Llama3Like {
        max_digits: usize,
        marks: bool,
    },
    KimiK2,
    Digits,
    Newlines,
}

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_PATTERNS: [&str; 2] = [
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn custom_for(pattern: &str) -> Option<Custom> {
    Some(match pattern {
        GPT2_PATTERN => Custom::Gpt2,
        p if LLAMA3_PATTERNS.contains(&p) => Custom::Llama3Like {
            max_digits: 3,
            marks: false,
        },
        QWEN2_PATTERN => Custom::Llama3Like {
            max_digits: 1,
            marks: false,
        },
        QWEN35_PATTERN => Custom::Llama3Like {
            max_digits: 1,
            marks: true,
        },
        r"\p{Han}+" => Custom::KimiK2,
        r"\p{AFMoE_digits}" | r"\d{1,3}(?=(?:\d{3})*\b)" => Custom::Digits,
        r"[^\n]+|[\n]+" => Custom::Newlines,
        _ => return None,
    })
}

#[derive(Clone, Debug)]
enum Step {
    Custom(Custom),
    /// `\s+$`: the trailing whitespace run (by hand: the generic matcher
    /// would be quadratic on long runs).
    TrailingSpace,
    Regex {
        re: Regex,
        collapsed: bool,
    },
}

/// A compiled pre-tokenizer.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
    byte_encode: bool,
}

/// Reusable buffers for [`PreTokenizer::split`].
#[derive(Default)]
pub(crate) struct SplitScratch {
    cpts: Vec<u32>,
    alt: Vec<u32>,
    alt_kind: Option<bool>,
    offsets: Vec<usize>,
    next: Vec<usize>,
}

impl PreTokenizer {
    pub(crate) fn new(pre: PreType) -> Result<PreTokenizer, RegexError> {
        let steps = pre
            .patterns()
            .iter()
            .map(|p| {
                Ok(if let Some(c) = custom_for(p) {
                    Step::Custom(c)
                } else if *p == r"\s+$" {
                    Step::TrailingSpace
                } else {
                    Step::Regex {
                        re: Regex::new(p)?,
                        collapsed: uses_categories(p),
                    }
                })
            })
            .collect::<Result<_, RegexError>>()?;
        Ok(PreTokenizer {
            steps,
            byte_encode: pre.byte_encode(),
        })
    }

    pub(crate) fn byte_encode(&self) -> bool {
        self.byte_encode
    }

    /// Splits `text` into words. The words, re-encoded as UTF-8 from the
    /// decoded code points (so invalid input bytes are U+FFFD), are appended
    /// back to back to `bytes`; `ends` receives the end offset of each word
    /// (empty words included, as llama.cpp produces them).
    pub(crate) fn split(
        &self,
        text: &[u8],
        s: &mut SplitScratch,
        bytes: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) {
        unicode::decode_lossy(text, &mut s.cpts);
        s.alt_kind = None;
        s.offsets.clear();
        s.offsets.push(s.cpts.len());
        for step in &self.steps {
            s.next.clear();
            match step {
                Step::Custom(c) => {
                    custom_split(*c, &s.cpts, &s.offsets, &mut s.next);
                    if s.next.is_empty() {
                        // llama.cpp falls back to std::regex here, which
                        // yields nothing more for an all-empty input.
                        continue;
                    }
                }
                Step::TrailingSpace => {
                    trailing_space_split(&s.cpts, &s.offsets, &mut s.next);
                }
                Step::Regex { re, collapsed } => {
                    if s.alt_kind != Some(*collapsed) {
                        if *collapsed {
                            collapse(&s.cpts, &mut s.alt);
                        } else {
                            widen(&s.cpts, &mut s.alt);
                        }
                        s.alt_kind = Some(*collapsed);
                    }
                    re.split(&s.alt, &s.offsets, &mut s.next);
                }
            }
            std::mem::swap(&mut s.offsets, &mut s.next);
        }
        let mut pos = 0;
        for &n in &s.offsets {
            for &c in &s.cpts[pos..pos + n] {
                unicode::push_utf8(c, bytes);
            }
            ends.push(bytes.len());
            pos += n;
        }
    }
}

fn trailing_space_split(cpts: &[u32], offsets: &[usize], out: &mut Vec<usize>) {
    let is_space =
        |c: u32| c == 0x20 || (0x09..=0x0D).contains(&c) || (c > 0x7F && flags(c).is_whitespace());
    let mut start = 0;
    for &len in offsets {
        let end = start + len;
        let mut t = end;
        while t > start && is_space(cpts[t - 1]) {
            t -= 1;
        }
        if t > start {
            out.push(t - start);
        }
        if t < end {
            out.push(end - t);
        }
        start = end;
    }
}

/// Position-checked access to one segment of the code points, the way
/// llama.cpp's hand-written splitters see it: outside the segment there is
/// no code point and no flag.
struct Seg<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

const OUT_OF_RANGE: u32 = u32::MAX;

impl Seg<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }

    #[inline]
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            flags(self.cpts[pos])
        } else {
            Flags::NONE
        }
    }

    /// Ends the current word at `end`; returns its length.
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (optionally case-insensitive):
    /// the length of the contraction, or 0.
    fn contraction(&self, pos: usize, fold: bool) -> usize {
        if self.cpt(pos) != u32::from(b'\'') || pos + 1 >= self.end {
            return 0;
        }
        let low = |c: u32| if fold { unicode::to_lower(c) } else { c };
        let c1 = low(self.cpt(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&x| c1 == u32::from(x)) {
            return 2;
        }
        if pos + 2 < self.end {
            let c2 = low(self.cpt(pos + 2));
            let pair = |a: u8, b: u8| c1 == u32::from(a) && c2 == u32::from(b);
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return 3;
            }
        }
        0
    }

    /// Whitespace handling shared by the splitters: `\s*[\r\n]+` (when
    /// `newlines`), `\s+(?!\S)`, `\s+`, else a single code point.
    fn whitespace(&mut self, pos: usize, newlines: bool) -> usize {
        let mut n = 0;
        let mut last_nl_end = 0;
        while self.flags(pos + n).is_whitespace() {
            let c = self.cpt(pos + n);
            if c == u32::from(b'\r') || c == u32::from(b'\n') {
                last_nl_end = pos + n + 1;
            }
            n += 1;
        }
        let new_pos = if newlines && last_nl_end > 0 {
            last_nl_end
        } else if n > 1 && self.cpt(pos + n) != OUT_OF_RANGE {
            pos + n - 1
        } else if n > 0 {
            pos + n
        } else {
            pos + 1
        };
        self.add(new_pos);
        new_pos
    }
}

fn custom_split(kind: Custom, cpts: &[u32], offsets: &[usize], out: &mut Vec<usize>) {
    let mut start = 0;
    for &len in offsets {
        let mut seg = Seg {
            cpts,
            ini: start,
            end: start + len,
            prev_end: start,
            out: &mut *out,
        };
        match kind {
            Custom::Gpt2 => split_gpt2(&mut seg),
            Custom::Llama3Like { max_digits, marks } => split_llama3(&mut seg, max_digits, marks),
            Custom::KimiK2 => split_kimi_k2(&mut seg),
            Custom::Digits => split_digits(&mut seg),
            Custom::Newlines => split_newlines(&mut seg),
        }
        start += len;
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn split_gpt2(s: &mut Seg) {
    let mut pos = s.ini;
    while pos < s.end {
        let cpt = s.cpt(pos);
        let n = s.contraction(pos, false);
        if n > 0 {
            pos += s.add(pos + n);
            continue;
        }
        let space = cpt == u32::from(b' ');
        let f2 = if space {
            s.flags(pos + 1)
        } else {
            s.flags(pos)
        };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
        let run: Option<fn(Flags) -> bool> = if f2.is_letter() {
            Some(Flags::is_letter)
        } else if f2.is_number() {
            Some(Flags::is_number)
        } else if other(f2) {
            Some(other)
        } else {
            None
        };
        if let Some(run) = run {
            pos += usize::from(space) + 1;
            while run(s.flags(pos)) {
                pos += 1;
            }
            s.add(pos);
            continue;
        }
        pos = s.whitespace(pos, false);
    }
}

/// Llama 3 (`max_digits` 3), Qwen 2 (1) and Qwen 3.5 (1, letters take marks):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn split_llama3(s: &mut Seg, max_digits: usize, marks: bool) {
    let wordy = |f: Flags| f.is_letter() || (marks && f.is_accent_mark());
    let mut pos = s.ini;
    while pos < s.end {
        let cpt = s.cpt(pos);
        let f = s.flags(pos);
        let n = s.contraction(pos, true);
        if n > 0 {
            pos += s.add(pos + n);
            continue;
        }
        let newline = cpt == u32::from(b'\r') || cpt == u32::from(b'\n');
        if !(newline || f.is_number()) && (wordy(f) || wordy(s.flags(pos + 1))) {
            pos += 1;
            while wordy(s.flags(pos)) {
                pos += 1;
            }
            s.add(pos);
            continue;
        }
        if f.is_number() {
            let mut ini = pos;
            while s.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= max_digits {
                    s.add(pos);
                    ini = pos;
                }
            }
            s.add(pos);
            continue;
        }
        let space = cpt == u32::from(b' ');
        let mut f2 = if space { s.flags(pos + 1) } else { f };
        let other = |f: Flags| !(f.is_whitespace() || wordy(f) || f.is_number());
        if other(f2) && f.any() {
            pos += usize::from(space);
            while other(f2) && f2.any() {
                pos += 1;
                f2 = s.flags(pos);
            }
            let mut c2 = s.cpt(pos);
            while c2 == u32::from(b'\r') || c2 == u32::from(b'\n') {
                pos += 1;
                c2 = s.cpt(pos);
            }
            s.add(pos);
            continue;
        }
        pos = s.whitespace(pos, true);
    }
}

/// Kimi K2: `[\p{Han}]+`, then Llama-3-like rules with Han excluded from letters.
fn split_kimi_k2(s: &mut Seg) {
    let mut pos = s.ini;
    while pos < s.end {
        let cpt = s.cpt(pos);
        let f = s.flags(pos);
        if unicode::is_han(cpt) {
            while unicode::is_han(s.cpt(pos)) {
                pos += 1;
            }
            s.add(pos);
            continue;
        }
        let letter_at = |s: &Seg, p: usize| s.flags(p).is_letter() && !unicode::is_han(s.cpt(p));
        let newline = cpt == u32::from(b'\r') || cpt == u32::from(b'\n');
        let can_lead = !(newline || f.is_letter() || f.is_number());
        if (f.is_letter() && !unicode::is_han(cpt)) || (can_lead && letter_at(s, pos + 1)) {
            let mut lead = false;
            if can_lead {
                lead = true;
                pos += 1;
            }
            let mut letters = false;
            while letter_at(s, pos) {
                letters = true;
                pos += 1;
            }
            if letters || (!lead && letter_at(s, pos)) {
                if !letters {
                    pos += 1;
                }
                while letter_at(s, pos) {
                    pos += 1;
                }
                pos += s.contraction(pos, true);
                s.add(pos);
                continue;
            } else if lead {
                pos -= 1;
            }
        }
        if f.is_number() {
            let mut ini = pos;
            while s.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= 3 {
                    s.add(pos);
                    ini = pos;
                }
            }
            s.add(pos);
            continue;
        }
        let space = cpt == u32::from(b' ');
        let mut f2 = if space { s.flags(pos + 1) } else { f };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
        if other(f2) {
            pos += usize::from(space);
            while other(f2) {
                pos += 1;
                f2 = s.flags(pos);
            }
            let mut c2 = s.cpt(pos);
            while c2 == u32::from(b'\r') || c2 == u32::from(b'\n') {
                pos += 1;
                c2 = s.cpt(pos);
            }
            s.add(pos);
            continue;
        }
        pos = s.whitespace(pos, true);
    }
}

/// Digit runs split into groups of three from the right; everything else
/// between them is one word.
fn split_digits(s: &mut Seg) {
    let mut pos = s.ini;
    while pos < s.end {
        if s.flags(pos).is_number() {
            let first = pos;
            while pos < s.end && s.flags(pos).is_number() {
                pos += 1;
            }
            let count = pos - first;
            let mut cur = first;
            if !count.is_multiple_of(3) {
                cur += count % 3;
                s.add(cur);
            }
            while cur < first + count {
                cur += 3;
                s.add(cur);
            }
            continue;
        }
        pos += 1;
    }
    if s.prev_end < s.end {
        s.add(s.end);
    }
}

/// `[^\n]+|[\n]+`: runs of newlines and runs of everything else.
fn split_newlines(s: &mut Seg) {
    let mut pos = s.ini;
    while pos < s.end {
        let nl = s.cpts[pos] == u32::from(b'\n');
        let run = pos;
        while pos < s.end && (s.cpts[pos] == u32::from(b'\n')) == nl {
            pos += 1;
        }
        s.out.push(pos - run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreType, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(pre).unwrap();
        let mut s = SplitScratch::default();
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        p.split(text.as_bytes(), &mut s, &mut bytes, &mut ends);
        let mut out = Vec::new();
        let mut start = 0;
        for e in ends {
            out.push(String::from_utf8(bytes[start..e].to_vec()).unwrap());
            start = e;
        }
        out
    }

    #[test]
    fn every_family_compiles() {
        use PreType::*;
        for pre in [
            Default,
            Llama3,
            Jais2,
            Dbrx,
            Smaug,
            DeepseekLlm,
            Deepseek3Llm,
            HunyuanDense,
            JoyaiLlm,
            HyV4,
            Spark25,
            Youtu,
            DeepseekCoder,
            Falcon,
            Starcoder,
            Refact,
            CommandR,
            Smollm,
            Codeshell,
            Exaone,
            Minerva,
            Mellum2,
            Gpt2,
            Mpt,
            Olmo,
            Jais,
            Trillion,
            GraniteDocling,
            Stablelm2,
            Qwen2,
            Hunyuan,
            SolarOpen,
            Qwen35,
            Poro,
            Bloom,
            Gpt3Finnish,
            Chatglm4,
            Viking,
            Tekken,
            Chameleon,
            Gpt4o,
            MinimaxM2,
            GraniteEmbMulti,
            TinyAya,
            KimiK2,
            Superbpe,
            Bailingmoe,
            SeedCoder,
            Ufakzeka,
            Grok2,
            Afmoe,
            Laguna,
            ExaoneMoe,
            Gemma4,
            SarvamMoe,
            Minicpm5,
            Whitespace,
        ] {
            let p = PreTokenizer::new(pre).unwrap_or_else(|e| panic!("{pre:?}: {e:?}"));
            let _ = words(pre, "Hello, y'all! 1234567 ünïcödé  \n\n 你好 ");
            assert!(!p.steps.is_empty());
        }
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words(PreType::Gpt2, "Hello world's  end!!"),
            ["Hello", " world", "'s", " ", " end", "!!"]
        );
    }

    #[test]
    fn llama3_groups_digits_and_newlines() {
        assert_eq!(
            words(PreType::Llama3, "a 12345\n\n b"),
            ["a", " ", "123", "45", "\n\n", " b"]
        );
        assert_eq!(words(PreType::Qwen2, "x 12"), ["x", " ", "1", "2"]);
    }

    #[test]
    fn trailing_space_rule() {
        assert_eq!(words(PreType::DeepseekLlm, "ab  "), ["ab", "  "]);
    }
}
