DROP TABLE session_events;
DROP TABLE evaluations;
DROP TABLE turns;
DROP TABLE sessions;
DROP TABLE interviews;
DROP TABLE refresh_tokens;
DROP TABLE users;
