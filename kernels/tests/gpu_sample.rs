//! Argmax on the device against a plain CPU scan: ties, NaN, signed zeros,
//! the maximum in the first or last element, one logit, a 262144-entry vocabulary, `n`
//! shorter than the buffer. Results must match exactly (indices and value bits).

mod common;

use std::cmp::Ordering;

use common::random_values;
use hearth_kernels::KernelError;
use hearth_kernels::gpu::{GpuBuffer, GpuContext, GpuOp, Step};

/// The order argmax promises: NaN below everything, -0 equal to +0.
fn rank(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

fn cpu_argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if rank(x, v[best]) == Ordering::Greater {
            best = i;
        }
    }
    best
}

/// Named logit rows: (name, logits in the buffer, n considered).
fn cases() -> Vec<(&'static str, Vec<f32>, u32)> {
    let big = 262_144;
    let mut cases = Vec::new();
    cases.push(("one logit", vec![-3.5], 1));
    let mut v = random_values(big, 3, 20.0);
    v[big - 1] = 25.0;
    cases.push(("262144, max last", v, big as u32));
    let mut v = random_values(big, 4, 20.0);
    v[0] = 30.0;
    cases.push(("262144, max first", v, big as u32));
    let mut v = random_values(big, 5, 20.0);
    // Equal maxima in different first-phase chunks; the lowest index must win.
    for i in [200_000, 70_001, 4095, big - 1] {
        v[i] = 21.0;
    }
    cases.push(("262144, tied maxima across chunks", v, big as u32));
    let mut v = random_values(1000, 6, 1.0);
    for i in [17, 500, 999] {
        v[i] = 2.0;
    }
    cases.push(("1000, tied maxima", v, 1000));
    // Few distinct values: ties everywhere for top-k.
    let v: Vec<f32> = random_values(3000, 7, 4.0).iter().map(|x| x.round()).collect();
    cases.push(("3000 of 9 distinct values", v, 3000));
    let mut v = random_values(4097, 8, 1.0);
    v[0] = f32::NAN;
    v[1] = -f32::NAN;
    v[4096] = f32::NAN;
    v[300] = f32::INFINITY;
    v[301] = f32::NEG_INFINITY;
    cases.push(("4097 with NaN and infinities", v, 4097));
    let mut v = vec![f32::NAN; 9];
    v[4] = f32::NEG_INFINITY;
    v[7] = -1e30;
    cases.push(("mostly NaN", v, 9));
    cases.push(("all NaN", vec![f32::NAN; 5], 5));
    cases.push(("signed zeros", vec![-0.0, 0.0, -1.0, -0.0, 0.0, -2.0], 6));
    cases.push(("all equal", vec![1.5; 513], 513));
    // The buffer holds more than n: the largest values, just past n, must be ignored.
    let mut v = random_values(3000, 9, 1.0);
    v[2000] = 10.0;
    v[2500] = 11.0;
    cases.push(("n 2000 of 3000", v, 2000));
    // Subnormals and the smallest normals, which a flushing driver would call equal.
    let v = vec![f32::from_bits(1), f32::from_bits(3), f32::from_bits(2), 0.0, f32::MIN_POSITIVE, -f32::from_bits(5)];
    cases.push(("subnormals", v, 6));
    cases
}

/// The first `pairs` (index, bits) pairs of `out`.
async fn read_pairs(ctx: &GpuContext, out: &GpuBuffer, pairs: usize) -> Vec<u32> {
    ctx.read::<u32>(out, 0..2 * pairs).await.unwrap()
}

async fn argmax_matches_cpu(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    for (name, logits, n) in cases() {
        let buf = ctx.buffer_from("logits", &logits).unwrap();
        let out = ctx.buffer("out", 2).unwrap();
        let op = ctx.op_argmax(&buf, n, &out, &step).unwrap();
        // Any step: the op reads one row of logits.
        ctx.run(&step, Step { n_tokens: 3, pos: 17 }, &[&op]).unwrap();
        let got = read_pairs(ctx, &out, 1).await;
        let want = cpu_argmax(&logits[..n as usize]);
        assert_eq!(got, [want as u32, logits[want].to_bits()], "{name}: gpu {got:?}, cpu index {want}");
    }
}

/// The same op replayed after the logits change: its scratch buffers are reused.
async fn check_argmax_replays_on_new_logits(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    let n = 50_000;
    let buf = ctx.buffer("logits", n).unwrap();
    let out = ctx.buffer("out", 2).unwrap();
    let op = ctx.op_argmax(&buf, n as u32, &out, &step).unwrap();
    for (round, at) in [49_999usize, 3, 25_000].into_iter().enumerate() {
        let mut v = random_values(n, 40 + round as u64, 1.0);
        v[at] = 5.0;
        ctx.write(&buf, 0, &v).unwrap();
        ctx.run(&step, Step { n_tokens: 1, pos: round as u32 }, &[&op]).unwrap();
        let got = ctx.read::<u32>(&out, 0..2).await.unwrap();
        assert_eq!(got, [at as u32, 5.0f32.to_bits()], "round {round}");
    }
}

/// A bad `n` and bad buffers fail when the op is built, naming the values.
async fn check_sample_ops_reject_bad_shapes(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    let logits = ctx.buffer("logits", 100).unwrap();
    let out = ctx.buffer("out", 512).unwrap();
    let shape = |r: Result<GpuOp, KernelError>, needle: &str| match r {
        Err(e @ KernelError::OpShape { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
        }
        Err(e) => panic!("expected OpShape mentioning {needle:?}, got {e}"),
        Ok(op) => panic!("expected OpShape mentioning {needle:?}, got op {}", op.label()),
    };
    shape(ctx.op_argmax(&logits, 0, &out, &step), "n 0");
    shape(ctx.op_argmax(&logits, 101, &out, &step), "logits holds 100 values, fewer than n 101");
    shape(ctx.op_argmax(&logits, 100, &ctx.buffer("small", 1).unwrap(), &step), "out holds 1 values");
    shape(ctx.op_argmax(&logits, 100, &logits, &step), "same buffer");
}

gpu_tests! {
    argmax_matches_cpu_scan => argmax_matches_cpu,
    argmax_replays_on_new_logits => check_argmax_replays_on_new_logits,
    sample_ops_reject_bad_shapes => check_sample_ops_reject_bad_shapes,
}
