//! Run-time CPU feature detection and the kernel level in use.
//!
//! Features are read once (CPUID through `is_x86_feature_detected!`, AMX
//! through CPUID leaf 7, XCR0 and Linux's `arch_prctl` permission request)
//! and cached; kernels are then chosen from [`CpuLevel::active`], never from
//! compile-time `cfg(target_feature)` alone, so one release binary runs the
//! best code on every x86-64 machine and the scalar code elsewhere.
//!
//! `HEARTH_CPU=scalar|avx2|avx512|amx` lowers the level (a level the machine
//! lacks is clamped to what it has, with a warning on stderr).

#![allow(unsafe_code)]

use std::fmt;
use std::sync::OnceLock;

/// A kernel level: each includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2 + FMA + F16C (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (on top of [`CpuLevel::Avx2`]).
    Avx512,
    /// AMX-INT8 tiles, usable by this process (on top of [`CpuLevel::Avx512`]).
    Amx,
}

impl CpuLevel {
    /// Every level, lowest first.
    pub const ALL: [CpuLevel; 4] = [
        CpuLevel::Scalar,
        CpuLevel::Avx2,
        CpuLevel::Avx512,
        CpuLevel::Amx,
    ];

    /// The name `HEARTH_CPU` accepts (`scalar`, `avx2`, `avx512`, `amx`).
    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "scalar",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512 => "avx512",
            CpuLevel::Amx => "amx",
        }
    }

    /// Parses a [`CpuLevel::name`] (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<CpuLevel> {
        CpuLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The best level this machine supports (detected once, then cached).
    pub fn detected() -> CpuLevel {
        features().level()
    }

    /// The level kernels use: [`CpuLevel::detected`], lowered by
    /// `HEARTH_CPU` if set (read once, then cached).
    pub fn active() -> CpuLevel {
        static ACTIVE: OnceLock<CpuLevel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let detected = CpuLevel::detected();
            let Ok(value) = std::env::var("HEARTH_CPU") else {
                return detected;
            };
            let (level, warning) = resolve_override(&value, detected);
            if let Some(w) = warning {
                eprintln!("hearth: {w}");
            }
            level
        })
    }

    /// Whether this machine can run kernels of this level.
    pub fn is_supported(self) -> bool {
        self <= CpuLevel::detected()
    }

    /// The levels this machine supports, lowest first (tests run each).
    pub fn supported() -> impl Iterator<Item = CpuLevel> {
        CpuLevel::ALL.into_iter().filter(|l| l.is_supported())
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `HEARTH_CPU=value` on a machine whose best level is `detected`: the level
/// to use and, if the value was not taken as is, why.
fn resolve_override(value: &str, detected: CpuLevel) -> (CpuLevel, Option<String>) {
    match CpuLevel::from_name(value) {
        None => (
            detected,
            Some(format!(
                "HEARTH_CPU={value:?} is not one of scalar, avx2, avx512, amx; using {detected}"
            )),
        ),
        Some(l) if l > detected => (
            detected,
            Some(format!(
                "HEARTH_CPU={l} is not supported by this CPU; using {detected}"
            )),
        ),
        Some(l) => (l, None),
    }
}

/// The CPU features the kernels care about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2.
    pub avx2: bool,
    /// FMA3.
    pub fma: bool,
    /// F16C (f16 <-> f32 conversion).
    pub f16c: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 byte/word instructions.
    pub avx512bw: bool,
    /// AVX-512 on 128/256-bit registers.
    pub avx512vl: bool,
    /// AVX-512 VNNI (`vpdpbusd`).
    pub avx512vnni: bool,
    /// AVX-512 BF16 (`vdpbf16ps`).
    pub avx512bf16: bool,
    /// AVX-512 FP16.
    pub avx512fp16: bool,
    /// AVX-512 VBMI (byte permutes).
    pub avx512vbmi: bool,
    /// CPUID reports AMX-TILE.
    pub amx_tile: bool,
    /// CPUID reports AMX-INT8.
    pub amx_int8: bool,
    /// CPUID reports AMX-BF16.
    pub amx_bf16: bool,
    /// The OS saves tile state (XCR0 bits 17 and 18) and granted this
    /// process the tile data permission (Linux `ARCH_REQ_XCOMP_PERM`).
    pub amx_usable: bool,
}

impl CpuFeatures {
    /// The best level these features allow.
    pub fn level(&self) -> CpuLevel {
        let avx2 = self.avx2 && self.fma && self.f16c;
        let avx512 = avx2 && self.avx512f && self.avx512bw && self.avx512vl && self.avx512vnni;
        let amx = avx512 && self.amx_tile && self.amx_int8 && self.amx_usable;
        if amx {
            CpuLevel::Amx
        } else if avx512 {
            CpuLevel::Avx512
        } else if avx2 {
            CpuLevel::Avx2
        } else {
            CpuLevel::Scalar
        }
    }
}

/// The features of this machine (detected once, then cached).
pub fn features() -> &'static CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    use std::arch::is_x86_feature_detected as has;
    let mut f = CpuFeatures {
        avx2: has!("avx2"),
        fma: has!("fma"),
        f16c: has!("f16c"),
        avx512f: has!("avx512f"),
        avx512bw: has!("avx512bw"),
        avx512vl: has!("avx512vl"),
        avx512vnni: has!("avx512vnni"),
        avx512bf16: has!("avx512bf16"),
        avx512fp16: has!("avx512fp16"),
        avx512vbmi: has!("avx512vbmi"),
        ..CpuFeatures::default()
    };
    // AMX is not known to `is_x86_feature_detected!` on stable Rust: CPUID
    // leaf 7 sub-leaf 0, EDX bits 22 (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8).
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is only read when the
    // maximum basic leaf (leaf 0's EAX) includes it.
    #[allow(unused_unsafe)]
    let edx7 = unsafe {
        if std::arch::x86_64::__cpuid(0).eax >= 7 {
            std::arch::x86_64::__cpuid_count(7, 0).edx
        } else {
            0
        }
    };
    f.amx_bf16 = edx7 & (1 << 22) != 0;
    f.amx_tile = edx7 & (1 << 24) != 0;
    f.amx_int8 = edx7 & (1 << 25) != 0;
    f.amx_usable = f.amx_tile && has!("xsave") && os_saves_tiles() && request_tile_permission();
    f
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures::default()
}

/// XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS context-switches the
/// tile registers.
#[cfg(target_arch = "x86_64")]
fn os_saves_tiles() -> bool {
    // CPUID.1:ECX.OSXSAVE (bit 27): XGETBV is enabled.
    // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let ecx1 = unsafe { std::arch::x86_64::__cpuid(1).ecx };
    if ecx1 & (1 << 27) == 0 {
        return false;
    }
    let lo: u32;
    let hi: u32;
    // SAFETY: OSXSAVE is set, so XGETBV with ECX = 0 (XCR0) is valid; it only
    // writes EAX/EDX.
    unsafe {
        std::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        );
    }
    let xcr0 = (u64::from(hi) << 32) | u64::from(lo);
    xcr0 & (0b11 << 17) == 0b11 << 17
}

/// Asks Linux for permission to use the AMX tile data state
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, kernel >= 5.16),
/// then checks it was granted. The permission is per process, so threads
/// spawned later (the pool's workers) inherit it.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these codes only updates the process's
    // permission bitmap (request) or writes one u64 through the pointer we
    // pass (get), which points to a live local.
    unsafe {
        if libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) != 0
        {
            return false;
        }
        let mut bitmap: u64 = 0;
        if libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut bitmap as *mut u64,
        ) != 0
        {
            return false;
        }
        bitmap & (1 << XFEATURE_XTILEDATA) != 0
    }
}

/// Other systems: AMX is not used.
#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// A one-line summary for `hearth bench` / `--verbose`, e.g. `x86-64:
/// AVX2 FMA F16C, AVX-512 F BW VL VNNI BF16, AMX-TILE INT8 BF16 (usable);
/// kernels: avx512 (HEARTH_CPU=avx512; best: amx)`.
pub fn describe() -> String {
    let f = features();
    let mut parts = Vec::new();
    fn flags(list: &[(bool, &'static str)]) -> Vec<&'static str> {
        list.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
    let base = flags(&[(f.avx2, "AVX2"), (f.fma, "FMA"), (f.f16c, "F16C")]);
    if !base.is_empty() {
        parts.push(base.join(" "));
    }
    let avx512 = flags(&[
        (f.avx512f, "F"),
        (f.avx512bw, "BW"),
        (f.avx512vl, "VL"),
        (f.avx512vnni, "VNNI"),
        (f.avx512bf16, "BF16"),
        (f.avx512fp16, "FP16"),
        (f.avx512vbmi, "VBMI"),
    ]);
    if !avx512.is_empty() {
        parts.push(format!("AVX-512 {}", avx512.join(" ")));
    }
    let amx = flags(&[
        (f.amx_tile, "TILE"),
        (f.amx_int8, "INT8"),
        (f.amx_bf16, "BF16"),
    ]);
    if !amx.is_empty() {
        let usable = if f.amx_usable {
            "usable"
        } else {
            "not enabled by the OS"
        };
        parts.push(format!("AMX-{} ({usable})", amx.join(" ")));
    }
    let arch = std::env::consts::ARCH;
    let features = if parts.is_empty() {
        "no SIMD extensions used".to_string()
    } else {
        parts.join(", ")
    };
    let active = CpuLevel::active();
    let detected = CpuLevel::detected();
    let why = if active == detected {
        "best available".to_string()
    } else {
        format!("HEARTH_CPU; best: {detected}")
    };
    format!("{arch}: {features}; kernels: {active} ({why})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in CpuLevel::ALL {
            assert_eq!(CpuLevel::from_name(l.name()), Some(l));
        }
        assert_eq!(CpuLevel::from_name(" AVX512 "), Some(CpuLevel::Avx512));
        assert_eq!(CpuLevel::from_name("sse"), None);
    }

    #[test]
    fn override_is_clamped_to_the_machine() {
        let (l, w) = resolve_override("amx", CpuLevel::Avx2);
        assert_eq!(l, CpuLevel::Avx2);
        assert!(w.unwrap().contains("not supported"));
        let (l, w) = resolve_override("scalar", CpuLevel::Avx512);
        assert_eq!((l, w), (CpuLevel::Scalar, None));
        let (l, w) = resolve_override("fast", CpuLevel::Avx512);
        assert_eq!(l, CpuLevel::Avx512);
        assert!(w.unwrap().contains("not one of"));
    }

    #[test]
    fn levels_follow_features() {
        let mut f = CpuFeatures::default();
        assert_eq!(f.level(), CpuLevel::Scalar);
        f.avx2 = true;
        f.fma = true;
        assert_eq!(f.level(), CpuLevel::Scalar, "F16C is required too");
        f.f16c = true;
        assert_eq!(f.level(), CpuLevel::Avx2);
        f.avx512f = true;
        f.avx512bw = true;
        f.avx512vl = true;
        assert_eq!(f.level(), CpuLevel::Avx2, "VNNI is required too");
        f.avx512vnni = true;
        assert_eq!(f.level(), CpuLevel::Avx512);
        f.amx_tile = true;
        f.amx_int8 = true;
        assert_eq!(f.level(), CpuLevel::Avx512, "the OS must enable tiles");
        f.amx_usable = true;
        assert_eq!(f.level(), CpuLevel::Amx);
    }

    #[test]
    fn detection_is_consistent() {
        let d = CpuLevel::detected();
        assert!(CpuLevel::active() <= d);
        assert!(CpuLevel::supported().any(|l| l == CpuLevel::Scalar));
        assert_eq!(CpuLevel::supported().last(), Some(d));
        assert!(describe().contains(CpuLevel::active().name()));
    }
}
