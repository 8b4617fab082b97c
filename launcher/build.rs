//! The app is embedded from `dist/` (built by Trunk); say how to make it when it is missing.
use std::path::Path;

fn main() {
    // Read at run time: a build script compiled in one checkout is reused from a shared
    // target folder (the Servo build's, in the cache) by another checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dist = Path::new(&manifest_dir).join("../dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        panic!(
            "the app is not built: {} has no index.html. Run `trunk build` (or scripts/build-app.sh) first.",
            dist.display()
        );
    }
}
