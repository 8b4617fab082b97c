//! The app is embedded from `dist/` (built by Trunk); say how to make it when it is missing.
use std::path::Path;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        panic!(
            "the app is not built: {} has no index.html. Run `trunk build` (or scripts/build-app.sh) first.",
            dist.display()
        );
    }
}
