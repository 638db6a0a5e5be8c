//! The U-Net in lucidrains' terms: the `state_dict` key of each tensor, and the configuration a
//! lucidrains `Unet` (2.3.x) state dict was built with, read off its keys and shapes. The layers
//! are the same module for module, so moving weights across is renaming keys and transposing
//! `nn.Linear` weights (PyTorch stores them `[out, in]`, burn `[in, out]`).

use std::collections::BTreeMap;

use burn::store::{ModuleSnapshot, burn_pack};

use super::{MAX_WIDTH, NUM_MEM_KV, Unet, UnetConfig};

/// Why a state dict cannot be read as a lucidrains `Unet` this crate implements.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LucidrainsError {
    /// A tensor the layout needs is not there.
    #[error("no tensor `{0}`: not a lucidrains Unet state dict, or an incomplete one")]
    Missing(String),
    /// A tensor has a shape the layout does not allow.
    #[error("`{key}` has shape {shape:?}, expected {expected}")]
    Shape {
        /// The key.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// A variant of lucidrains' code this crate does not implement, named.
    #[error("{0} is not implemented here")]
    Unsupported(String),
    /// The keys and shapes describe no configuration this crate can build.
    #[error("the inferred configuration is invalid: {0}")]
    Config(String),
}

/// One tensor of a U-Net as lucidrains' code has it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateDictEntry {
    /// The burn module path (`downs.0.attn.Linear.to_out.weight`).
    pub path: String,
    /// lucidrains' `state_dict` key (`downs.0.2.to_out.0.weight`).
    pub key: String,
    /// The shape in PyTorch (a Linear weight's transposed).
    pub shape: Vec<usize>,
    /// Whether PyTorch stores it transposed (`nn.Linear` weights).
    pub transposed: bool,
}

impl StateDictEntry {
    /// lucidrains' key, PyTorch shape and layout of one of a model's tensors (as
    /// `Module::collect` gives them).
    pub fn of(tensor: &burn_pack::Tensor) -> Self {
        let transposed = is_linear_weight(&tensor.name);
        let mut shape = tensor.shape.as_slice().to_vec();
        if transposed {
            shape.reverse();
        }
        Self {
            key: state_dict_key(&tensor.name),
            path: tensor.name.clone(),
            shape,
            transposed,
        }
    }
}

/// Every tensor of `model` with its lucidrains key and PyTorch shape, in burn's order.
pub fn state_dict(model: &Unet) -> Vec<StateDictEntry> {
    model
        .collect(None, None, false)
        .iter()
        .map(StateDictEntry::of)
        .collect()
}

/// Whether the tensor at burn path `path` is an `nn.Linear` weight: the ResNet blocks' FiLM
/// projection (`mlp`) and the time and class MLPs.
fn is_linear_weight(path: &str) -> bool {
    path.ends_with(".mlp.weight") || (path.ends_with(".weight") && path.contains("_mlp."))
}

/// lucidrains' `state_dict` key for the tensor at burn module path `path`.
pub fn state_dict_key(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let mut key: Vec<&str> = Vec::with_capacity(parts.len() + 1);
    let mut linear_attention = false;
    let rest: &[&str] = match parts.as_slice() {
        // downs.i / ups.i are ModuleLists: [ResnetBlock, ResnetBlock, attention, resampling].
        [stages @ ("downs" | "ups"), level, part, rest @ ..] => {
            key.extend([*stages, *level]);
            match (*part, rest) {
                ("block1", rest) => {
                    key.push("0");
                    rest
                }
                ("block2", rest) => {
                    key.push("1");
                    rest
                }
                // The enum variant (Linear, Full) is burn's, not a module of lucidrains'.
                ("attn", [variant, rest @ ..]) => {
                    key.push("2");
                    linear_attention = *variant == "Linear";
                    rest
                }
                // Downsample and Upsample are Sequentials whose conv is their second module;
                // the innermost level has a bare conv instead (burn's variant `Same`).
                ("downsample" | "upsample", [variant, rest @ ..]) => {
                    key.push("3");
                    if *variant != "Same" {
                        key.push("1");
                    }
                    rest
                }
                (other, rest) => {
                    key.push(other);
                    rest
                }
            }
        }
        // Sequential(SinusoidalPosEmb, Linear, GELU, Linear).
        ["time_mlp", linear, rest @ ..] => {
            key.extend(["time_mlp", if *linear == "linear1" { "1" } else { "3" }]);
            rest
        }
        // The class embedding's tensors sit at the top of lucidrains' classifier-free-guidance
        // Unet; its MLP is Sequential(Linear, GELU, Linear).
        ["classes", "classes_mlp", linear, rest @ ..] => {
            key.extend(["classes_mlp", if *linear == "linear1" { "0" } else { "2" }]);
            rest
        }
        ["classes", rest @ ..] => rest,
        ["mid_attn", rest @ ..] => {
            key.push("mid_attn");
            rest
        }
        [block, rest @ ..] => {
            key.push(block);
            rest
        }
        [] => &[],
    };
    match rest {
        // ResnetBlock.mlp = Sequential(SiLU, Linear).
        ["mlp", leaf] => key.extend(["mlp", "1", leaf]),
        // LinearAttention.to_out = Sequential(Conv2d, RMSNorm).
        ["to_out", leaf] if linear_attention => key.extend(["to_out", "0", leaf]),
        ["to_out_norm", leaf] => key.extend(["to_out", "1", leaf]),
        rest => key.extend(rest),
    }
    key.join(".")
}

/// The configuration of the lucidrains `Unet` whose `state_dict` has these keys and shapes.
///
/// What the tensors cannot tell keeps lucidrains' default (`sinusoidal_pos_emb_theta`,
/// `dropout`). Variants this crate does not implement are refused by name: learned or
/// random-Fourier time embeddings, attention heads that differ between levels, the
/// classifier-free-guidance module's older layout. Whether every key is used and every shape
/// right is for the caller to check against [`state_dict`] of the model this builds.
pub fn infer_config(shapes: &BTreeMap<String, Vec<usize>>) -> Result<UnetConfig, LucidrainsError> {
    let shape = |key: &str| {
        shapes
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| LucidrainsError::Missing(key.to_string()))
    };
    let bad = |key: &str, expected: String| LucidrainsError::Shape {
        key: key.to_string(),
        shape: shapes.get(key).cloned().unwrap_or_default(),
        expected,
    };
    refuse_unsupported(shapes)?;
    let &[init_dim, input_channels, 7, 7] = shape("init_conv.weight")? else {
        return Err(bad("init_conv.weight", "[init_dim, channels, 7, 7]".into()));
    };
    let &[time_dim, dim] = shape("time_mlp.1.weight")? else {
        return Err(bad("time_mlp.1.weight", "[4·dim, dim]".into()));
    };
    // dim divides every level's width below, and the file sets it: 0 or a huge one is refused.
    if !(1..=MAX_WIDTH).contains(&dim) {
        return Err(bad(
            "time_mlp.1.weight",
            format!("[4·dim, dim] with dim from 1 to {MAX_WIDTH}"),
        ));
    }
    if time_dim != 4 * dim {
        return Err(bad("time_mlp.1.weight", format!("[{}, {dim}]", 4 * dim)));
    }
    let levels = (0..)
        .take_while(|i| shapes.contains_key(&format!("downs.{i}.0.block1.proj.weight")))
        .count();
    if levels == 0 {
        return Err(LucidrainsError::Missing(
            "downs.0.0.block1.proj.weight".into(),
        ));
    }
    let (mut dim_in, mut dim_mults, mut full_attn, mut heads) = (init_dim, vec![], vec![], vec![]);
    for i in 0..levels {
        let (key, expected) = if i + 1 < levels {
            (
                format!("downs.{i}.3.1.weight"),
                [dim_in.saturating_mul(4), 1, 1],
            )
        } else {
            (format!("downs.{i}.3.weight"), [dim_in, 3, 3])
        };
        let dim_out = match shape(&key)? {
            [out, rest @ ..] if rest == expected && out % dim == 0 && *out > 0 => *out,
            _ => return Err(bad(&key, format!("[k·{dim}, {expected:?}…]"))),
        };
        dim_mults.push(dim_out / dim);
        let full = !shapes.contains_key(&format!("downs.{i}.2.to_out.0.weight"));
        full_attn.push(full);
        heads.push(attention_heads(&format!("downs.{i}.2"), full, shapes)?);
        dim_in = dim_out;
    }
    heads.push(attention_heads("mid_attn", true, shapes)?);
    // The widest conv, checked before anything is built: its tensor is in the file, so what
    // the inferred U-Net allocates stays within a small multiple of the file's size.
    let key = "mid_block1.block1.proj.weight";
    if shape(key)? != [dim_in, dim_in, 3, 3] {
        return Err(bad(key, format!("[{dim_in}, {dim_in}, 3, 3]")));
    }
    if let Some((i, other)) = heads.iter().enumerate().find(|(_, h)| **h != heads[0]) {
        let at = |i: usize| match i {
            i if i == levels => "mid_attn".to_string(),
            i => format!("downs.{i}.2"),
        };
        return Err(LucidrainsError::Unsupported(format!(
            "attention that differs between levels (per-level attn_heads / attn_dim_head: {} has {} heads of {}, {} has {} of {})",
            at(0),
            heads[0].0,
            heads[0].1,
            at(i),
            other.0,
            other.1
        )));
    }
    let (channels, self_condition) = match input_channels {
        1 | 3 => (input_channels, false),
        2 | 6 => (input_channels / 2, true),
        n => {
            return Err(LucidrainsError::Unsupported(format!(
                "a U-Net taking {n} input channels (`init_conv.weight`; images here are gray or RGB, self-conditioned or not: 1, 3, 2 or 6)"
            )));
        }
    };
    let learned_variance = match shape("final_conv.weight")? {
        [out, ..] if *out == channels => false,
        [out, ..] if *out == 2 * channels => true,
        _ => {
            return Err(bad(
                "final_conv.weight",
                format!(
                    "[{channels} or {}, …] (a custom out_dim is not implemented)",
                    2 * channels
                ),
            ));
        }
    };
    let innermost_only = full_attn
        .iter()
        .enumerate()
        .all(|(i, f)| *f == (i + 1 == levels));
    let config = UnetConfig::new(dim)
        .with_init_dim((init_dim != dim).then_some(init_dim))
        .with_dim_mults(dim_mults)
        .with_channels(channels)
        .with_self_condition(self_condition)
        .with_learned_variance(learned_variance)
        .with_attn_heads(heads[0].0)
        .with_attn_dim_head(heads[0].1)
        .with_full_attn((!innermost_only).then_some(full_attn));
    config
        .validate()
        .map_err(|e| LucidrainsError::Config(e.to_string()))?;
    Ok(config)
}

/// Names what a state dict uses that this crate does not implement.
fn refuse_unsupported(shapes: &BTreeMap<String, Vec<usize>>) -> Result<(), LucidrainsError> {
    let unsupported = |what: &str| Err(LucidrainsError::Unsupported(what.to_string()));
    if shapes.contains_key("time_mlp.0.weights") {
        return unsupported(
            "a learned or random-Fourier time embedding (`time_mlp.0.weights`: learned_sinusoidal_cond / random_fourier_features)",
        );
    }
    if shapes.keys().any(|k| k.contains(".fn.")) {
        return unsupported(
            "the layout of lucidrains' classifier_free_guidance.Unet (attention inside PreNorm, `….fn.fn.to_qkv`, without memory key/values)",
        );
    }
    if shapes.contains_key("classes_emb.weight") {
        return unsupported(
            "a class embedding (`classes_emb.weight`) on lucidrains' 2.3 Unet layout (no lucidrains class writes one)",
        );
    }
    Ok(())
}

/// (heads, dim_head) of the attention at `prefix` (`downs.i.2`, `mid_attn`) from its memory
/// key/values: `[2, heads, dim_head, n]` in LinearAttention, `[2, heads, n, dim_head]` in
/// Attention, n = [`NUM_MEM_KV`].
fn attention_heads(
    prefix: &str,
    full: bool,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<(usize, usize), LucidrainsError> {
    let key = format!("{prefix}.mem_kv");
    let shape = shapes
        .get(&key)
        .ok_or_else(|| LucidrainsError::Missing(key.clone()))?;
    match (full, shape.as_slice()) {
        (false, &[2, heads, dim_head, NUM_MEM_KV]) | (true, &[2, heads, NUM_MEM_KV, dim_head]) => {
            Ok((heads, dim_head))
        }
        _ => Err(LucidrainsError::Shape {
            key,
            shape: shape.clone(),
            expected: if full {
                format!("[2, heads, {NUM_MEM_KV}, dim_head] (full attention)")
            } else {
                format!("[2, heads, dim_head, {NUM_MEM_KV}] (linear attention)")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::device;

    fn shapes(config: &UnetConfig) -> BTreeMap<String, Vec<usize>> {
        state_dict(&config.init(&device()))
            .into_iter()
            .map(|e| (e.key, e.shape))
            .collect()
    }

    #[test]
    fn keys_are_lucidrains_names() {
        let config = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_full_attn(Some(vec![false, true]));
        let keys = shapes(&config);
        // As `Unet(dim=8, dim_mults=(1, 2), channels=1, full_attn=(False, True))
        // .state_dict()` prints them (lucidrains 2.3.1).
        for (key, shape) in [
            ("time_mlp.1.weight", vec![32, 8]),
            ("time_mlp.3.bias", vec![32]),
            ("downs.0.0.mlp.1.weight", vec![16, 32]),
            ("downs.0.1.block2.norm.g", vec![1, 8, 1, 1]),
            ("downs.0.2.mem_kv", vec![2, 4, 32, 4]),
            ("downs.0.2.to_out.0.weight", vec![8, 128, 1, 1]),
            ("downs.0.2.to_out.1.g", vec![1, 8, 1, 1]),
            ("downs.0.3.1.weight", vec![8, 32, 1, 1]),
            ("downs.1.2.to_out.weight", vec![8, 128, 1, 1]),
            ("downs.1.3.weight", vec![16, 8, 3, 3]),
            ("mid_attn.mem_kv", vec![2, 4, 4, 32]),
            ("ups.0.0.res_conv.weight", vec![16, 24, 1, 1]),
            ("ups.0.3.1.weight", vec![8, 16, 3, 3]),
            ("ups.1.2.to_out.1.g", vec![1, 8, 1, 1]),
            ("ups.1.3.weight", vec![8, 8, 3, 3]),
            ("final_res_block.mlp.1.bias", vec![16]),
        ] {
            assert_eq!(keys.get(key), Some(&shape), "{key}");
        }
        assert_eq!(
            keys.len(),
            154 - 13,
            "lucidrains' 154 keys less the diffusion's 13 buffers"
        );
    }

    #[test]
    fn the_configuration_comes_back_from_the_keys_and_shapes() {
        let configs = [
            UnetConfig::new(8)
                .with_dim_mults(vec![1, 2])
                .with_channels(1),
            UnetConfig::new(6)
                .with_init_dim(Some(10))
                .with_dim_mults(vec![1, 2, 3])
                .with_channels(3)
                .with_self_condition(true)
                .with_learned_variance(true)
                .with_attn_heads(2)
                .with_attn_dim_head(8)
                .with_full_attn(Some(vec![true, false, true])),
        ];
        for config in configs {
            assert_eq!(infer_config(&shapes(&config)), Ok(config));
        }
    }

    #[test]
    fn what_is_not_implemented_is_refused_by_name() {
        let base = shapes(
            &UnetConfig::new(8)
                .with_dim_mults(vec![1, 2])
                .with_channels(1),
        );
        let with = |key: &str, shape: Vec<usize>| {
            let mut s = base.clone();
            s.insert(key.into(), shape);
            infer_config(&s).expect_err(key).to_string()
        };
        assert!(with("time_mlp.0.weights", vec![8]).contains("random-Fourier"));
        assert!(with("downs.0.2.fn.fn.to_qkv.weight", vec![384, 8, 1, 1]).contains("PreNorm"));
        assert!(with("classes_emb.weight", vec![10, 8]).contains("class embedding"));
        let heads = with("downs.0.2.mem_kv", vec![2, 2, 16, 4]);
        assert!(
            heads.contains("per-level") && heads.contains("2 heads of 16"),
            "{heads}"
        );
        assert!(with("init_conv.weight", vec![8, 4, 7, 7]).contains("4 input channels"));
        let out = with("final_conv.weight", vec![5, 8, 1, 1]);
        assert!(
            out.contains("`final_conv.weight` has shape [5, 8, 1, 1]"),
            "{out}"
        );
        let wide = with("mid_block1.block1.proj.weight", vec![4096, 16, 3, 3]);
        assert!(wide.contains("expected [16, 16, 3, 3]"), "{wide}");
        let mut missing = base.clone();
        missing.remove("mid_attn.mem_kv");
        assert_eq!(
            infer_config(&missing),
            Err(LucidrainsError::Missing("mid_attn.mem_kv".into()))
        );
    }
}
