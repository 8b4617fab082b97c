// Element-wise ops over the first `step.n_tokens` tokens of `width` values each, one value per
// invocation: SwiGLU (`silu_mul`: x = silu(x) · y) and the residual add (`add`: x += y).
// Workgroups beyond the 65535 of one dispatch dimension spill into y.

struct EltParams {
    width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<uniform> params: EltParams;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;

const WG: u32 = 256u;

// Index of this invocation's value, counting across the spill rows of the grid.
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

// exp(v) as ggml's `ggml_v_expf` (and the CPU twin `expf_ggml`): v = n·ln2 + b with n an
// integer and |b| ≤ ln2/2, exp(b) - 1 ≈ j by a degree-5 polynomial, and 2^n put straight into
// the exponent bits (k); the scale is split in two (s1·s2) when 2^n is outside the normal
// range. ggml rounds v·log2(e) to an integer by adding 1.5·2^23 and takes n from the low
// bits of that sum; `round` gives the same n without relying on the compiler keeping
// (z + c) - c. A driver may fuse the multiply-adds, which only moves the result within an ulp.
fn expf_ggml(v: f32) -> f32 {
    let n = round(v * bitcast<f32>(0x3fb8aa3bu)); // log2(e)
    // v - n·ln2, with ln2 split in a high and a low part.
    let b = (v - n * bitcast<f32>(0x3f317200u)) - n * bitcast<f32>(0x35bfbe8eu);
    let e = bitcast<u32>(i32(n)) << 23u;
    let k = bitcast<f32>(e + 0x3f800000u);
    let u = b * b;
    let j = ((bitcast<f32>(0x3c072010u) * b + bitcast<f32>(0x3d2b9f17u)) * u
        + (bitcast<f32>(0x3e2aaf33u) * b + bitcast<f32>(0x3efffedbu))) * u
        + bitcast<f32>(0x3f7ffff6u) * b;
    if (abs(n) <= 126.0) {
        return j * k + k;
    }
    // 2^n is subnormal or infinite: scale by s1·s2, or saturate to 0 / inf beyond ±192.
    let g = select(0u, 0x82000000u, n <= 0.0);
    let s1 = bitcast<f32>(g + 0x7f000000u);
    let s2 = bitcast<f32>(e - g);
    if (abs(n) > 192.0) {
        return s1 * s1;
    }
    return (s2 * j + s2) * s1;
}

// x = silu(x) · y, silu(g) = g / (1 + exp(-g)).
@compute @workgroup_size(256)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= step.n_tokens * params.width) {
        return;
    }
    let g = x[i];
    x[i] = g / (1.0 + expf_ggml(-g)) * y[i];
}

// x += y.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= step.n_tokens * params.width) {
        return;
    }
    x[i] = x[i] + y[i];
}
