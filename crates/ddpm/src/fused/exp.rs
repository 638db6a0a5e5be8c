//! `eˣ` without branches or a library call, so that the kernels' loops over it vectorise
//! (libm's `expf` is a scalar call per element). Cephes' `expf`: `x = k·ln 2 + r` with
//! `|r| ≤ ln 2 / 2`, a degree-7 polynomial for `eʳ` and `2ᵏ` built in the exponent bits.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts, so that `x − k·ln 2` loses no bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2²³ rounds an `f32` below 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// Inputs are clamped to where `eˣ` is a normal `f32`: below it the result is ≈ 1.2e-38
/// instead of smaller, above it ≈ 2.2e38 instead of infinite.
const LOWEST: f32 = -87.3;
const HIGHEST: f32 = 88.3;

/// `eˣ`, within 2 units in the last place of `f32` on `[−87.3, 88.3]`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(LOWEST, HIGHEST);
    let shifted = x * LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2ᵏ: k + 127 in the exponent field (k ∈ [−126, 127] after the clamp). k is read from the
    // bits of `shifted` (its mantissa holds 2²² + k) rather than converted from `f32`, which
    // would keep the loop scalar.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let two_k = f32::from_bits(biased << 23);
    er * two_k
}

/// `x · sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `sigmoid(x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}
