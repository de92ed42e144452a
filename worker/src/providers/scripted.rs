//! The built-in interviewer: deterministic, no network, no key. It asks the
//! interview's topics in order in the interview's language, streams its text
//! in small deltas, and scores evaluations from the answers it was given. It
//! is the default provider, so the whole system runs on a fresh machine.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde_json::json;
use shared::domain::Language;
use shared::events::Usage;

use super::{ChatProvider, ChatRequest, Chunk, ProviderError, Purpose};

/// Characters per delta.
const DELTA_CHARS: usize = 12;

/// The scripted interviewer.
pub struct Scripted {
    delta_delay: Duration,
}

impl Scripted {
    /// Pauses `delta_delay` between deltas (0 in benchmarks).
    pub fn new(delta_delay: Duration) -> Self {
        Self { delta_delay }
    }
}

impl ChatProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "scripted-interviewer-1"
    }

    fn prices(&self) -> (f64, f64) {
        (0.0, 0.0)
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        let text = match request.purpose {
            Purpose::Turn { number, last } => reply(&request, number, last),
            Purpose::Evaluation => scorecard(&request),
        };
        let usage =
            Usage { prompt_tokens: estimate_tokens(&request), completion_tokens: tokens(&text), estimated: false };
        let delay = self.delta_delay;
        let deltas = split(&text).into_iter().map(|d| Ok(Chunk::Delta(d)));
        let done = std::iter::once(Ok(Chunk::Done { usage, by: super::Answered::by(self) }));
        stream::iter(deltas.chain(done))
            .then(move |chunk| async move {
                if !delay.is_zero() && matches!(chunk, Ok(Chunk::Delta(_))) {
                    tokio::time::sleep(delay).await;
                }
                chunk
            })
            .boxed()
    }
}

fn tokens(text: &str) -> i32 {
    (text.chars().count() as i32 / 4).max(1)
}

fn estimate_tokens(request: &ChatRequest) -> i32 {
    request.messages.iter().map(|m| tokens(&m.content)).sum()
}

fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(DELTA_CHARS).map(|c| c.iter().collect()).collect()
}

fn topic(request: &ChatRequest, index: usize) -> &str {
    request.topics.get(index % request.topics.len().max(1)).map_or("your work", String::as_str)
}

fn question(language: Language, topic: &str, variant: usize) -> String {
    match (language, variant % 3) {
        (Language::En, 0) => format!("Could you tell me about your experience with {topic}?"),
        (Language::En, 1) => {
            format!("How have you approached {topic} in a recent project, and what did you learn?")
        }
        (Language::En, _) => {
            format!("What is the hardest problem you have solved involving {topic}?")
        }
        (Language::Ja, 0) => format!("{topic}についてのご経験を教えてください。"),
        (Language::Ja, 1) => {
            format!("最近のプロジェクトで{topic}にどのように取り組み、何を学びましたか？")
        }
        (Language::Ja, _) => {
            format!("{topic}に関して、これまでに解決した最も難しい問題は何ですか？")
        }
    }
}

fn reply(request: &ChatRequest, number: i32, last: bool) -> String {
    let n = number.max(0) as usize;
    let language = request.language;
    if last {
        return match language {
            Language::En => {
                "Thank you for your answers. That concludes our interview; your evaluation will follow.".into()
            }
            Language::Ja => "ご回答ありがとうございました。以上で面接を終了します。評価は後ほどお知らせします。".into(),
        };
    }
    let next = question(language, topic(request, n), n);
    if n == 0 {
        return match language {
            Language::En => format!(
                "Hello, and thank you for joining this interview for the {} position. I am your AI interviewer. Let's begin. {next}",
                request.position
            ),
            Language::Ja => format!(
                "こんにちは。本日は{}の面接にご参加いただきありがとうございます。AI面接官です。それでは始めます。{next}",
                request.position
            ),
        };
    }
    let thanks = match (language, n % 3) {
        (Language::En, 0) => "Thank you, that is helpful.",
        (Language::En, 1) => "I see, thank you for explaining.",
        (Language::En, _) => "Understood.",
        (Language::Ja, 0) => "ありがとうございます。参考になります。",
        (Language::Ja, 1) => "なるほど、ご説明ありがとうございます。",
        (Language::Ja, _) => "承知しました。",
    };
    let sep = if language == Language::En { " " } else { "" };
    format!("{thanks}{sep}{next}")
}

/// Scores from the answers: longer, more specific answers score higher.
fn scorecard(request: &ChatRequest) -> String {
    let answers: Vec<&str> = request.answers.iter().map(String::as_str).collect();
    let count = answers.len().max(1);
    let avg_len = answers.iter().map(|a| a.chars().count()).sum::<usize>() / count;
    let topics_mentioned =
        request.topics.iter().filter(|t| answers.iter().any(|a| a.to_lowercase().contains(&t.to_lowercase()))).count();
    let by_length = |l: usize| match l {
        0..=19 => 1,
        20..=59 => 2,
        60..=139 => 3,
        140..=299 => 4,
        _ => 5,
    };
    let communication = by_length(avg_len);
    let technical_depth = (1 + topics_mentioned * 4 / request.topics.len().max(1)).min(5) as i32;
    let problem_solving = ((communication + technical_depth) / 2).max(1);
    let engagement = (answers.len() as i32).clamp(1, 5);
    // The recruiter's own criteria: the four it knows by name, any other the
    // rounded mean of those four.
    let mean = (communication + technical_depth + problem_solving + engagement + 2) / 4;
    let scores: serde_json::Map<String, serde_json::Value> = request
        .criteria
        .iter()
        .map(|c| {
            let score = match c.name.as_str() {
                "communication" => communication,
                "technical_depth" => technical_depth,
                "problem_solving" => problem_solving,
                "engagement" => engagement,
                _ => mean,
            };
            (c.name.clone(), json!(score))
        })
        .collect();
    // The thresholds of the four default criteria's sum (17, 13, 9), as a mean.
    let average = scores.values().filter_map(serde_json::Value::as_f64).sum::<f64>() / scores.len().max(1) as f64;
    let recommendation = match average {
        a if a >= 4.25 => "strong_hire",
        a if a >= 3.25 => "hire",
        a if a >= 2.25 => "no_hire",
        _ => "strong_no_hire",
    };
    let summary = match request.language {
        Language::En => format!(
            "The candidate gave {} answers averaging {avg_len} characters and addressed {topics_mentioned} of {} topics.",
            answers.len(),
            request.topics.len()
        ),
        Language::Ja => format!(
            "候補者は{}件の回答（平均{avg_len}文字）を行い、{}件中{topics_mentioned}件のトピックに触れました。",
            answers.len(),
            request.topics.len()
        ),
    };
    json!({
        "scores": scores,
        "summary": summary,
        "recommendation": recommendation,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ChatMessage, Speaker};

    fn request(language: Language, purpose: Purpose, answers: &[&str]) -> ChatRequest {
        ChatRequest {
            messages: answers.iter().map(|a| ChatMessage { speaker: Speaker::User, content: (*a).into() }).collect(),
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
            purpose,
            language,
            topics: vec!["Rust".into(), "PostgreSQL".into()],
            position: "Backend Engineer".into(),
            criteria: shared::rubric::default_criteria(),
        }
    }

    async fn collect(p: &Scripted, r: ChatRequest) -> (String, usize, Usage) {
        let chunks: Vec<_> = p.stream(r).collect().await;
        let mut text = String::new();
        let mut deltas = 0;
        let mut usage = Usage::default();
        for c in chunks {
            match c.expect("scripted never fails") {
                Chunk::Delta(d) => {
                    deltas += 1;
                    text.push_str(&d)
                }
                Chunk::Done { usage: u, .. } => usage = u,
                Chunk::Reset { .. } => {}
            }
        }
        (text, deltas, usage)
    }

    #[tokio::test]
    async fn the_opening_asks_the_first_topic_in_the_interview_language() {
        let p = Scripted::new(Duration::ZERO);
        let (en, deltas, usage) =
            collect(&p, request(Language::En, Purpose::Turn { number: 0, last: false }, &[])).await;
        assert!(en.starts_with("Hello") && en.contains("Rust"), "{en}");
        assert!(deltas > 3, "streams in small deltas");
        assert!(usage.completion_tokens > 0);
        let (ja, _, _) = collect(&p, request(Language::Ja, Purpose::Turn { number: 0, last: false }, &[])).await;
        assert!(ja.starts_with("こんにちは") && ja.contains("Rust"), "{ja}");
        let (again, _, _) = collect(&p, request(Language::Ja, Purpose::Turn { number: 0, last: false }, &[])).await;
        assert_eq!(ja, again, "deterministic");
    }

    #[tokio::test]
    async fn evaluations_are_valid_scorecards() {
        let p = Scripted::new(Duration::ZERO);
        let (text, _, _) = collect(
            &p,
            request(
                Language::En,
                Purpose::Evaluation,
                &["I built a Rust service on PostgreSQL with queues and retries."],
            ),
        )
        .await;
        let card: serde_json::Value = serde_json::from_str(&text).expect("json");
        for k in ["communication", "technical_depth", "problem_solving", "engagement"] {
            let s = card["scores"][k].as_i64().expect("score");
            assert!((1..=5).contains(&s), "{k}={s}");
        }
        assert_eq!(card["scores"]["technical_depth"], 5, "both topics mentioned");
    }

    #[tokio::test]
    async fn evaluations_score_the_interview_s_own_criteria() {
        let p = Scripted::new(Duration::ZERO);
        let mut r = request(Language::En, Purpose::Evaluation, &["I built a Rust service on PostgreSQL."]);
        r.criteria = shared::rubric::validate(vec![
            shared::rubric::Criterion { name: "system_design".into(), description: "d".into(), weight: Some(2.0) },
            shared::rubric::Criterion { name: "communication".into(), description: "c".into(), weight: None },
        ])
        .expect("valid");
        let (text, _, _) = collect(&p, r.clone()).await;
        let card = shared::rubric::parse_scorecard(&text, &r.criteria).expect("a scorecard on exactly these criteria");
        assert_eq!(card.scores.keys().collect::<Vec<_>>(), ["communication", "system_design"]);
    }
}
