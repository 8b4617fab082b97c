//! An example custom agent that uses the LLM: asks it for the keywords of what it is shown as
//! JSON, pulls them out with the `json_extract` tool, and answers with a clean list (or the
//! model's own words when they are not JSON).

use hearth_agent_sdk::{Turn, agent, ask_llm_with, log, send, tool};

fn keywords(turn: Turn) {
    let prompt = format!(
        "{}\n\nList the five most important keywords of the text above as JSON: {{\"keywords\": [\"...\"]}}",
        turn.request
    );
    let reply = ask_llm_with(&prompt, Some("You extract keywords. Answer with JSON only."), Some(48));
    let args = serde_json::json!({ "text": reply, "path": "keywords" }).to_string();
    match tool("json_extract", &args).map(|v| serde_json::from_str::<Vec<String>>(&v)) {
        Ok(Ok(words)) if !words.is_empty() => send(&format!("Keywords: {}", words.join(", "))),
        _ => {
            log("the model's answer was not the JSON asked for; passing it on as it is");
            send(&format!("Keywords: {}", reply.trim()));
        }
    }
}

agent!(keywords);
