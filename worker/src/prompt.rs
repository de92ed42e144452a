//! Prompts built from the interview plan and the session's history.

use shared::db::interviews::Interview;
use shared::db::turns::Turn;
use shared::domain::Language;

use crate::providers::{ChatMessage, ChatRequest, Purpose, Speaker};

fn system(interview: &Interview) -> String {
    let topics = interview.topics.0.join(", ");
    match interview.language {
        Language::En => format!(
            "You are a professional interviewer for the position \"{}\" ({}). Ask one question at a time, \
             covering these topics in order: {topics}. Follow up briefly on the candidate's last answer. \
             The interview has {} answers. Answer in English.",
            interview.position, interview.title, interview.max_turns
        ),
        Language::Ja => format!(
            "あなたは「{}」（{}）のポジションのプロの面接官です。一度に一つずつ質問し、次のトピックを順に扱ってください: {topics}。\
             候補者の直前の回答に簡潔にフォローアップしてください。回答数は{}回です。日本語で話してください。",
            interview.position, interview.title, interview.max_turns
        ),
    }
}

fn history(turns: &[Turn], messages: &mut Vec<ChatMessage>) {
    for turn in turns {
        if let Some(answer) = &turn.candidate_message {
            messages.push(ChatMessage { speaker: Speaker::User, content: answer.clone() });
        }
        if let Some(reply) = &turn.interviewer_message {
            messages.push(ChatMessage { speaker: Speaker::Assistant, content: reply.clone() });
        }
    }
}

/// The request for turn `current` (whose answer is its candidate message),
/// given the session's earlier turns.
pub fn turn(interview: &Interview, earlier: &[Turn], current: &Turn) -> ChatRequest {
    let mut messages = vec![ChatMessage { speaker: Speaker::System, content: system(interview) }];
    history(earlier, &mut messages);
    if let Some(answer) = &current.candidate_message {
        messages.push(ChatMessage { speaker: Speaker::User, content: answer.clone() });
    }
    ChatRequest {
        messages,
        purpose: Purpose::Turn { number: current.number, last: current.number >= interview.max_turns },
        language: interview.language,
        topics: interview.topics.0.clone(),
        position: interview.position.clone(),
    }
}

/// The request for the session's scorecard.
pub fn evaluation(interview: &Interview, turns: &[Turn]) -> ChatRequest {
    let instructions = format!(
        "{}\n\nThe interview is over. Evaluate the candidate. Reply with JSON only: \
         {{\"scores\": {{\"communication\": 1-5, \"technical_depth\": 1-5, \"problem_solving\": 1-5, \"engagement\": 1-5}}, \
         \"summary\": \"...\", \"recommendation\": \"strong_hire\" | \"hire\" | \"no_hire\" | \"strong_no_hire\"}}",
        system(interview)
    );
    let mut messages = vec![ChatMessage { speaker: Speaker::System, content: instructions }];
    history(turns, &mut messages);
    ChatRequest {
        messages,
        purpose: Purpose::Evaluation,
        language: interview.language,
        topics: interview.topics.0.clone(),
        position: interview.position.clone(),
    }
}
