//! RESP framing (RESP2 and RESP3): the commands a client sends, by name,
//! and the pub/sub messages a server pushes.

use std::collections::BTreeMap;

use super::count;

/// A value not read whole yet (`None`), or a stream that is not RESP.
type Parsed<T> = Result<Option<T>, NotResp>;

#[derive(Debug)]
struct NotResp;

/// The line at `pos` (without CRLF) and where the next one starts.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], pos + end + 2))
}

fn number(text: &[u8]) -> Result<i64, NotResp> {
    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or(NotResp)
}

/// A bulk string at `pos`: its bytes (`None` for a null) and where it ends.
fn bulk(buf: &[u8], pos: usize) -> Parsed<(Option<&[u8]>, usize)> {
    let Some((head, body)) = line(buf, pos) else { return Ok(None) };
    let len = number(head.get(1..).ok_or(NotResp)?)?;
    if len < 0 {
        return Ok(Some((None, body)));
    }
    let end = body + len as usize;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    Ok(Some((Some(&buf[body..end]), end + 2)))
}

/// Commands as clients send them: arrays of bulk strings (or inline).
#[derive(Default)]
pub struct Commands {
    buf: Vec<u8>,
    lost: bool,
}

impl Commands {
    /// Counts the commands completed by `bytes`.
    pub fn feed(&mut self, bytes: &[u8], seen: &mut BTreeMap<String, u64>) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            match command(&self.buf, pos) {
                Ok(Some((name, end))) => {
                    count(seen, &name);
                    pos = end;
                }
                Ok(None) => break,
                Err(NotResp) => {
                    count(seen, "unreadable");
                    self.lost = true;
                    self.buf = Vec::new();
                    return;
                }
            }
        }
        self.buf.drain(..pos);
    }
}

/// The command at `pos`: its name (a `PUBLISH` named by its channel: a
/// session's events or other) and where it ends.
fn command(buf: &[u8], pos: usize) -> Parsed<(String, usize)> {
    let Some(&first) = buf.get(pos) else { return Ok(None) };
    if first != b'*' {
        let Some((text, end)) = line(buf, pos) else { return Ok(None) };
        let word = text.split(|b| *b == b' ').next().unwrap_or_default();
        return Ok(Some((String::from_utf8_lossy(word).to_uppercase(), end)));
    }
    let Some((head, mut at)) = line(buf, pos) else { return Ok(None) };
    let items = number(&head[1..])?;
    let mut args: Vec<&[u8]> = Vec::with_capacity(2);
    for _ in 0..items.max(0) {
        if buf.get(at).is_some_and(|b| *b != b'$') {
            return Err(NotResp);
        }
        let Some((arg, end)) = bulk(buf, at)? else { return Ok(None) };
        if args.len() < 2 {
            args.push(arg.unwrap_or_default());
        }
        at = end;
    }
    let mut name = String::from_utf8_lossy(args.first().copied().unwrap_or_default()).to_uppercase();
    if name == "PUBLISH" || name == "SPUBLISH" {
        let channel = args.get(1).copied().unwrap_or_default();
        let events = channel.windows(8).any(|w| w == b":events:");
        name.push_str(if events { " events" } else { " other" });
    }
    Ok(Some((name, at)))
}

/// What a server sends: replies, and pushed pub/sub messages, counted.
#[derive(Default)]
pub struct Replies {
    buf: Vec<u8>,
    lost: bool,
}

impl Replies {
    /// Counts the pub/sub messages completed by `bytes`.
    pub fn feed(&mut self, bytes: &[u8], seen: &mut BTreeMap<String, u64>) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            match value_end(&self.buf, pos) {
                Ok(Some(end)) => {
                    if is_pubsub_message(&self.buf[pos..end]) {
                        count(seen, "pubsub message");
                    }
                    pos = end;
                }
                Ok(None) => break,
                Err(NotResp) => {
                    count(seen, "unreadable");
                    self.lost = true;
                    self.buf = Vec::new();
                    return;
                }
            }
        }
        self.buf.drain(..pos);
    }
}

/// Where the value at `pos` ends.
fn value_end(buf: &[u8], pos: usize) -> Parsed<usize> {
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(line(buf, pos).map(|(_, end)| end)),
        b'$' | b'!' | b'=' => Ok(bulk(buf, pos)?.map(|(_, end)| end)),
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some((head, mut at)) = line(buf, pos) else { return Ok(None) };
            let n = number(&head[1..])?;
            let items = if matches!(kind, b'%' | b'|') { n.max(0) * 2 } else { n.max(0) };
            for _ in 0..items {
                match value_end(buf, at)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(NotResp),
    }
}

/// A push (RESP3) or array (RESP2) whose first item is `message`,
/// `smessage` or `pmessage`.
fn is_pubsub_message(value: &[u8]) -> bool {
    if !matches!(value.first(), Some(b'>' | b'*')) {
        return false;
    }
    let Some((_, first)) = line(value, 0) else { return false };
    match value.get(first) {
        Some(b'$') => matches!(bulk(value, first), Ok(Some((Some(b"message" | b"smessage" | b"pmessage"), _)))),
        Some(b'+') => matches!(line(value, first), Some((b"+message" | b"+smessage" | b"+pmessage", _))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(seen: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
        seen.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[test]
    fn commands_are_named_across_reads_and_publishes_by_channel() {
        let stream = b"*3\r\n$7\r\nPUBLISH\r\n$20\r\naivt1:events:abc-def\r\n$5\r\nhello\r\n\
                       *3\r\n$7\r\npublish\r\n$12\r\naivt1-turns:\r\n$1\r\n1\r\n\
                       *4\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n0\r\n$-1\r\nPING\r\n";
        let mut parser = Commands::default();
        let mut seen = BTreeMap::new();
        for chunk in stream.chunks(3) {
            parser.feed(chunk, &mut seen);
        }
        assert_eq!(names(&seen), [("EVALSHA", 1), ("PING", 1), ("PUBLISH events", 1), ("PUBLISH other", 1)]);
    }

    #[test]
    fn pushed_messages_are_counted_among_replies() {
        let stream = b"+OK\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n\
                       *3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n%1\r\n+a\r\n$-1\r\n\
                       *3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nbye\r\n";
        let mut parser = Replies::default();
        let mut seen = BTreeMap::new();
        for chunk in stream.chunks(2) {
            parser.feed(chunk, &mut seen);
        }
        assert_eq!(names(&seen), [("pubsub message", 2)]);
    }
}
