//! The scorecard as Converse's structured output: a tool whose
//! `inputSchema` is the scorecard's JSON schema, forced with
//! `toolChoice: {tool: {name}}`, so the model's answer is the tool's input
//! (streamed as `toolUse` deltas of JSON text). Forcing one tool is offered
//! by Anthropic's Claude, Amazon Nova and Mistral Large models on Bedrock.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    SpecificToolChoice, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;

use super::super::SCORECARD;

/// The tool configuration that makes the model fill in `schema`.
pub(super) fn scorecard(schema: &Value) -> Result<ToolConfiguration, String> {
    let spec = ToolSpecification::builder()
        .name(SCORECARD)
        .description("Record the interview's scorecard: a score per criterion, a summary and a recommendation.")
        .input_schema(ToolInputSchema::Json(document(schema)))
        .build()
        .map_err(|e| format!("building the scorecard tool: {e}"))?;
    let choice =
        SpecificToolChoice::builder().name(SCORECARD).build().map_err(|e| format!("choosing the tool: {e}"))?;
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(choice))
        .build()
        .map_err(|e| format!("building the tool configuration: {e}"))
}

/// `value` as the SDK's JSON document.
fn document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or_default()),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(map) => {
            Document::Object(map.iter().map(|(k, v)| (k.clone(), document(v))).collect::<HashMap<_, _>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_becomes_a_forced_tool() {
        let schema = serde_json::json!({ "type": "object", "properties": { "a": { "type": "integer", "minimum": -1, "maximum": 5.5 } } });
        let config = scorecard(&schema).expect("valid");
        let Some(ToolChoice::Tool(choice)) = config.tool_choice() else { panic!("forced") };
        assert_eq!(choice.name(), SCORECARD);
        let Tool::ToolSpec(spec) = &config.tools()[0] else { panic!("a tool spec") };
        let Some(ToolInputSchema::Json(Document::Object(root))) = spec.input_schema() else { panic!("json") };
        let Document::Object(props) = &root["properties"] else { panic!("object") };
        let Document::Object(a) = &props["a"] else { panic!("object") };
        assert_eq!(a["minimum"], Document::Number(Number::NegInt(-1)));
        assert_eq!(a["maximum"], Document::Number(Number::Float(5.5)));
    }
}
