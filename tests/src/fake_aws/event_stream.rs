//! The AWS event-stream encoding (`application/vnd.amazon.eventstream`), as
//! AWS documents it for streaming APIs: each message is
//!
//! ```text
//! total length (u32) | headers length (u32) | prelude CRC32 (u32)
//! headers | payload | message CRC32 (u32)
//! ```
//!
//! big-endian, each CRC the IEEE CRC32 of everything before it; a header is
//! name length (u8), name, value type (u8, 7 = string), value length
//! (u16), value.

/// The IEEE CRC32 (reflected polynomial 0xEDB88320), as zlib computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// One message with string `headers` and `payload`.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + encoded_headers.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded_headers);
    out.extend_from_slice(payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// An event of a stream: `:event-type` `kind`, a JSON payload.
pub fn event(kind: &str, payload: &serde_json::Value) -> Vec<u8> {
    message(
        &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

/// A modelled exception inside a stream: `:exception-type` `kind`.
pub fn exception(kind: &str, text: &str) -> Vec<u8> {
    message(
        &[(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
        serde_json::json!({ "message": text }).to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_published_check_value() {
        // The CRC-32/ISO-HDLC check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_message_carries_its_lengths_and_both_crcs() {
        let m = message(&[(":event-type", "messageStop")], b"{}");
        let total = u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let headers = u32::from_be_bytes([m[4], m[5], m[6], m[7]]) as usize;
        assert_eq!(total, m.len());
        assert_eq!(headers, 1 + 11 + 1 + 2 + 11);
        assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), crc32(&m[..8]));
        let end = m.len() - 4;
        assert_eq!(u32::from_be_bytes([m[end], m[end + 1], m[end + 2], m[end + 3]]), crc32(&m[..end]));
    }
}
