// The KV cache and causal attention over it (src/gpu/attention.rs).
//
// The cache holds, per position, `kv_dim` f16 values packed two to a u32 (element 2i in the
// low half, as `pack2x16float` puts it, so the bytes are a plain little-endian f16 array).
// Query head h reads kv head h / group. All arithmetic is f32; the query is rounded to f16 as
// it is loaded (packed like the cache), as the CPU twin does.
//
// Each entry point binds only what it uses, from binding 2 on: kv_store (src, cache),
// attn_decode (q, k, v, partials), attn_reduce (partials, out), attn_prefill (q, k, v, out).
//
// Online softmax: a running max m, a running sum l = Σ exp(s - m) and an unnormalised output
// o = Σ exp(s - m) v. When a new block of scores raises the max to m', the old terms are
// rescaled by exp(m - m') (l and o alike) before the new block's exp(s - m') are added;
// out = o / l at the end. Partial results (m, l, o) of disjoint position ranges combine the
// same way.

// Stand-in for -inf (WGSL has no infinity literal); exp(NEG_BIG - m) is 0 for any real m.
const NEG_BIG: f32 = -1.0e30;

// ---------------------------------------------------------------------------------------------
// KV store: cache[pos + t] = f16(src[t]) for t < n_tokens; one invocation per packed pair.

struct StoreParams {
    kv_dim: u32,
    n_ctx: u32,
    _pad: vec2<u32>,
}

@group(0) @binding(1) var<uniform> store_params: StoreParams;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> cache: array<u32>;

@compute @workgroup_size(64)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pairs = store_params.kv_dim / 2u;
    let i = gid.x;
    let t = gid.y;
    let p = step.pos + t;
    // Positions past the cache are dropped rather than written out of bounds.
    if (i >= pairs || t >= step.n_tokens || p >= store_params.n_ctx) {
        return;
    }
    let s = t * store_params.kv_dim + 2u * i;
    cache[p * pairs + i] = pack2x16float(vec2<f32>(src[s], src[s + 1u]));
}

// ---------------------------------------------------------------------------------------------
// Attention.

struct AttnParams {
    n_heads: u32,
    // Query heads per kv head.
    group: u32,
    head_dim: u32,
    n_ctx: u32,
    scale: f32,
    // Decode: most workgroups one head's KV length is split across (and partial records
    // per head).
    max_splits: u32,
    // Prefill: query tokens per workgroup, and key positions per K/V tile.
    bq: u32,
    bk: u32,
    // Sliding window: positions a query sees (itself included), 0 for all.
    window: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<uniform> params: AttnParams;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read> v_cache: array<u32>;

// The first position a query at position p attends to.
fn first_visible(p: u32) -> u32 {
    if (params.window == 0u) {
        return 0u;
    }
    return p + 1u - min(p + 1u, params.window);
}

fn f16_pair(a: f32, b: f32) -> u32 {
    return pack2x16float(vec2<f32>(a, b));
}

// ---------------------------------------------------------------------------------------------
// Decode (one token): flash-decoding. The KV length is cut into 64-position tiles, and the
// tiles from the one holding the first visible position on into at most max_splits runs of
// `tiles_per_split`; workgroup (split, head) reduces its run with an online softmax into a
// partial (m, l, o[head_dim]), and attn_reduce combines a head's partials. Both compute the
// split the same way, from step.pos.

const DECODE_WG: u32 = 64u;
// Positions per tile: one per invocation.
const DECODE_TILE: u32 = 64u;
// head_dim ≤ 256: 128 pairs, two per invocation.
const MAX_PAIRS: u32 = 128u;

@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

var<workgroup> dq: array<u32, MAX_PAIRS>;
var<workgroup> dp: array<f32, DECODE_TILE>;
var<workgroup> dred: array<f32, DECODE_WG>;

// Positions attended by the decoded token (clamped to the cache): first..len.
fn decode_len() -> u32 {
    return min(step.pos + 1u, params.n_ctx);
}

fn decode_first() -> u32 {
    return min(first_visible(step.pos), decode_len() - 1u);
}

// Tiles from the first visible position's to the last.
fn decode_tiles() -> u32 {
    return (decode_len() + DECODE_TILE - 1u) / DECODE_TILE - decode_first() / DECODE_TILE;
}

fn tiles_per_split(n_tiles: u32) -> u32 {
    return (n_tiles + params.max_splits - 1u) / params.max_splits;
}

// Tree reduction of dred (max when `is_max`, else sum); every invocation gets the result.
// Called in uniform control flow.
fn decode_reduce(lid: u32, is_max: bool) -> f32 {
    for (var stride = DECODE_WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if (lid < stride) {
            let a = dred[lid];
            let b = dred[lid + stride];
            dred[lid] = select(a + b, max(a, b), is_max);
        }
    }
    workgroupBarrier();
    let r = dred[0];
    // Nobody writes dred again before everyone has read it.
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn attn_decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wg.x;
    let h = wg.y;
    let hd = params.head_dim;
    let pairs = hd / 2u;
    let kv_pairs = params.n_heads / params.group * pairs;
    let head_base = h / params.group * pairs;
    let len = decode_len();
    let first_pos = decode_first();
    let first_tile = first_pos / DECODE_TILE;
    let n_tiles = decode_tiles();
    let per = tiles_per_split(n_tiles);
    let tile_begin = first_tile + split * per;
    let tile_end = min(tile_begin + per, first_tile + n_tiles);

    for (var i = lid; i < pairs; i += DECODE_WG) {
        let qi = h * hd + 2u * i;
        dq[i] = f16_pair(q[qi], q[qi + 1u]);
    }
    workgroupBarrier();

    // Every invocation holds the same m and l; invocation i owns output pairs i and i + 64.
    var m = NEG_BIG;
    var l = 0.0;
    var o0 = vec2<f32>(0.0);
    var o1 = vec2<f32>(0.0);
    for (var tile = tile_begin; tile < tile_end; tile++) {
        let first = tile * DECODE_TILE;
        let j = first + lid;
        let valid = j >= first_pos && j < len;
        var s = NEG_BIG;
        if (valid) {
            var qk = 0.0;
            let kb = j * kv_pairs + head_base;
            for (var i = 0u; i < pairs; i++) {
                qk += dot(unpack2x16float(dq[i]), unpack2x16float(k_cache[kb + i]));
            }
            s = qk * params.scale;
        }
        dred[lid] = s;
        let m_new = max(m, decode_reduce(lid, true));
        let p = select(0.0, exp(s - m_new), valid);
        dp[lid] = p;
        dred[lid] = p;
        let tile_sum = decode_reduce(lid, false);
        // Rescale what earlier tiles summed to the new max, then add this tile.
        let alpha = exp(m - m_new);
        l = l * alpha + tile_sum;
        m = m_new;
        o0 *= alpha;
        o1 *= alpha;
        let count = min(DECODE_TILE, len - first);
        for (var jj = 0u; jj < count; jj++) {
            let vb = (first + jj) * kv_pairs + head_base;
            let w = dp[jj];
            if (lid < pairs) {
                o0 += w * unpack2x16float(v_cache[vb + lid]);
            }
            if (lid + DECODE_WG < pairs) {
                o1 += w * unpack2x16float(v_cache[vb + lid + DECODE_WG]);
            }
        }
        // dp is rewritten by the next tile.
        workgroupBarrier();
    }

    // Partial layout: [head][split] records of (m, l, o[head_dim]).
    let base = (h * params.max_splits + split) * (hd + 2u);
    if (lid == 0u) {
        partials[base] = m;
        partials[base + 1u] = l;
    }
    if (lid < pairs) {
        partials[base + 2u + 2u * lid] = o0.x;
        partials[base + 3u + 2u * lid] = o0.y;
    }
    if (lid + DECODE_WG < pairs) {
        let i = lid + DECODE_WG;
        partials[base + 2u + 2u * i] = o1.x;
        partials[base + 3u + 2u * i] = o1.y;
    }
}

@group(0) @binding(2) var<storage, read> partials_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> reduced: array<f32>;

// One workgroup per head: out = Σ_s o_s exp(m_s - M) / Σ_s l_s exp(m_s - M), M = max_s m_s.
// Every split holds at least one visible position, so every m_s is a real score.
@compute @workgroup_size(64)
fn attn_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let hd = params.head_dim;
    let n_tiles = decode_tiles();
    let per = tiles_per_split(n_tiles);
    let n_splits = (n_tiles + per - 1u) / per;
    let rec = hd + 2u;
    let head = h * params.max_splits * rec;
    var big = NEG_BIG;
    for (var s = 0u; s < n_splits; s++) {
        big = max(big, partials_in[head + s * rec]);
    }
    var l = 0.0;
    for (var s = 0u; s < n_splits; s++) {
        l += partials_in[head + s * rec + 1u] * exp(partials_in[head + s * rec] - big);
    }
    for (var d = lid; d < hd; d += 64u) {
        var o = 0.0;
        for (var s = 0u; s < n_splits; s++) {
            let r = head + s * rec;
            o += partials_in[r + 2u + d] * exp(partials_in[r] - big);
        }
        reduced[h * hd + d] = o / l;
    }
}

// ---------------------------------------------------------------------------------------------
// Prefill (several tokens): workgroup (block, head) takes query tokens block*bq .. +bq of one
// head, keeps them (as f16 pairs) in workgroup memory, and streams K/V tiles of bk positions
// through workgroup memory from its first token's first visible position up to its last
// token's position: tiles wholly above the diagonal (or before every token's window) are
// never loaded, and positions above a token's own (or before its window) are masked. The host picks bq and bk
// from head_dim so that bq * pairs ≤ 1024 and bk * pairs ≤ 1024 (≤ 4 KiB each), bq ≤ 32 and
// bk ≤ 16: 14.1 KiB of workgroup memory in all.

const PREFILL_WG: u32 = 128u;
const TILE_WORDS: u32 = 1024u;
const BQ_MAX: u32 = 32u;
const BK_MAX: u32 = 16u;
// Output pairs (bq * pairs ≤ 1024) per invocation.
const ITEMS: u32 = TILE_WORDS / PREFILL_WG;

@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> pq: array<u32, TILE_WORDS>;
var<workgroup> pk: array<u32, TILE_WORDS>;
var<workgroup> pv: array<u32, TILE_WORDS>;
// Scores, then weights, of the tile: [bq][bk].
var<workgroup> ps: array<f32, 512>;
// Per query row: the tile's rescale factor exp(m - m'), then at the end the final sum l.
var<workgroup> prow: array<f32, BQ_MAX>;

@compute @workgroup_size(128)
fn attn_prefill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let bq = params.bq;
    let bk = params.bk;
    let h = wg.y;
    let hd = params.head_dim;
    let pairs = hd / 2u;
    let q_dim = params.n_heads * hd;
    let kv_pairs = params.n_heads / params.group * pairs;
    let head_base = h / params.group * pairs;
    let n_tokens = step.n_tokens;
    let t0 = wg.x * bq;
    let t_end = min(t0 + bq, n_tokens);
    // Keys 0..kv_end cover every token of the block (workgroup-uniform, as the loop below
    // holds barriers).
    let kv_end = min(step.pos + t_end, params.n_ctx);
    let n_ktiles = (kv_end + bk - 1u) / bk;
    let first_ktile = min(first_visible(step.pos + t0), kv_end - 1u) / bk;

    for (var w = lid; w < bq * pairs; w += PREFILL_WG) {
        let t = t0 + w / pairs;
        var packed = 0u;
        if (t < n_tokens) {
            let qi = t * q_dim + h * hd + 2u * (w % pairs);
            packed = f16_pair(q[qi], q[qi + 1u]);
        }
        pq[w] = packed;
    }

    // Invocation r < bq keeps row r's running max and sum; output pair (row, i) of item
    // lid + k * 128 accumulates in acc[k].
    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<vec2<f32>, ITEMS>;

    for (var kt = first_ktile; kt < n_ktiles; kt++) {
        let k0 = kt * bk;
        let count = min(bk, kv_end - k0);
        for (var w = lid; w < bk * pairs; w += PREFILL_WG) {
            let j = w / pairs;
            var kw = 0u;
            var vw = 0u;
            if (j < count) {
                let c = (k0 + j) * kv_pairs + head_base + w % pairs;
                kw = k_cache[c];
                vw = v_cache[c];
            }
            pk[w] = kw;
            pv[w] = vw;
        }
        workgroupBarrier();

        // Scores of the tile: (row, key) = (e / bk, e % bk).
        for (var e = lid; e < bq * bk; e += PREFILL_WG) {
            let qb = e / bk * pairs;
            let kb = e % bk * pairs;
            var qk = 0.0;
            for (var i = 0u; i < pairs; i++) {
                qk += dot(unpack2x16float(pq[qb + i]), unpack2x16float(pk[kb + i]));
            }
            ps[e] = qk * params.scale;
        }
        workgroupBarrier();

        // Online softmax per row over this tile's keys lo <= j < visible (those in the token's
        // window, at or before its position); a row whose keys all lie outside keeps m and l
        // (alpha = 1).
        if (lid < bq) {
            let t = t0 + lid;
            var visible = 0u;
            var lo = 0u;
            if (t < n_tokens) {
                visible = min(count, (step.pos + t + 1u) - min(step.pos + t + 1u, k0));
                lo = first_visible(step.pos + t) - min(first_visible(step.pos + t), k0);
            }
            let row = lid * bk;
            var m_new = m;
            for (var j = lo; j < visible; j++) {
                m_new = max(m_new, ps[row + j]);
            }
            let alpha = exp(m - m_new);
            var sum = 0.0;
            for (var j = 0u; j < bk; j++) {
                var p = 0.0;
                if (j >= lo && j < visible) {
                    p = exp(ps[row + j] - m_new);
                }
                ps[row + j] = p;
                sum += p;
            }
            l = l * alpha + sum;
            m = m_new;
            prow[lid] = alpha;
        }
        workgroupBarrier();

        // acc = acc * alpha + Σ_j p_j v_j for each owned output pair.
        for (var k = 0u; k < ITEMS; k++) {
            let item = lid + k * PREFILL_WG;
            if (item < bq * pairs) {
                let r = item / pairs;
                let i = item % pairs;
                var a = acc[k] * prow[r];
                for (var j = 0u; j < count; j++) {
                    a += ps[r * bk + j] * unpack2x16float(pv[j * pairs + i]);
                }
                acc[k] = a;
            }
        }
        // The next tile overwrites pk, pv, ps and prow.
        workgroupBarrier();
    }

    if (lid < bq) {
        prow[lid] = l;
    }
    workgroupBarrier();
    for (var k = 0u; k < ITEMS; k++) {
        let item = lid + k * PREFILL_WG;
        let r = item / pairs;
        let t = t0 + r;
        if (item < bq * pairs && t < n_tokens) {
            let o = acc[k] / prow[r];
            let oi = t * q_dim + h * hd + 2u * (item % pairs);
            out[oi] = o.x;
            out[oi + 1u] = o.y;
        }
    }
}
