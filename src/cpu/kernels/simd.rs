//! One kernel body, compiled for each vector instruction set and picked at run time.
//!
//! The hand-written kernels are plain Rust loops over fixed-size blocks that LLVM vectorises; what decides
//! their speed is which instructions it may use. [`multiversion!`] compiles a body (a generic function with a
//! `const FMA: bool` parameter, `#[inline(always)]`) once for AVX-512, once for AVX2+FMA and once for the
//! target's baseline (SSE2 on x86-64, NEON on aarch64, SIMD128 in the browser's wasm), and dispatches on the
//! CPU found at run time. Call it inside each parallel task, not around the loop that spawns them: a closure
//! handed to rayon is compiled apart, for the baseline.

use std::cell::Cell;

pub use crate::cpu::Simd as Isa;

thread_local! {
    /// The widest instruction set kernels on this thread may use: set on each worker of a context's pool from
    /// [`crate::cpu::CpuOptions::max_simd`].
    static LIMIT: Cell<Isa> = const { Cell::new(Isa::Avx512) };
}

/// Limits the kernels run on this thread to `limit`.
pub(crate) fn limit_this_thread(limit: Isa) {
    LIMIT.with(|cell| cell.set(limit));
}

/// The instruction set kernels on this thread run with: the widest this CPU has, within the thread's limit.
/// (Only x86-64 has more than one.)
#[inline]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn isa() -> Isa {
    detected().min(LIMIT.with(Cell::get))
}

/// The widest instruction set this CPU has that the kernels are compiled for.
#[inline]
pub(crate) fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        // Each check is a load of a cached bit after the first.
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
    }
    Isa::Baseline
}

/// Whether the baseline has a fused multiply-add instruction (aarch64's NEON does; SSE2 and SIMD128 do not,
/// and there `f32::mul_add` would be a call into a software routine).
pub(crate) const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

/// `a * b + c`, one instruction where the kernel is compiled with FMA, else a multiply and an add.
#[inline(always)]
pub(crate) fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `pub(crate) fn $name(args) -> ret` that runs `$body::<FMA>(args)` compiled for the best instruction set.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body::<true>($($arg),*)
                }
                match $crate::cpu::kernels::simd::isa() {
                    // Safety: the instruction sets were detected on this CPU.
                    $crate::cpu::kernels::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::cpu::kernels::simd::Isa::Avx2Fma => return unsafe { avx2($($arg),*) },
                    $crate::cpu::kernels::simd::Isa::Baseline => {}
                }
            }
            $body::<{ $crate::cpu::kernels::simd::BASELINE_FMA }>($($arg),*)
        }
    };
}

pub(crate) use multiversion;
