//! The HTTP/1.1 subset both ends speak: a request line plus headers of at most
//! [`MAX_HEAD_BYTES`], and responses with a `Content-Length` body. Parsing never panics and
//! refuses anything outside the subset rather than guessing.

/// The most bytes a request or response head (start line and headers) may take.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The path under which the newest bundle of a site is served.
pub fn latest_path(site: &str) -> String {
    format!("/sites/{site}/latest")
}

/// The end of the head (index just after `\r\n\r\n`), if it is all in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The declared body length.
    pub content_length: Option<u64>,
}

/// Parse a response head (`HTTP/1.1 200 OK` and headers); `None` if it is not HTTP/1.x.
pub fn parse_response_head(head: &[u8]) -> Option<ResponseHead> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(value.trim().parse().ok()?);
            }
        }
    }
    Some(ResponseHead {
        status,
        content_length,
    })
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
}

/// Parse the request line of a request head.
pub fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let path = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    Some(RequestLine { method, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_parse() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(
            parse_response_head(head),
            Some(ResponseHead {
                status: 200,
                content_length: Some(12)
            })
        );
        assert_eq!(parse_response_head(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            None
        );
    }

    #[test]
    fn request_lines_parse() {
        let head = b"GET /sites/plant-a/latest HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            parse_request_line(head),
            Some(RequestLine {
                method: "GET",
                path: "/sites/plant-a/latest"
            })
        );
        assert_eq!(parse_request_line(b"GET /a b HTTP/1.1\r\n\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_response_head(&bytes);
            let _ = parse_request_line(&bytes);
            let _ = head_end(&bytes);
        }
    }
}
