//! Our prompt as Converse wants it: the system prompt apart, then messages
//! that start with the user, alternate roles, hold no empty text, and end
//! with the user (a trailing assistant message would be taken as the start
//! of the reply to continue).

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message, SystemContentBlock};
use shared::domain::Language;

use super::super::{ChatRequest, Purpose, Speaker};

/// The system blocks and the messages of `request`.
pub(super) fn conversation(request: &ChatRequest) -> Result<(Vec<SystemContentBlock>, Vec<Message>), String> {
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, String)> = Vec::new();
    for message in &request.messages {
        let text = message.content.trim();
        if text.is_empty() {
            continue;
        }
        let role = match message.speaker {
            Speaker::System => {
                system.push(SystemContentBlock::Text(text.to_owned()));
                continue;
            }
            Speaker::User => ConversationRole::User,
            Speaker::Assistant => ConversationRole::Assistant,
        };
        match turns.last_mut() {
            // Two in a row from one speaker (a retried evaluation): one message.
            Some((last, joined)) if *last == role => {
                joined.push_str("\n\n");
                joined.push_str(text);
            }
            _ => turns.push((role, text.to_owned())),
        }
    }
    if turns.first().is_none_or(|(role, _)| *role != ConversationRole::User) {
        turns.insert(0, (ConversationRole::User, opening(request.language).to_owned()));
    }
    if turns.last().is_some_and(|(role, _)| *role == ConversationRole::Assistant) {
        turns.push((ConversationRole::User, go_on(request.language, request.purpose).to_owned()));
    }
    let messages = turns
        .into_iter()
        .map(|(role, text)| Message::builder().role(role).content(ContentBlock::Text(text)).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("building the Converse messages: {e}"))?;
    Ok((system, messages))
}

/// The user's first message when the interview has none yet (the opening
/// turn, and every history, which starts with the interviewer's greeting).
fn opening(language: Language) -> &'static str {
    match language {
        Language::En => "(The candidate has joined the interview.)",
        Language::Ja => "（候補者が面接に参加しました。）",
    }
}

/// The user's last message after the interviewer's (the evaluation, whose
/// history ends with the closing reply).
fn go_on(language: Language, purpose: Purpose) -> &'static str {
    match (language, purpose) {
        (Language::En, Purpose::Evaluation) => "(The interview is over. Reply as instructed.)",
        (Language::Ja, Purpose::Evaluation) => "（面接は終了しました。指示どおりに回答してください。）",
        (Language::En, Purpose::Turn { .. }) => "(Please go on.)",
        (Language::Ja, Purpose::Turn { .. }) => "（続けてください。）",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn request(purpose: Purpose, messages: &[(Speaker, &str)]) -> ChatRequest {
        ChatRequest {
            messages: messages.iter().map(|(s, c)| ChatMessage { speaker: *s, content: (*c).into() }).collect(),
            purpose,
            language: Language::En,
            topics: vec![],
            position: "Engineer".into(),
            answers: vec![],
            criteria: vec![],
        }
    }

    fn shape(request: &ChatRequest) -> (usize, Vec<(String, String)>) {
        let (system, messages) = conversation(request).expect("valid");
        let messages = messages
            .iter()
            .map(|m| {
                let text = m.content().first().and_then(|c| c.as_text().ok()).cloned().unwrap_or_default();
                (m.role().as_str().to_owned(), text)
            })
            .collect();
        (system.len(), messages)
    }

    #[test]
    fn the_opening_turn_gets_a_first_user_message() {
        let (system, messages) =
            shape(&request(Purpose::Turn { number: 0, last: false }, &[(Speaker::System, "Be kind.")]));
        assert_eq!(system, 1);
        assert_eq!(messages, [("user".to_owned(), opening(Language::En).to_owned())]);
    }

    #[test]
    fn a_history_starts_with_the_user_alternates_and_ends_with_the_user() {
        let evaluation = request(
            Purpose::Evaluation,
            &[
                (Speaker::System, "Evaluate."),
                (Speaker::Assistant, "Hello, tell me about yourself."),
                (Speaker::User, "I build queues."),
                (Speaker::User, "   "),
                (Speaker::Assistant, "Thank you."),
                (Speaker::Assistant, "That is all."),
            ],
        );
        let (_, messages) = shape(&evaluation);
        let roles: Vec<&str> = messages.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
        assert_eq!(messages[3].1, "Thank you.\n\nThat is all.");
        assert_eq!(messages[4].1, go_on(Language::En, Purpose::Evaluation));
        assert!(messages.iter().all(|(_, text)| !text.trim().is_empty()));
    }
}
