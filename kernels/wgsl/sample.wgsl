// Argmax of logits[..n] (one row), in two phases so that a vocabulary of 262144 spreads over
// many workgroups: `argmax_partial` runs `groups` workgroups, each over its own contiguous
// chunk of the logits, and leaves its best candidate in `scratch`; `argmax_final`, one
// workgroup, reduces the candidates and writes the result to `out`.
//
// Logits are compared as integer keys (`order_key`), so the order does not depend on how a
// driver treats NaN, subnormals or signed zeros: NaN ranks below everything, -0 equals +0,
// and among equal keys the lower index wins. Results carry the logit's own bits.

struct SampleParams {
    // Logits considered.
    n: u32,
    // Logits per workgroup of the partial phase.
    chunk: u32,
    // Workgroups of the partial phase.
    groups: u32,
    _pad: u32,
}

@group(0) @binding(1) var<uniform> params: SampleParams;
// f32 bits.
@group(0) @binding(2) var<storage, read> logits: array<u32>;
// Pairs (key, index), one per workgroup of the partial phase.
@group(0) @binding(3) var<storage, read_write> scratch: array<u32>;
// One pair (index, f32 bits).
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
// Index of an empty slot; its key is 0 too, so every logit, even NaN, beats it.
const NONE: u32 = 0xffffffffu;

var<workgroup> keys: array<u32, WG>;
var<workgroup> idxs: array<u32, WG>;

// An unsigned key in the order of the f32 values: positives get the sign bit set, negatives
// are inverted (so larger magnitudes come lower), -0 maps as +0, NaN to 0.
fn order_key(bits: u32) -> u32 {
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    if (bits == 0x80000000u) {
        return 0x80000000u;
    }
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

// Whether candidate a ranks before candidate b.
fn better(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// Bits of the chosen logit (a NaN if the slot is empty, which n ≥ 1 rules out).
fn logit_bits(i: u32) -> u32 {
    if (i == NONE) {
        return 0x7fc00000u;
    }
    return logits[i];
}

// Tree reduction of keys/idxs[0..WG] to slot 0, best first.
fn reduce_best(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride && better(keys[lid + stride], idxs[lid + stride], keys[lid], idxs[lid])) {
            keys[lid] = keys[lid + stride];
            idxs[lid] = idxs[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn argmax_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = step.pos;
    let start = wg.x * params.chunk;
    let end = min(start + params.chunk, params.n);
    var bk = 0u;
    var bi = NONE;
    // Indices rise along each invocation's stride, so a strictly larger key is needed to win.
    for (var i = start + lid; i < end; i += WG) {
        let k = order_key(logits[i]);
        if (bi == NONE || k > bk) {
            bk = k;
            bi = i;
        }
    }
    keys[lid] = bk;
    idxs[lid] = bi;
    reduce_best(lid);
    if (lid == 0u) {
        scratch[2u * wg.x] = keys[0];
        scratch[2u * wg.x + 1u] = idxs[0];
    }
}

@compute @workgroup_size(256)
fn argmax_final(@builtin(local_invocation_index) lid: u32) {
    _ = step.pos;
    var bk = 0u;
    var bi = NONE;
    for (var g = lid; g < params.groups; g += WG) {
        let k = scratch[2u * g];
        let i = scratch[2u * g + 1u];
        if (better(k, i, bk, bi)) {
            bk = k;
            bi = i;
        }
    }
    keys[lid] = bk;
    idxs[lid] = bi;
    reduce_best(lid);
    if (lid == 0u) {
        out[0] = idxs[0];
        out[1] = logit_bits(idxs[0]);
    }
}
