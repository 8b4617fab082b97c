//! An example custom agent without an LLM: counts the words and sentences of the messages it is
//! shown, works out the average with the calculator tool, keeps a running total on the shared
//! scratchpad, and reports.

use hearth_agent_sdk::{Turn, agent, log, send, tool};

fn stats(turn: Turn) {
    // What the others wrote, or the request itself when there is nothing yet.
    let text = if turn.seen.is_empty() {
        turn.request.clone()
    } else {
        turn.seen.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")
    };
    let words = text.split_whitespace().count();
    let sentences = text.split(['.', '!', '?']).filter(|s| s.split_whitespace().next().is_some()).count().max(1);
    let average = tool("calculator", &format!("{words} / {sentences}")).unwrap_or_else(|e| e);
    let before: u64 =
        tool("scratchpad", r#"{"op":"get","key":"words_seen"}"#).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let total = before + words as u64;
    let set = serde_json::json!({ "op": "set", "key": "words_seen", "value": total.to_string() });
    if let Err(e) = tool("scratchpad", &set.to_string()) {
        log(&format!("could not update the scratchpad: {e}"));
    }
    log(&format!("step {}: {words} words", hearth_agent_sdk::clock()));
    send(&format!("{words} words in {sentences} sentences ({average} words per sentence); {total} words seen so far."));
}

agent!(stats);
