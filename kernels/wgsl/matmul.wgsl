// Quantised matrix times activations, `y[t][r] = Σ_c W[r][c] x[t][c]`, and the embedding
// lookup `out[t] = W[tokens[t]]`, with W kept in its GGUF format and dequantised here.
//
// matmul.rs prepends, per weight format, `const FORMAT: u32` (the ggml type id: 0 F32, 1 F16,
// 30 BF16, 2 Q4_0, 3 Q4_1, 8 Q8_0; or 100 for the affine runs that Q5_0, Q5_1, Q4_K, Q5_K and
// Q6_K are repacked into) and `const WPU: u32` (u32 words of `quants` per unit, below), so each
// format gets its own pipelines and the format tests below fold away; and `alias WF`, the type
// weights are dequantised in: f32, or f16 (with `enable f16;`) for F16, Q4_0, Q4_1 and Q8_0 on
// a device with `shader-f16`. Every conversion to WF below is a no-op when WF is f32; with f16
// only those formats' branches run, and what they convert (f16 scales, small integers) is exact.
//
// Layout on the device (repacked at upload, one buffer pair per part of the rows):
// - `quants`: the values of each row, row after row, as u32 words. Q4_0/Q4_1: the 16 nibble
//   bytes of each block (4 words); Q8_0: the 32 signed bytes (8 words); affine: the signed
//   byte code of each value (8 words per 32 values); F16 and BF16: value pairs (low half
//   first); F32: the bits. F32, F16 and BF16 rows are zero-padded to a multiple of 32 values.
// - `scales`: Q4_0/Q8_0: the f16 `d` of each block, two blocks per word (even block in the low
//   half); Q4_1: `d | m << 16` per block; affine: the f32 `d` and `m` of each 16-value run (a
//   value is `d q + m`); F32/F16/BF16: unused (one dummy word).
// Every row is read in units of 8 values, 4 units per 32-value block: a unit is one word of a
// Q4 block (low nibbles = columns 4i..4i+3, high nibbles = 16+4i..16+4i+3 of the block, i the
// unit within the block), two words of a Q8_0 block or of affine codes, four of F16 or BF16,
// or eight of F32 (8 consecutive columns). Weights are dequantised (in WF), activations are not
// quantised, and every product and sum is f32.

struct Params {
    // Rows in this part of the matrix.
    rows: u32,
    // Columns of the matrix: values per token of x (and of the embedding output).
    cols: u32,
    // 8-value units per stored row (a multiple of 4: rows are whole 32-value blocks).
    units: u32,
    // Rows of the whole matrix: values per token of y.
    y_stride: u32,
    // First row of this part in the whole matrix.
    row0: u32,
    // matvec: invocations per row group (a power of two, at most 64).
    lanes: u32,
    // Workgroups along x of the matvec and matmul dispatches; the linear workgroup index is
    // wg.x + wg.y * groups_x (grids past 65535 workgroups spill into y).
    mv_groups_x: u32,
    mm_groups_x: u32,
}

@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> quants: array<u32>;
// matvec / matmul: activations in, results out.
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
// embed: token ids in, rows out.
@group(0) @binding(6) var<storage, read> tokens: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

const IS_Q4: bool = FORMAT == 2u || FORMAT == 3u;
const IS_FLOAT: bool = FORMAT <= 1u || FORMAT == 30u;

// The 8 weights of one unit: `a` sits at columns unit_cols(u).x .. +3, `b` at unit_cols(u).y .. +3.
struct Unit {
    a: vec4<WF>,
    b: vec4<WF>,
}

// Columns (within its row) of the first value of each half of unit `u`.
fn unit_cols(u: u32) -> vec2<u32> {
    if (IS_Q4) {
        let c = (u >> 2u) * 32u + (u & 3u) * 4u;
        return vec2<u32>(c, c + 16u);
    }
    return vec2<u32>(u * 8u, u * 8u + 4u);
}

// Nibbles shift, shift+8, shift+16, shift+24 of `w` (bytes 0..3, low or high halves).
fn nibbles(w: u32, shift: u32) -> vec4<WF> {
    return vec4<WF>((vec4<u32>(w) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u));
}

// The 4 bytes of `w` as signed values: shift each to the top, then arithmetic-shift back down.
fn signed_bytes(w: u32) -> vec4<i32> {
    return bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
}

// The two bfloat16 values of `w`, low half first.
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// f16 scale `d` of block `block` (Q4_0, Q8_0: two per word).
fn half_scale(block: u32) -> WF {
    let pair = unpack2x16float(scales[block >> 1u]);
    return WF(select(pair.x, pair.y, (block & 1u) == 1u));
}

// Dequantised unit `u` of row `row` of this part, as the CPU's `quant::dequantize`:
// Q4_0 d (q - 8), Q4_1 d q + m, Q8_0 d q (in WF: with f16, rounded once, or for Q4_1 twice
// unless the multiply-add is fused).
fn unit_weights(row: u32, u: u32) -> Unit {
    let i = row * params.units + u;
    let w = i * WPU;
    if (FORMAT == 0u) {
        return Unit(
            vec4<WF>(bitcast<vec4<f32>>(vec4<u32>(quants[w], quants[w + 1u], quants[w + 2u], quants[w + 3u]))),
            vec4<WF>(bitcast<vec4<f32>>(vec4<u32>(quants[w + 4u], quants[w + 5u], quants[w + 6u], quants[w + 7u]))),
        );
    }
    if (FORMAT == 1u) {
        return Unit(
            vec4<WF>(vec4<f32>(unpack2x16float(quants[w]), unpack2x16float(quants[w + 1u]))),
            vec4<WF>(vec4<f32>(unpack2x16float(quants[w + 2u]), unpack2x16float(quants[w + 3u]))),
        );
    }
    if (FORMAT == 30u) {
        // A bfloat16 is the top half of an f32.
        return Unit(
            vec4<WF>(vec4<f32>(bf16_pair(quants[w]), bf16_pair(quants[w + 1u]))),
            vec4<WF>(vec4<f32>(bf16_pair(quants[w + 2u]), bf16_pair(quants[w + 3u]))),
        );
    }
    if (FORMAT == 100u) {
        // Two units per 16-value run: d and m of run i / 2.
        let run = i >> 1u;
        let d = bitcast<f32>(scales[2u * run]);
        let m = bitcast<f32>(scales[2u * run + 1u]);
        return Unit(
            vec4<WF>(vec4<f32>(signed_bytes(quants[w])) * d + m),
            vec4<WF>(vec4<f32>(signed_bytes(quants[w + 1u])) * d + m),
        );
    }
    // Four units per 32-value block, and rows are whole blocks.
    let block = i >> 2u;
    if (FORMAT == 2u) {
        let d = half_scale(block);
        let q = quants[w];
        return Unit((nibbles(q, 0u) - 8.0) * d, (nibbles(q, 4u) - 8.0) * d);
    }
    if (FORMAT == 3u) {
        let dm = vec2<WF>(unpack2x16float(scales[block]));
        let q = quants[w];
        return Unit(nibbles(q, 0u) * dm.x + dm.y, nibbles(q, 4u) * dm.x + dm.y);
    }
    let d = half_scale(block);
    return Unit(vec4<WF>(signed_bytes(quants[w])) * d, vec4<WF>(signed_bytes(quants[w + 1u])) * d);
}

// x[c .. c+4] of the first token. F32/F16 rows are padded past `cols`; the activations there
// belong to the next token or lie past the buffer, so they are masked to zero.
fn x4(c: u32) -> vec4<f32> {
    let v = vec4<f32>(x[c], x[c + 1u], x[c + 2u], x[c + 3u]);
    if (IS_FLOAT) {
        return select(vec4<f32>(0.0), v, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.cols));
    }
    return v;
}

// ---------------------------------------------------------------------------------------------
// Decode: y[r] = W[r] · x for one token (memory-bound).
//
// 256 invocations = (256 / lanes) row groups of `lanes` invocations; each invocation handles MV_R
// rows: rows first + r * groups + g for r < MV_R. Its lanes walk the row's units with stride
// `lanes`, so consecutive invocations read consecutive words of a row (coalesced), and the x
// values of a unit are loaded once for the MV_R rows. The lanes' partial sums are then added
// in a tree in workgroup memory (no subgroup operations).

const MV_WG: u32 = 256u;
const MV_R: u32 = 2u;
var<workgroup> partial: array<f32, 512>; // MV_R * MV_WG

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = step.n_tokens;
    _ = arrayLength(&scales);
    let lanes = params.lanes;
    let groups = MV_WG / lanes;
    let lane = lid % lanes;
    let g = lid / lanes;
    let first = (wg.x + wg.y * params.mv_groups_x) * groups * MV_R;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (first >= params.rows) {
        return;
    }
    let last = params.rows - 1u;
    var acc = array<f32, MV_R>();
    for (var u = lane; u < params.units; u += lanes) {
        let cols = unit_cols(u);
        let xa = x4(cols.x);
        let xb = x4(cols.y);
        for (var r = 0u; r < MV_R; r++) {
            // Rows past the part's end recompute its last row; their sums are never stored.
            let wu = unit_weights(min(first + r * groups + g, last), u);
            acc[r] += dot(vec4<f32>(wu.a), xa) + dot(vec4<f32>(wu.b), xb);
        }
    }
    for (var r = 0u; r < MV_R; r++) {
        partial[r * MV_WG + lid] = acc[r];
    }
    workgroupBarrier();
    // Tree over the lanes of each group: lane l adds lane l + s, s = lanes/2 .. 1.
    for (var s = lanes >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < MV_R; r++) {
                partial[r * MV_WG + lid] += partial[r * MV_WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        for (var r = 0u; r < MV_R; r++) {
            let row = first + r * groups + g;
            if (row < params.rows) {
                y[params.row0 + row] = partial[r * MV_WG + lid];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prefill: Y = X Wᵀ for several tokens, tiled.
//
// A workgroup computes a tile of MM_ROWS rows × MM_TOKENS tokens (z of the grid picks the
// token tile). Per 32-column block of the rows it stages, in workgroup memory, the dequantised
// weights (each of the 64 rows' block dequantised once, 4 invocations per row, one unit each)
// and the 32 tokens' activations, then each invocation accumulates 4 rows × 2 tokens over the
// 32 columns from there. Weights are read from memory once per token tile. Workgroup memory:
// 8 KiB of weights (4 KiB when WF is f16) + 4 KiB of activations.

const MM_ROWS: u32 = 64u;
const MM_TOKENS: u32 = 32u;
// ws[k * 16 + r / 4][r % 4] = W[row r of the tile][column k of the block].
var<workgroup> ws: array<vec4<WF>, 512>;
// xs[k * 16 + t / 2][t % 2] = x[token t of the tile][column k of the block].
var<workgroup> xs: array<vec2<f32>, 512>;

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Bound for every format, read only by the quantised ones.
    _ = arrayLength(&scales);
    let row_base = (wg.x + wg.y * params.mm_groups_x) * MM_ROWS;
    if (row_base >= params.rows) {
        return;
    }
    let n_tokens = step.n_tokens;
    let t_base = wg.z * MM_TOKENS;

    // Staging roles: weights of tile row lid/4, unit lid%4 of its block (rows past the part's
    // end load its last row, never stored); activations of tile token lid/8, columns
    // (lid%8)*4 .. +3 of the block.
    let w_row = lid / 4u;
    let w_src = min(row_base + w_row, params.rows - 1u);
    let w_unit = lid % 4u;
    let x_tok = lid / 8u;
    let x_col = (lid % 8u) * 4u;
    let x_valid = t_base + x_tok < n_tokens;
    let x_base = (t_base + x_tok) * params.cols;
    // Compute roles: rows 4*tr .. 4*tr+3 and tokens 2*tt, 2*tt+1 of the tile.
    let tr = lid % 16u;
    let tt = lid / 16u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    let blocks = params.units / 4u;
    for (var kb = 0u; kb < blocks; kb++) {
        let u = kb * 4u + w_unit;
        let wu = unit_weights(w_src, u);
        let at = unit_cols(u) - vec2<u32>(kb * 32u);
        for (var e = 0u; e < 4u; e++) {
            ws[(at.x + e) * 16u + w_row / 4u][w_row % 4u] = wu.a[e];
            ws[(at.y + e) * 16u + w_row / 4u][w_row % 4u] = wu.b[e];
        }
        for (var e = 0u; e < 4u; e++) {
            let c = kb * 32u + x_col + e;
            // F32/F16 rows are padded past `cols`: zero activations there.
            let v = select(0.0, x[x_base + c], x_valid && c < params.cols);
            xs[(x_col + e) * 16u + x_tok / 2u][x_tok % 2u] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let wv = vec4<f32>(ws[k * 16u + tr]);
            let xv = xs[k * 16u + tt];
            acc0 += wv * xv.x;
            acc1 += wv * xv.y;
        }
        workgroupBarrier();
    }

    let t = t_base + tt * 2u;
    for (var e = 0u; e < 4u; e++) {
        let row = row_base + tr * 4u + e;
        if (row < params.rows) {
            let col = params.row0 + row;
            if (t < n_tokens) {
                y[t * params.y_stride + col] = acc0[e];
            }
            if (t + 1u < n_tokens) {
                y[(t + 1u) * params.y_stride + col] = acc1[e];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding: out[t] = dequantised row tokens[t], for the tokens whose row lies in this part.
// One invocation per unit (8 values) of a row; grid y = token.

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    _ = arrayLength(&scales);
    let t = gid.y;
    let u = gid.x;
    if (t >= step.n_tokens || u >= params.units) {
        return;
    }
    let id = tokens[t];
    if (id < params.row0 || id - params.row0 >= params.rows) {
        return;
    }
    let wu = unit_weights(id - params.row0, u);
    let at = unit_cols(u);
    let base = t * params.cols;
    for (var e = 0u; e < 4u; e++) {
        // Padding columns of F32/F16 rows are not part of the row.
        if (at.x + e < params.cols) {
            out[base + at.x + e] = f32(wu.a[e]);
        }
        if (at.y + e < params.cols) {
            out[base + at.y + e] = f32(wu.b[e]);
        }
    }
}
