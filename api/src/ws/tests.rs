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

#[test]
fn an_idle_socket_holds_a_small_task() {
    // A socket's future is allocated whole for the socket's life: what it
    // awaits now and then is boxed, and it holds the socket once, so it
    // stays near the idle loop's size (2.2 KB unoptimised; it was 9.5 KB).
    fn future_size<F: FnOnce(Socket) -> Fut, Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }
    let size = future_size(&run);
    assert!(size < 4 * 1024, "a socket's task future takes {size} bytes");
}
