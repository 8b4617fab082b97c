//! Where model files live on this machine: `$HEARTH_HOME/models`, else
//! `$XDG_CACHE_HOME/hearth/models`, else `~/.cache/hearth/models`. scripts/fetch-model.sh
//! writes there; `hearth serve` serves that folder under `/models/`.

use std::path::PathBuf;

pub fn models_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = var("HEARTH_HOME") {
        return home.join("models");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("hearth").join("models")
}
