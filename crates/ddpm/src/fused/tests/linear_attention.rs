use burn::tensor::{Distribution, Tensor, TensorData};

use super::close;
use crate::fused::linear_attention::{HeadDims, linear_attention as kernel};
use crate::test_util::{device, values};
use crate::unet::ops::{linear_attention, linear_attention_composite};

/// The kernel on random q, k, v and memory slots of `dims`, against the burn operations.
fn check(batch: usize, dims: HeadDims, [h, w]: [usize; 2], spread: f64) {
    let device = device();
    let hidden = dims.heads * dims.dim_head;
    let normal = Distribution::Normal(0.0, spread);
    let qkv = Tensor::<4>::random([batch, 3 * hidden, h, w], normal, &device);
    let memory = Tensor::<4>::random([2, dims.heads, dims.dim_head, dims.memory], normal, &device);
    let want = linear_attention_composite(qkv.clone(), memory.clone(), dims.heads);
    assert_eq!(want.dims(), [batch, hidden, h, w]);
    let got = kernel(&values(qkv.clone()), &values(memory.clone()), dims);
    close(
        &got,
        &values(want.clone()),
        &format!("{dims:?} batch {batch}"),
    );
    // The public function takes the kernel on flex without gradients.
    let routed = linear_attention(qkv, memory, dims.heads);
    assert_eq!(values(routed), got, "fused::linear_attention is the kernel");
}

#[test]
fn kernel_equals_the_burn_operations() {
    let dims = |heads, dim_head, pixels, memory| HeadDims {
        heads,
        dim_head,
        pixels,
        memory,
    };
    check(1, dims(1, 3, 35, 4), [5, 7], 1.0);
    check(3, dims(2, 8, 35, 4), [7, 5], 1.0);
    check(2, dims(4, 32, 49, 4), [7, 7], 1.0);
    check(2, dims(2, 4, 1, 4), [1, 1], 1.0);
    // Logits far outside exp's range: the maxima must be subtracted first.
    check(2, dims(2, 4, 12, 4), [3, 4], 60.0);
}

#[test]
fn one_channel_heads_average_v_by_the_softmax_of_k() {
    // dim_head 1: q's softmax over one channel is 1 and the scale is 1, so every output pixel
    // is Σ_j softmax(k)_j · v_j over the memory slot and the two pixels. k = (ln 2 | 0, ln 5)
    // gives weights (2, 1, 5) / 8; v = (16 | 8, 24): (32 + 8 + 120) / 8 = 20.
    let dims = HeadDims {
        heads: 1,
        dim_head: 1,
        pixels: 2,
        memory: 1,
    };
    let (ln2, ln5) = (2f32.ln(), 5f32.ln());
    let qkv = [0.3, -7.0, 0.0, ln5, 8.0, 24.0];
    let memory = [ln2, 16.0];
    let out = kernel(&qkv, &memory, dims);
    close(&out, &[20.0, 20.0], "out");
    // The same through burn's operations, as a check on the reference itself.
    let device = device();
    let composite = linear_attention_composite(
        Tensor::from_data(TensorData::new(qkv.to_vec(), [1, 3, 1, 2]), &device),
        Tensor::from_data(TensorData::new(memory.to_vec(), [2, 1, 1, 1]), &device),
        1,
    );
    close(&values(composite), &[20.0, 20.0], "composite");
}
