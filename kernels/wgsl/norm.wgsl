// RMSNorm: out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight, rows of `dim` values: each
// token's row, or each of its `rows_per_token` heads (gemma's q/k norms), or its last token.
//
// One workgroup per row: its 256 invocations stride across the row summing squares, combine
// the partial sums with a tree reduction in workgroup memory, then scale the row. The sum runs
// in f32 (the CPU twin sums in f64): the result differs by a few ulp of the scale.
// Rows beyond the 65535 workgroups of one dispatch dimension spill into y.

struct NormParams {
    dim: u32,
    eps: f32,
    // 1: normalise only the step's last token, into row 0 of `out`.
    last_token: u32,
    // Rows of `dim` values per token (1, or the heads when normalising each head).
    rows_per_token: u32,
}

@group(0) @binding(1) var<uniform> params: NormParams;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn rms_norm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wg.x + wg.y * groups.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (row >= step.n_tokens * params.rows_per_token) {
        return;
    }
    let dim = params.dim;
    var src = row * dim;
    var dst = row * dim;
    if (params.last_token != 0u) {
        src = (step.n_tokens - 1u) * dim;
        dst = 0u;
    }
    var sum = 0.0;
    for (var c = lid; c < dim; c += WG) {
        let v = x[src + c];
        sum += v * v;
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(partial[0] / f32(dim) + params.eps);
    for (var c = lid; c < dim; c += WG) {
        // (x · scale) · weight, in the twin's order.
        out[dst + c] = x[src + c] * scale * weight[c];
    }
}
