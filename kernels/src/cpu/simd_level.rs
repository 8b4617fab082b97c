//! Which SIMD kernels this CPU runs, chosen once at run time as llama.cpp's prebuilt binaries
//! choose their CPU variant: the widest instruction set the CPU has, else the next, down to the
//! portable loops. Every level computes the same bits (each is tested against the portable
//! reference), so the choice changes only speed.

/// A set of row kernels for the quantised matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// Plain Rust loops (what the compiler vectorises for the build's baseline).
    Portable,
    /// x86-64 AVX2 + F16C: eight rows per 256-bit register, bytes multiplied by `vpmaddubsw`.
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with VNNI: sixteen rows per 512-bit register, four byte
    /// products summed into each i32 lane by `vpdpbusd`, and several tokens per weight load.
    Avx512Vnni,
    /// wasm32 SIMD128 (fixed at build time: wasm has no run-time detection inside a module).
    Simd128,
    /// aarch64 NEON with the dot-product extension (`sdot`): every Apple Silicon and
    /// most ARM servers and phones since 2018.
    NeonDotprod,
}

impl SimdLevel {
    /// The level the kernels run at: the best this CPU has, or the one the environment
    /// variable `HEARTH_CPU_KERNELS` names (for comparing levels on one machine) if this CPU
    /// has it. Decided once per process.
    pub fn detected() -> Self {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let available = Self::available();
            #[cfg(not(target_arch = "wasm32"))]
            if let Ok(name) = std::env::var("HEARTH_CPU_KERNELS")
                && let Some(&chosen) = available.iter().find(|l| l.name() == name)
            {
                return chosen;
            }
            *available.last().expect("the portable level is always available")
        })
    }

    /// Every level this CPU can run, worst first (tests check each against the portable one).
    pub fn available() -> Vec<Self> {
        // Only targets with SIMD levels add to it.
        #[allow(unused_mut)]
        let mut levels = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("f16c") {
                levels.push(Self::Avx2);
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    levels.push(Self::Avx512Vnni);
                }
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        levels.push(Self::Simd128);
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            levels.push(Self::NeonDotprod);
        }
        levels
    }

    /// A short name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512Vnni => "avx512-vnni",
            Self::Simd128 => "simd128",
            Self::NeonDotprod => "neon-dotprod",
        }
    }

    /// Whether this level includes the AVX2 + F16C kernels (AVX-512 machines run those for
    /// the ops that have no wider version).
    pub(crate) fn has_avx2(self) -> bool {
        matches!(self, Self::Avx2 | Self::Avx512Vnni)
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_is_always_there_and_the_detected_level_is_one_this_cpu_has() {
        let levels = SimdLevel::available();
        assert_eq!(levels[0], SimdLevel::Portable);
        assert!(levels.contains(&SimdLevel::detected()));
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx2") {
            assert_eq!(*levels.last().unwrap(), SimdLevel::Avx512Vnni);
        }
    }
}
