//! The recruiter's rubric: the criteria an interview is judged on, checked
//! once when the interview is created; the scorecard's JSON schema built from
//! them (what the providers are asked to fill in); and the check of a
//! scorecard against them.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The fewest and most criteria an interview may have.
pub const CRITERIA_RANGE: std::ops::RangeInclusive<usize> = 1..=10;
/// Every criterion is scored from 1 to 5.
pub const SCORE_RANGE: std::ops::RangeInclusive<i32> = 1..=5;
/// The recommendations a scorecard chooses from, best first.
pub const RECOMMENDATIONS: [&str; 4] = ["strong_hire", "hire", "no_hire", "strong_no_hire"];
/// Longest criterion name.
pub const NAME_MAX: usize = 64;
/// Longest criterion description.
pub const DESCRIPTION_MAX: usize = 500;
/// Largest weight.
pub const WEIGHT_MAX: f64 = 100.0;

/// One thing an interview is judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// The key of its score in the scorecard.
    pub name: String,
    /// What it means, as the evaluator is told.
    pub description: String,
    /// Its share of the overall score; `null` when not weighted (a criterion
    /// without a weight counts 1 when others have one).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// The four criteria an interview gets when its recruiter names none.
pub fn default_criteria() -> Vec<Criterion> {
    let criterion = |name: &str, description: &str| Criterion {
        name: name.to_owned(),
        description: description.to_owned(),
        weight: None,
    };
    vec![
        criterion("communication", "How clearly and concisely the candidate explains, and how well they listen."),
        criterion("technical_depth", "How deep and accurate the candidate's knowledge of the position's topics is."),
        criterion("problem_solving", "How the candidate analyses problems, weighs options and reasons to a solution."),
        criterion("engagement", "How engaged, curious and responsive the candidate is throughout the interview."),
    ]
}

/// The criteria as given on create, trimmed; the error names the field
/// (`criteria`, `criteria[2].name`, ...).
pub fn validate(criteria: Vec<Criterion>) -> Result<Vec<Criterion>, String> {
    if !CRITERIA_RANGE.contains(&criteria.len()) {
        return Err(format!(
            "criteria: must hold {} to {} criteria (got {})",
            CRITERIA_RANGE.start(),
            CRITERIA_RANGE.end(),
            criteria.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut valid = Vec::with_capacity(criteria.len());
    for (i, c) in criteria.into_iter().enumerate() {
        // Lengths are of what was sent (the limits the OpenAPI document states).
        let name = c.name.trim().to_owned();
        if name.is_empty() || c.name.chars().count() > NAME_MAX || c.name.chars().any(char::is_control) {
            return Err(format!("criteria[{i}].name: must be 1 to {NAME_MAX} characters, without control characters"));
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(format!("criteria[{i}].name: {name:?} is given twice (names are compared ignoring case)"));
        }
        let description = c.description.trim().to_owned();
        if description.is_empty() || c.description.chars().count() > DESCRIPTION_MAX {
            return Err(format!("criteria[{i}].description: must be 1 to {DESCRIPTION_MAX} characters"));
        }
        if let Some(w) = c.weight
            && !(w.is_finite() && w > 0.0 && w <= WEIGHT_MAX)
        {
            return Err(format!("criteria[{i}].weight: must be greater than 0 and at most {WEIGHT_MAX}"));
        }
        valid.push(Criterion { name, description, weight: c.weight });
    }
    Ok(valid)
}

/// The weighted mean of `scores`, rounded to two decimals, when any
/// criterion has a weight (the others count 1); `None` otherwise.
pub fn overall_score(criteria: &[Criterion], scores: &BTreeMap<String, i32>) -> Option<f64> {
    if criteria.iter().all(|c| c.weight.is_none()) {
        return None;
    }
    let (mut sum, mut weights) = (0.0, 0.0);
    for c in criteria {
        let weight = c.weight.unwrap_or(1.0);
        sum += weight * f64::from(*scores.get(&c.name)?);
        weights += weight;
    }
    Some((sum / weights * 100.0).round() / 100.0)
}

/// The JSON schema of a scorecard on `criteria`, in the subset every
/// provider's structured output accepts (OpenAI's strict mode, Gemini,
/// Bedrock's tool input): closed objects, every property required.
pub fn scorecard_schema(criteria: &[Criterion]) -> Value {
    let scores: serde_json::Map<String, Value> = criteria
        .iter()
        .map(|c| {
            let score = json!({
                "type": "integer",
                "minimum": SCORE_RANGE.start(),
                "maximum": SCORE_RANGE.end(),
                "description": c.description,
            });
            (c.name.clone(), score)
        })
        .collect();
    let names: Vec<&str> = criteria.iter().map(|c| c.name.as_str()).collect();
    json!({
        "type": "object",
        "properties": {
            "scores": {
                "type": "object",
                "description": "One score from 1 (poor) to 5 (excellent) per criterion.",
                "properties": scores,
                "required": names,
                "additionalProperties": false,
            },
            "summary": { "type": "string", "description": "A few sentences on the candidate's performance." },
            "recommendation": { "type": "string", "enum": RECOMMENDATIONS },
        },
        "required": ["scores", "summary", "recommendation"],
        "additionalProperties": false,
    })
}

/// A scorecard that passed [`parse_scorecard`].
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Criterion → 1..5, exactly the interview's criteria.
    pub scores: BTreeMap<String, i32>,
    /// Summary.
    pub summary: String,
    /// One of [`RECOMMENDATIONS`].
    pub recommendation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardJson {
    scores: BTreeMap<String, i32>,
    summary: String,
    recommendation: String,
}

/// Parses a scorecard and checks it against `criteria`; the error names what
/// is wrong, for the corrective retry and the failure reason.
pub fn parse_scorecard(text: &str, criteria: &[Criterion]) -> Result<Card, String> {
    let trimmed = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```");
    let card: CardJson = serde_json::from_str(trimmed.trim()).map_err(|e| format!("not a scorecard: {e}"))?;
    for c in criteria {
        match card.scores.get(&c.name) {
            Some(s) if SCORE_RANGE.contains(s) => {}
            Some(s) => return Err(format!("scores.{}: {s} is not between 1 and 5", c.name)),
            None => return Err(format!("scores.{}: missing", c.name)),
        }
    }
    if let Some(extra) = card.scores.keys().find(|k| !criteria.iter().any(|c| &c.name == *k)) {
        return Err(format!("scores.{extra}: not a criterion of this interview"));
    }
    if !RECOMMENDATIONS.contains(&card.recommendation.as_str()) {
        return Err(format!("recommendation: {:?} is not one of {}", card.recommendation, RECOMMENDATIONS.join(", ")));
    }
    if card.summary.trim().is_empty() {
        return Err("summary: empty".into());
    }
    Ok(Card { scores: card.scores, summary: card.summary, recommendation: card.recommendation })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criterion(name: &str, weight: Option<f64>) -> Criterion {
        Criterion { name: name.into(), description: format!("about {name}"), weight }
    }

    #[test]
    fn criteria_are_checked_naming_the_field() {
        assert!(validate(default_criteria()).is_ok());
        let err = |c: Vec<Criterion>| validate(c).expect_err("invalid");
        assert!(err(vec![]).starts_with("criteria: must hold 1 to 10"));
        assert!(err((0..11).map(|i| criterion(&format!("c{i}"), None)).collect()).starts_with("criteria:"));
        assert!(err(vec![criterion("a", None), criterion(" A ", None)]).starts_with("criteria[1].name"));
        assert!(err(vec![criterion("  ", None)]).starts_with("criteria[0].name"));
        let mut blank = criterion("a", None);
        blank.description = " ".into();
        assert!(err(vec![blank]).starts_with("criteria[0].description"));
        for bad in [0.0, -1.0, f64::NAN, 101.0] {
            assert!(err(vec![criterion("a", Some(1.0)), criterion("b", Some(bad))]).starts_with("criteria[1].weight"));
        }
        let trimmed = validate(vec![criterion(" Design ", Some(2.0))]).expect("valid");
        assert_eq!(trimmed[0].name, "Design");
    }

    #[test]
    fn the_overall_score_is_the_weighted_mean_when_weights_are_given() {
        let scores: BTreeMap<String, i32> = [("a".to_owned(), 5), ("b".to_owned(), 2)].into();
        assert_eq!(overall_score(&[criterion("a", None), criterion("b", None)], &scores), None);
        assert_eq!(overall_score(&[criterion("a", Some(3.0)), criterion("b", Some(1.0))], &scores), Some(4.25));
        // b counts 1 beside a's 2: (10 + 2) / 3.
        assert_eq!(overall_score(&[criterion("a", Some(2.0)), criterion("b", None)], &scores), Some(4.0));
    }

    #[test]
    fn scorecards_must_score_exactly_the_criteria() {
        let criteria = [criterion("design", None), criterion("testing", None)];
        let good = r#"{"scores":{"design":3,"testing":4},"summary":"ok","recommendation":"hire"}"#;
        assert!(parse_scorecard(good, &criteria).is_ok());
        assert!(parse_scorecard(&format!("```json\n{good}\n```"), &criteria).is_ok());
        let problem = |text: String| parse_scorecard(&text, &criteria).expect_err("invalid");
        assert_eq!(problem(good.replace("\"testing\":4", "\"other\":4")), "scores.testing: missing");
        let extra = good.replace("\"testing\":4", "\"testing\":4,\"communication\":2");
        assert_eq!(problem(extra), "scores.communication: not a criterion of this interview");
        assert!(problem(good.replace("\"design\":3", "\"design\":9")).starts_with("scores.design: 9"));
        assert!(problem(good.replace("\"hire\"", "\"maybe\"")).starts_with("recommendation"));
        assert!(problem("not json".into()).starts_with("not a scorecard"));
    }

    #[test]
    fn the_schema_names_every_criterion_and_closes_every_object() {
        let schema = scorecard_schema(&[criterion("design", None), criterion("testing", None)]);
        assert_eq!(schema["properties"]["scores"]["required"], json!(["design", "testing"]));
        assert_eq!(schema["properties"]["scores"]["properties"]["design"]["maximum"], 5);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["scores"]["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["scores", "summary", "recommendation"]));
    }
}
