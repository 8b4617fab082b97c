// Element-wise ops over the first `step.n_tokens` tokens of `width` values each, one value per
// invocation: SwiGLU (`silu_mul`: x = silu(x) · y), GeGLU (`gelu_mul`: x = gelu(x) · y), the
// residual add (`add`: x += y), a bias on every token (`add_bias`: x[t] += y) and a constant
// factor (`scale`: x *= factor; y unused).
// Workgroups beyond the 65535 of one dispatch dimension spill into y.

struct EltParams {
    width: u32,
    factor: f32,
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

// GELU as ggml's CPU backend computes it for GeGLU: the argument rounded to f16, the tanh form
// 0.5·g·(1 + tanh(√(2/π)·g·(1 + 0.044715·g²))) evaluated in f32 and rounded to f16 (its
// `table_gelu_f16`, which holds exactly that for every f16), and beyond ±10 the limits 0 and g.
fn gelu_f16(v: f32) -> f32 {
    if (v <= -10.0) {
        return 0.0;
    }
    if (v >= 10.0) {
        return v;
    }
    let g = unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
    // tanh from one exponential, 1 - 2/(e^2|a| + 1), so that near -1 it rounds to the f32
    // below 1 as libm's tanhf does (some drivers' tanh returns exactly -1 there, which turns
    // the small GELUs of arguments below -4 into 0). |a| < 44 here: e^88 stays finite.
    let a = 0.7978846 * g * (1.0 + 0.044715 * g * g);
    let t = sign(a) * (1.0 - 2.0 / (exp(2.0 * abs(a)) + 1.0));
    let r = 0.5 * g * (1.0 + t);
    return unpack2x16float(pack2x16float(vec2<f32>(r, 0.0))).x;
}

// x = gelu(x) · y.
@compute @workgroup_size(256)
fn gelu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= step.n_tokens * params.width) {
        return;
    }
    x[i] = gelu_f16(x[i]) * y[i];
}

// x[t] += y for every token t: y holds one token's `width` values (a bias).
@compute @workgroup_size(256)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= step.n_tokens * params.width) {
        return;
    }
    x[i] = x[i] + y[i % params.width];
}

// x *= factor.
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= step.n_tokens * params.width) {
        return;
    }
    x[i] = x[i] * params.factor;
}
