-- The recruiter's rubric: the criteria each interview is judged on (name,
-- description, optional weight). Interviews created before it, and rows
-- inserted without it, get the four criteria every scorecard had then (the
-- API writes its own, the same by default: shared::rubric::default_criteria,
-- which tests/tests/rubric.rs holds equal to this). The evaluation keeps the
-- weighted overall score when the rubric has weights.
ALTER TABLE interviews ADD COLUMN criteria jsonb NOT NULL DEFAULT '[
  {"name": "communication", "description": "How clearly and concisely the candidate explains, and how well they listen.", "weight": null},
  {"name": "technical_depth", "description": "How deep and accurate the candidate''s knowledge of the position''s topics is.", "weight": null},
  {"name": "problem_solving", "description": "How the candidate analyses problems, weighs options and reasons to a solution.", "weight": null},
  {"name": "engagement", "description": "How engaged, curious and responsive the candidate is throughout the interview.", "weight": null}
]'::jsonb;
ALTER TABLE evaluations ADD COLUMN overall_score double precision;
