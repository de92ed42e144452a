//! Converse's request rules, as its API reference states them: the
//! conversation's shape, and the tool configuration (which a structured
//! answer is asked for through).

use serde_json::Value;

/// Converse's rules: messages start with the user and alternate, no
/// message without content, no blank text; system prompts not blank.
pub(super) fn validate(body: &Value) -> Result<(), String> {
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err("The messages field is required and must contain at least one message.".into());
    };
    let mut previous = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !matches!(role, "user" | "assistant") {
            return Err(format!("messages.{i}.role must be user or assistant, got {role:?}"));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if previous == Some(role) {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        previous = Some(role);
        let Some(content) = message["content"].as_array().filter(|c| !c.is_empty()) else {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        };
        for (j, block) in content.iter().enumerate() {
            if block["text"].as_str().is_some_and(|t| t.trim().is_empty()) {
                return Err(format!(
                    "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                ));
            }
        }
    }
    for (i, block) in body["system"].as_array().into_iter().flatten().enumerate() {
        if block["text"].as_str().is_some_and(|t| t.trim().is_empty()) {
            return Err(format!("The text field in the SystemContentBlock object at system.{i} is blank."));
        }
    }
    if body["inferenceConfig"]["maxTokens"].as_i64().is_some_and(|n| n < 1) {
        return Err("inferenceConfig.maxTokens must be at least 1.".into());
    }
    Ok(())
}

/// `toolConfig` as the Converse API reference describes it: at least one
/// tool; each `toolSpec` named `[a-zA-Z0-9_-]{1,64}` with an object as
/// `inputSchema.json`; `toolChoice` one of `auto`, `any` or `tool` naming
/// one of the tools.
pub(super) fn validate_tools(body: &Value) -> Result<(), String> {
    let config = &body["toolConfig"];
    if config.is_null() {
        return Ok(());
    }
    let Some(tools) = config["tools"].as_array().filter(|t| !t.is_empty()) else {
        return Err("toolConfig.tools must contain at least one tool.".into());
    };
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let spec = &tool["toolSpec"];
        let name = spec["name"].as_str().unwrap_or_default();
        let valid =
            (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!("toolConfig.tools.{i}.toolSpec.name must match [a-zA-Z0-9_-]+ (1-64 characters)."));
        }
        if !spec["inputSchema"]["json"].is_object() {
            return Err(format!("toolConfig.tools.{i}.toolSpec.inputSchema.json must be a JSON schema object."));
        }
        names.push(name);
    }
    let choice = &config["toolChoice"];
    let Some(choice) = choice.as_object() else {
        return if choice.is_null() { Ok(()) } else { Err("toolConfig.toolChoice must be an object.".into()) };
    };
    match (choice.len(), choice.get("auto"), choice.get("any"), choice.get("tool")) {
        (1, Some(_), None, None) | (1, None, Some(_), None) => Ok(()),
        (1, None, None, Some(tool)) if tool["name"].as_str().is_some_and(|n| names.contains(&n)) => Ok(()),
        (1, None, None, Some(_)) => Err("toolConfig.toolChoice.tool.name must name one of the tools.".into()),
        _ => Err("toolConfig.toolChoice must set exactly one of auto, any or tool.".into()),
    }
}

/// The tool the model must use: `toolChoice.tool.name`, or the first tool for `any`.
pub(super) fn forced_tool(body: &Value) -> Option<String> {
    let config = &body["toolConfig"];
    let choice = &config["toolChoice"];
    if let Some(name) = choice["tool"]["name"].as_str() {
        return Some(name.to_owned());
    }
    choice.get("any").and(config["tools"][0]["toolSpec"]["name"].as_str()).map(str::to_owned)
}
