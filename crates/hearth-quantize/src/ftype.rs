//! `llama_ftype`: the quantization mix of a whole file (`general.file_type`).

use std::fmt;

use hearth_gguf::GgmlType;

/// A file type `llama-quantize` accepts, with llama.cpp's numeric id
/// (`enum llama_ftype` in include/llama.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum FileType {
    ALL_F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ2_M,
    IQ3_XXS,
    IQ3_XS,
    IQ3_S,
    IQ3_M,
    IQ1_S,
    IQ1_M,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    MXFP4_MOE,
}

/// `(name on the command line, file type)` in llama-quantize's order
/// (`QUANT_OPTIONS`, aliases included).
const NAMES: &[(&str, FileType)] = &[
    ("Q4_0", FileType::Q4_0),
    ("Q4_1", FileType::Q4_1),
    ("MXFP4_MOE", FileType::MXFP4_MOE),
    ("Q5_0", FileType::Q5_0),
    ("Q5_1", FileType::Q5_1),
    ("IQ2_XXS", FileType::IQ2_XXS),
    ("IQ2_XS", FileType::IQ2_XS),
    ("IQ2_S", FileType::IQ2_S),
    ("IQ2_M", FileType::IQ2_M),
    ("IQ1_S", FileType::IQ1_S),
    ("IQ1_M", FileType::IQ1_M),
    ("TQ1_0", FileType::TQ1_0),
    ("TQ2_0", FileType::TQ2_0),
    ("Q2_K", FileType::Q2_K),
    ("Q2_K_S", FileType::Q2_K_S),
    ("IQ3_XXS", FileType::IQ3_XXS),
    ("IQ3_S", FileType::IQ3_S),
    ("IQ3_M", FileType::IQ3_M),
    ("Q3_K", FileType::Q3_K_M),
    ("IQ3_XS", FileType::IQ3_XS),
    ("Q3_K_S", FileType::Q3_K_S),
    ("Q3_K_M", FileType::Q3_K_M),
    ("Q3_K_L", FileType::Q3_K_L),
    ("IQ4_NL", FileType::IQ4_NL),
    ("IQ4_XS", FileType::IQ4_XS),
    ("Q4_K", FileType::Q4_K_M),
    ("Q4_K_S", FileType::Q4_K_S),
    ("Q4_K_M", FileType::Q4_K_M),
    ("Q5_K", FileType::Q5_K_M),
    ("Q5_K_S", FileType::Q5_K_S),
    ("Q5_K_M", FileType::Q5_K_M),
    ("Q6_K", FileType::Q6_K),
    ("Q8_0", FileType::Q8_0),
    ("F16", FileType::F16),
    ("BF16", FileType::BF16),
    ("F32", FileType::ALL_F32),
];

impl FileType {
    /// Every file type.
    pub const ALL: &'static [FileType] = &[
        FileType::ALL_F32,
        FileType::F16,
        FileType::BF16,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q8_0,
        FileType::Q2_K,
        FileType::Q2_K_S,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::IQ2_XXS,
        FileType::IQ2_XS,
        FileType::IQ2_S,
        FileType::IQ2_M,
        FileType::IQ3_XXS,
        FileType::IQ3_XS,
        FileType::IQ3_S,
        FileType::IQ3_M,
        FileType::IQ1_S,
        FileType::IQ1_M,
        FileType::IQ4_NL,
        FileType::IQ4_XS,
        FileType::TQ1_0,
        FileType::TQ2_0,
        FileType::MXFP4_MOE,
    ];

    /// The `general.file_type` value (`enum llama_ftype`).
    pub fn id(self) -> u32 {
        use FileType as F;
        match self {
            F::ALL_F32 => 0,
            F::F16 => 1,
            F::Q4_0 => 2,
            F::Q4_1 => 3,
            F::Q8_0 => 7,
            F::Q5_0 => 8,
            F::Q5_1 => 9,
            F::Q2_K => 10,
            F::Q3_K_S => 11,
            F::Q3_K_M => 12,
            F::Q3_K_L => 13,
            F::Q4_K_S => 14,
            F::Q4_K_M => 15,
            F::Q5_K_S => 16,
            F::Q5_K_M => 17,
            F::Q6_K => 18,
            F::IQ2_XXS => 19,
            F::IQ2_XS => 20,
            F::Q2_K_S => 21,
            F::IQ3_XS => 22,
            F::IQ3_XXS => 23,
            F::IQ1_S => 24,
            F::IQ4_NL => 25,
            F::IQ3_S => 26,
            F::IQ3_M => 27,
            F::IQ2_S => 28,
            F::IQ2_M => 29,
            F::IQ4_XS => 30,
            F::IQ1_M => 31,
            F::BF16 => 32,
            F::TQ1_0 => 36,
            F::TQ2_0 => 37,
            F::MXFP4_MOE => 38,
        }
    }

    /// The file type with `general.file_type` value `id`.
    pub fn from_id(id: u32) -> Option<FileType> {
        Self::ALL.iter().copied().find(|f| f.id() == id)
    }

    /// Parses a name the way llama-quantize does (case-insensitive, aliases
    /// `Q3_K`/`Q4_K`/`Q5_K` for the `_M` mixes, or the numeric id).
    pub fn parse(s: &str) -> Option<FileType> {
        if let Some(&(_, f)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Some(f);
        }
        let id: u32 = s.trim().parse().ok()?;
        NAMES.iter().map(|&(_, f)| f).find(|f| f.id() == id)
    }

    /// The name llama-quantize prints.
    pub fn name(self) -> &'static str {
        match self {
            FileType::ALL_F32 => "F32",
            other => NAMES
                .iter()
                .rev()
                .find(|&&(_, f)| f == other)
                .map_or("?", |&(n, _)| n),
        }
    }

    /// The tensor type most tensors get (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        use FileType as F;
        use GgmlType as T;
        match self {
            F::Q4_0 => T::Q4_0,
            F::Q4_1 => T::Q4_1,
            F::Q5_0 => T::Q5_0,
            F::Q5_1 => T::Q5_1,
            F::Q8_0 => T::Q8_0,
            F::F16 => T::F16,
            F::BF16 => T::BF16,
            F::ALL_F32 => T::F32,
            F::MXFP4_MOE => T::MXFP4,
            F::Q2_K_S | F::Q2_K => T::Q2_K,
            F::IQ3_XS => T::IQ3_S,
            F::Q3_K_S | F::Q3_K_M | F::Q3_K_L => T::Q3_K,
            F::Q4_K_S | F::Q4_K_M => T::Q4_K,
            F::Q5_K_S | F::Q5_K_M => T::Q5_K,
            F::Q6_K => T::Q6_K,
            F::TQ1_0 => T::TQ1_0,
            F::TQ2_0 => T::TQ2_0,
            F::IQ2_XXS => T::IQ2_XXS,
            F::IQ2_XS => T::IQ2_XS,
            F::IQ2_S => T::IQ2_XS,
            F::IQ2_M => T::IQ2_S,
            F::IQ3_XXS => T::IQ3_XXS,
            F::IQ1_S => T::IQ1_S,
            F::IQ1_M => T::IQ1_M,
            F::IQ4_NL => T::IQ4_NL,
            F::IQ4_XS => T::IQ4_XS,
            F::IQ3_S | F::IQ3_M => T::IQ3_S,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_agree_with_hearth_gguf_names() {
        for &f in FileType::ALL {
            let name = hearth_gguf::file_type_name(f.id()).unwrap();
            assert_eq!(name, f.name().replace("F32", "ALL_F32"), "{f:?}");
            assert_eq!(FileType::from_id(f.id()), Some(f));
        }
    }

    #[test]
    fn parse_accepts_aliases_case_and_ids() {
        assert_eq!(FileType::parse("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q3_K"), Some(FileType::Q3_K_M));
        assert_eq!(FileType::parse("15"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("bf16"), Some(FileType::BF16));
        assert_eq!(FileType::parse("Q4_K_X"), None);
        assert_eq!(FileType::parse("4"), None);
    }
}
