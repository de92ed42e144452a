ALTER TABLE evaluations DROP COLUMN overall_score;
ALTER TABLE interviews DROP COLUMN criteria;
