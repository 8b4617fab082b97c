// Argmax and top-k of logits[..n] (one row), each in two phases so that a vocabulary of
// 262144 spreads over many workgroups: `*_partial` runs `groups` workgroups, each over its own
// contiguous chunk of the logits, and leaves its best candidates in `scratch`; `*_final`, one
// workgroup, reduces the candidates and writes the result to `out`.
//
// Logits are compared as integer keys (`order_key`), so the order does not depend on how a
// driver treats NaN, subnormals or signed zeros: NaN ranks below everything, -0 equals +0,
// and among equal keys the lower index wins. Results carry the logit's own bits.

struct SampleParams {
    // Logits considered.
    n: u32,
    // Candidates kept (top-k; 1 for argmax).
    k: u32,
    // Logits per workgroup of the partial phase.
    chunk: u32,
    // Workgroups of the partial phase.
    groups: u32,
}

@group(0) @binding(1) var<uniform> params: SampleParams;
// f32 bits.
@group(0) @binding(2) var<storage, read> logits: array<u32>;
// Pairs (key, index): `groups` of them for argmax, `groups · k` for top-k.
@group(0) @binding(3) var<storage, read_write> scratch: array<u32>;
// Pairs (index, f32 bits): 1 for argmax, k for top-k.
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
// Slots of the top-k sort: the k best so far, then the next (SLOTS - k) candidates.
const SLOTS: u32 = 1024u;
// Index of an empty slot; its key is 0 too, so every logit, even NaN, beats it.
const NONE: u32 = 0xffffffffu;

var<workgroup> keys: array<u32, SLOTS>;
var<workgroup> idxs: array<u32, SLOTS>;

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

// Bits of the chosen logit (a NaN if the slot is empty, which n ≥ k rules out).
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

// Sorts the SLOTS slots best first: a bitonic network, SLOTS / 2 compare-exchanges per stage
// shared by the workgroup. Blocks of `size` alternate direction until the last merge.
fn sort_slots(lid: u32) {
    for (var size = 2u; size <= SLOTS; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var p = lid; p < SLOTS / 2u; p += WG) {
                // The p-th pair (lo, lo + stride) with the `stride` bit of lo clear.
                let lo = 2u * p - (p & (stride - 1u));
                let hi = lo + stride;
                let kl = keys[lo];
                let il = idxs[lo];
                let kh = keys[hi];
                let ih = idxs[hi];
                // Blocks with the `size` bit clear put the better candidate first.
                let best_first = (lo & size) == 0u;
                let swap = select(better(kl, il, kh, ih), better(kh, ih, kl, il), best_first);
                if (swap) {
                    keys[lo] = kh;
                    idxs[lo] = ih;
                    keys[hi] = kl;
                    idxs[hi] = il;
                }
            }
            workgroupBarrier();
        }
    }
}

// Keeps in slots 0..k the best k (sorted) of candidates start..end, read from the logits
// (`from_scratch` false: candidate j is logit j) or from the scratch pairs. Each round fills
// slots k.. with the next candidates (empty slots past the end) and sorts all the slots.
fn select_top(start: u32, end: u32, from_scratch: bool, lid: u32) {
    let k = params.k;
    for (var s = lid; s < SLOTS; s += WG) {
        keys[s] = 0u;
        idxs[s] = NONE;
    }
    workgroupBarrier();
    for (var base = start; base < end; base += SLOTS - k) {
        for (var s = k + lid; s < SLOTS; s += WG) {
            let j = base + (s - k);
            var key = 0u;
            var idx = NONE;
            if (j < end) {
                if (from_scratch) {
                    key = scratch[2u * j];
                    idx = scratch[2u * j + 1u];
                } else {
                    key = order_key(logits[j]);
                    idx = j;
                }
            }
            keys[s] = key;
            idxs[s] = idx;
        }
        workgroupBarrier();
        sort_slots(lid);
    }
}

@compute @workgroup_size(256)
fn top_k_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = step.pos;
    let start = wg.x * params.chunk;
    let end = min(start + params.chunk, params.n);
    select_top(start, end, false, lid);
    let k = params.k;
    for (var s = lid; s < k; s += WG) {
        scratch[2u * (wg.x * k + s)] = keys[s];
        scratch[2u * (wg.x * k + s) + 1u] = idxs[s];
    }
}

@compute @workgroup_size(256)
fn top_k_final(@builtin(local_invocation_index) lid: u32) {
    _ = step.pos;
    let k = params.k;
    select_top(0u, params.groups * k, true, lid);
    for (var s = lid; s < k; s += WG) {
        out[2u * s] = idxs[s];
        out[2u * s + 1u] = logit_bits(idxs[s]);
    }
}
