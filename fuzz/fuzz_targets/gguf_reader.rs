//! Any bytes as a GGUF file: the reader, and everything that reads a model's header (the
//! llama config, the tokenizer, the chat template), must return an error or a value — never
//! panic, hang, or allocate what the file merely claims.
#![no_main]

use hearth_core::chat_template::ChatTemplate;
use hearth_core::gguf::Gguf;
use hearth_core::model::config::ModelConfig;
use hearth_core::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::read(data) else { return };
    for tensor in &g.tensors {
        let _ = g.read_tensor(data, tensor);
    }
    let _ = ModelConfig::from_gguf(&g);
    if let Ok(tokenizer) = Tokenizer::from_gguf(&g) {
        let ids = tokenizer.encode("Hello, world! <|im_start|> 123", true, true);
        let _ = tokenizer.decode(&ids);
    }
    if let Ok(template) = ChatTemplate::from_gguf(&g, "<s>", "</s>") {
        let _ = template.render(&[hearth_core::chat_template::ChatMessage::new("user", "hi")], true);
    }
});
