//! Writes the synthetic test models (tests/common/synthetic.rs), every architecture × weight
//! format, as `{arch}-{format}.gguf` into the directory given, and prints each file's SHA-256:
//! what scripts/make-synthetic-goldens.sh hands to llama.cpp.
//!
//! `cargo run --release -p hearth-core --example synthetic_models -- OUT_DIR`

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: synthetic_models OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1);
    }
    for arch in synthetic::ARCHS {
        for format in synthetic::FORMATS {
            let bytes = synthetic::model_bytes(arch, format);
            let path = dir.join(format!("{arch}-{format}.gguf"));
            if let Err(e) = std::fs::write(&path, &bytes) {
                eprintln!("{}: {e}", path.display());
                std::process::exit(1);
            }
            println!("{}  {}", synthetic::sha256_hex(&bytes), path.display());
        }
    }
}
