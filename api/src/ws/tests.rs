use super::*;

#[test]
fn client_frames_parse_and_bad_ones_name_the_problem() {
    assert!(matches!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping)));
    assert!(matches!(
        serde_json::from_str::<ClientFrame>(r#"{"type":"resume","after_seq":3}"#),
        Ok(ClientFrame::Resume { after_seq: 3 })
    ));
    let err = serde_json::from_str::<ClientFrame>(r#"{"type":"answer"}"#).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("text")));
    let err = serde_json::from_str::<ClientFrame>(r#"{"type":"dance"}"#).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("dance")));
}
