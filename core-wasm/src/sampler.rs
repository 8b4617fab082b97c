//! Turning logits into the next token: penalties, then top-k, top-p, min-p, temperature, and a
//! seeded draw (llama.cpp's default chain order). Temperature 0 is greedy. The same seed and
//! the same logits give the same token on every platform: the RNG is ours and uses integer
//! arithmetic only.

pub use hearth_api::generate::SamplerConfig;

/// SplitMix64: tiny, fast, and identical on every platform.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler with its own RNG stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = SplitMix64(config.seed);
        Self { config, rng }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token from `logits` (modified in place by the penalties), given the
    /// tokens so far (`history`, prompt included).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        self.apply_penalties(logits, history);
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, descending; ties by token id for determinism.
        let mut cand: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l)).collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        let probs = softmax(&cand);
        let mut keep = cand.len();
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= f64::from(c.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * f64::from(c.min_p);
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        cand.truncate(keep);
        for (_, l) in cand.iter_mut() {
            *l /= c.temperature;
        }
        let probs = softmax(&cand);
        let r = self.rng.next_f64();
        let mut cum = 0.0;
        for (&(id, _), p) in cand.iter().zip(&probs) {
            cum += p;
            if r < cum {
                return id;
            }
        }
        cand[cand.len() - 1].0
    }

    fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.config;
        if c.repeat_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0 {
            return;
        }
        let recent = &history[history.len().saturating_sub(c.penalty_last_n)..];
        let mut counts = std::collections::BTreeMap::new();
        for &t in recent {
            *counts.entry(t).or_insert(0u32) += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            if *l > 0.0 {
                *l /= c.repeat_penalty;
            } else {
                *l *= c.repeat_penalty;
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(cand: &[(u32, f32)]) -> Vec<f64> {
    let max = cand.first().map_or(0.0, |c| c.1);
    let exps: Vec<f64> = cand.iter().map(|&(_, l)| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9, -1.0]
    }

    fn draws(config: SamplerConfig, n: usize) -> Vec<u32> {
        let mut s = Sampler::new(config);
        (0..n).map(|_| s.sample(&mut logits(), &[])).collect()
    }

    #[test]
    fn temperature_zero_is_greedy() {
        assert_eq!(draws(SamplerConfig::default(), 5), vec![1; 5]);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let c = |seed| SamplerConfig { temperature: 1.5, seed, ..Default::default() };
        assert_eq!(draws(c(7), 50), draws(c(7), 50));
        assert_ne!(draws(c(7), 50), draws(c(8), 50));
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_candidates() {
        let only = |config: SamplerConfig| {
            let mut seen: Vec<u32> = draws(config, 300);
            seen.sort();
            seen.dedup();
            seen
        };
        let hot = SamplerConfig { temperature: 5.0, ..Default::default() };
        assert_eq!(only(hot.clone()).len(), 6, "a hot sampler reaches every token");
        assert_eq!(only(SamplerConfig { top_k: 2, ..hot.clone() }), vec![1, 4]);
        // p(1) + p(4) at temperature-1 softmax is ~0.6: top_p 0.5 keeps {1, 4}.
        assert_eq!(only(SamplerConfig { top_p: 0.5, ..hot.clone() }), vec![1, 4]);
        // min_p 0.3: tokens at least 0.3 times as likely as token 1 (logit >= 3 + ln 0.3 = 1.8).
        assert_eq!(only(SamplerConfig { min_p: 0.3, ..hot }), vec![1, 2, 4]);
    }

    #[test]
    fn penalties_push_recent_tokens_down() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, ..Default::default() });
        // Token 1 (3.0) halves to 1.5, below token 4 (2.9).
        assert_eq!(s.sample(&mut logits(), &[1]), 4);
        // Frequency penalty per occurrence: one 0.05 leaves 2.95 > 2.9, two make 2.9 - a tie lost.
        let mut s = Sampler::new(SamplerConfig { frequency_penalty: 0.05, ..Default::default() });
        assert_eq!(s.sample(&mut logits(), &[1]), 1);
        assert_eq!(s.sample(&mut logits(), &[1, 1, 1]), 4);
        let mut s = Sampler::new(SamplerConfig { presence_penalty: 0.2, ..Default::default() });
        assert_eq!(s.sample(&mut logits(), &[1, 0]), 4);
    }
}
