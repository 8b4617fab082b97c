// Rotary position embedding in place, one invocation per rotated pair of one head of one
// token (tokens of n_heads · head_dim values; token t sits at position step.pos + t).
//
// Pair i (i < n_rot / 2) of a head turns by θ_i = pos · base^(-2i / n_rot):
//   (a, b) <- (a·cos θ - b·sin θ, a·sin θ + b·cos θ)
// where (a, b) = (x[2i], x[2i+1]) in the llama ("normal") layout and (x[i], x[i + n_rot/2])
// in the NeoX layout. Dimensions from n_rot on are left alone.
//
// θ_i is computed in closed form, pos · 2^(i · log2(theta_scale)), with theta_scale =
// base^(-2/n_rot) rounded to f32 as the CPU twin rounds it (log2 of it taken on the host).
// The twin instead multiplies by theta_scale i times; both are within a few ulp of θ_i,
// which at θ ≈ 4000 is a few 1e-4 rad. sin and cos are computed here, not by the driver:
// WGSL only bounds their error on [-π, π], and some implementations reduce large arguments
// in plain f32 (≈1e-3 rad lost at θ ≈ 8000).

struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    // 1: NeoX layout.
    neox: u32,
    log2_theta_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<uniform> params: RopeParams;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

const WG: u32 = 256u;

// (sin θ, cos θ). θ = k·π/2 + r with |r| ≤ π/4: k·π/2 is subtracted in three parts
// (Cody-Waite; the first two have at most 8 significant bits, so k · part is exact for
// k < 2^16, i.e. θ up to ~100000), then Cephes' single-precision minimax polynomials for sin
// and cos on [-π/4, π/4] (about 1 ulp), rotated by the k quarter turns.
fn sin_cos(theta: f32) -> vec2<f32> {
    let k = round(theta * 0.636619772367581343); // 2/π
    // π/2 = 1.5703125 + 4.84466552734375e-4 - 6.397578431460715e-7 (+ 5e-15).
    let r = ((theta - k * 1.5703125) - k * 4.84466552734375e-4) + k * 6.397578431460715e-7;
    let r2 = r * r;
    let s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4));
    let c = 1.0 - 0.5 * r2
        + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5));
    switch (bitcast<u32>(i32(k)) & 3u) {
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let p = gid.x + gid.y * groups.x * WG;
    let half = params.n_rot / 2u;
    let pairs_per_token = params.n_heads * half;
    if (p >= step.n_tokens * pairs_per_token) {
        return;
    }
    let t = p / pairs_per_token;
    let h = (p % pairs_per_token) / half;
    let i = p % half;
    let head = (t * params.n_heads + h) * params.head_dim;
    var ia = head + 2u * i;
    var ib = ia + 1u;
    if (params.neox != 0u) {
        ia = head + i;
        ib = ia + half;
    }
    let theta = f32(step.pos + t) * exp2(f32(i) * params.log2_theta_scale);
    let sc = sin_cos(theta);
    let a = x[ia];
    let b = x[ib];
    x[ia] = a * sc.y - b * sc.x;
    x[ib] = a * sc.x + b * sc.y;
}
