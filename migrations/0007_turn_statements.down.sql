DROP FUNCTION complete_turn(uuid, integer, text, integer, integer, text, text, double precision, integer, boolean, jsonb, text, text);
DROP FUNCTION start_turn_events(uuid, uuid, integer, boolean, bigint);
DROP FUNCTION submit_answer(uuid, uuid, text, text, text, text, uuid);
DROP FUNCTION finish_session(uuid, text, text, text, text);
DROP FUNCTION append_session_event(uuid, jsonb, bigint, boolean);
