//! `hearth tokenize`: a text's token ids as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use hearth::llm;

use super::{fail, say};

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// A GGUF file, or a shipped model by id (gemma-3-270m-q4_k_m); the default model if left out.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Treat special-token text as plain text and add no BOS/EOS.
    #[arg(long)]
    no_special: bool,
    text: String,
}

pub fn run(args: TokenizeArgs) -> ExitCode {
    match llm::tokenize(&llm::model_path(args.model), &args.text, !args.no_special) {
        Ok(json) => {
            say(&json);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
