// y = W x for a row-major f32 matrix W [rows, cols] and vector x [cols].
//
// One workgroup per output row: its 64 invocations stride across the row's columns, then
// combine their partial sums with a tree reduction in workgroup memory. Rows beyond the
// 65535-workgroup limit of one dimension spill into the y dimension of the dispatch.

struct Params {
    rows: u32,
    cols: u32,
    // Workgroups dispatched along x; row = wg.x + wg.y * groups_x.
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn matvec_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * params.groups_x;
    // Uniform per workgroup, so the early return keeps the barriers below uniform too.
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var sum = 0.0;
    for (var c = lid; c < params.cols; c += WG) {
        sum += w[base + c] * x[c];
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[row] = partial[0];
    }
}
