//! A blocking HTTP/1.1 transport for API clients: requests in, status, headers and raw body out.
//!
//! headwater's Python clients keep httpx's API (URLs, redirects, auth, hooks, decoding of
//! `Content-Encoding`) and hand the network part of each request to [`Transport::send`]: the
//! connection pool, TLS (rustls, with the roots the caller gives), writing the request and
//! reading the answer all happen here, so the calling thread holds no Python lock while it
//! waits or parses. Many threads of a sync share one transport and its pool.
//!
//! Nothing is interpreted beyond HTTP framing: no redirects, no decompression, no status
//! errors. Failures are classified ([`TransportError`]) so the caller can tell a refused
//! connection from a timeout, a TLS failure or an answer cut short.
//!
//! A hostile or broken server cannot hold a request longer, nor make it read more, than the
//! caller allows: [`Timeouts::total`] bounds everything from connecting to the last byte of
//! the body (a trickle of headers or body bytes, each within the per-read timeout, does not
//! extend it), and `max_body` bounds the body's bytes, refusing a larger declared
//! `Content-Length` before reading any of it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ureq::config::AutoHeaderValue;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{http, Agent};

use crate::error::{Error, Result};

/// Which server certificates are trusted.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Mozilla's roots (webpki-roots).
    WebPki,
    /// The certificates of a PEM bundle (a CA file such as certifi's).
    Pem(Vec<u8>),
    /// Any certificate: no verification at all.
    Disabled,
}

/// Timeouts of one request; `None` waits forever.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timeouts {
    /// Establishing the connection, TLS included.
    pub connect: Option<Duration>,
    /// Each read from the connection.
    pub read: Option<Duration>,
    /// Each write to the connection.
    pub write: Option<Duration>,
    /// The whole exchange: connecting, sending, the headers and the whole body.
    pub total: Option<Duration>,
}

/// What went wrong with a request, by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection: refused, unreachable, or the host name does not resolve.
    #[error("{0}")]
    Connect(String),
    /// Connecting took longer than the connect timeout.
    #[error("{0}")]
    ConnectTimeout(String),
    /// A read took longer than the read timeout.
    #[error("{0}")]
    ReadTimeout(String),
    /// A write took longer than the write timeout.
    #[error("{0}")]
    WriteTimeout(String),
    /// The TLS handshake failed: an untrusted certificate, or no TLS on the other side.
    #[error("{0}")]
    Tls(String),
    /// The server broke HTTP: a malformed answer, or the connection closed mid-answer.
    #[error("{0}")]
    Protocol(String),
    /// The request itself cannot be sent (a bad URL or header).
    #[error("{0}")]
    Request(String),
    /// The whole exchange took longer than [`Timeouts::total`].
    #[error("{0}")]
    TotalTimeout(String),
    /// The body is larger than the limit: declared so in `Content-Length` (`declared`), or
    /// found so while reading it (`declared` is `None`).
    #[error("{message}")]
    TooLarge {
        /// What happened, for people.
        message: String,
        /// The `Content-Length` the server declared, when that was over the limit.
        declared: Option<u64>,
    },
}

/// An answer: status, headers in order, and the body as received (still encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The HTTP status.
    pub status: u16,
    /// Header names and values, as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, as sent (`Content-Encoding` not undone).
    pub body: Vec<u8>,
}

/// A connection pool and TLS configuration shared by every request; see the module docs.
#[derive(Debug, Clone)]
pub struct Transport {
    agent: Agent,
}

impl Transport {
    /// A transport keeping up to `max_connections` idle connections, trusting `verify`.
    pub fn new(verify: Verify, max_connections: usize) -> Result<Self> {
        let tls = match verify {
            Verify::WebPki => TlsConfig::builder().root_certs(RootCerts::WebPki),
            Verify::Disabled => TlsConfig::builder().disable_verification(true),
            Verify::Pem(pem) => {
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    match item {
                        Ok(PemItem::Certificate(cert)) => certs.push(cert),
                        Ok(_) => {}
                        Err(err) => {
                            return Err(Error::CaBundle(format!(
                                "the CA bundle is not valid PEM: {err}"
                            )))
                        }
                    }
                }
                if certs.is_empty() {
                    return Err(Error::CaBundle("the CA bundle holds no certificate".into()));
                }
                let certs: Vec<Certificate<'static>> = certs;
                TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs)))
            }
        };
        let pool = max_connections.max(1);
        let agent = Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(AutoHeaderValue::None)
            .accept(AutoHeaderValue::None)
            .accept_encoding(AutoHeaderValue::None)
            .max_idle_connections(pool)
            .max_idle_connections_per_host(pool)
            .build()
            .new_agent();
        Ok(Transport { agent })
    }

    /// Sends one request and reads the whole answer, at most `max_body` bytes of body.
    ///
    /// `headers` are sent as given, except the ones the transport sets itself (`Host`,
    /// `Connection`, `Content-Length`, `Transfer-Encoding`). A body over `max_body` bytes
    /// (declared or received) is [`TransportError::TooLarge`]; the connection is dropped
    /// rather than drained.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, Vec<u8>)],
        body: Vec<u8>,
        timeouts: Timeouts,
        max_body: u64,
    ) -> std::result::Result<Exchange, TransportError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            if is_framing_header(name) {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let request = builder
            .body(body)
            .map_err(|e| TransportError::Request(format!("invalid request: {e}")))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_connect(timeouts.connect)
            .timeout_per_read(timeouts.read)
            .timeout_per_write(timeouts.write)
            .timeout_global(timeouts.total)
            .build();
        let mut response = self.agent.run(request).map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        // `None` without a body (HEAD, 204, 304) or without a declared length (chunked).
        if let Some(declared) = response.body().content_length() {
            if declared > max_body {
                return Err(TransportError::TooLarge {
                    message: format!(
                        "the answer declares a body of {declared} bytes, more than the limit of \
                         {max_body} bytes"
                    ),
                    declared: Some(declared),
                });
            }
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(max_body)
            .read_to_vec()
            .map_err(|error| match error {
                ureq::Error::BodyExceedsLimit(_) => TransportError::TooLarge {
                    message: format!("the body is longer than the limit of {max_body} bytes"),
                    declared: None,
                },
                other => classify(other),
            })?;
        Ok(Exchange {
            status,
            headers,
            body,
        })
    }
}

fn is_framing_header(name: &str) -> bool {
    ["host", "connection", "content-length", "transfer-encoding"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

fn classify(error: ureq::Error) -> TransportError {
    use ureq::Error as E;
    use ureq::Timeout as T;
    let text = error.to_string();
    match error {
        E::Timeout(T::Global) => TransportError::TotalTimeout(text),
        E::Timeout(T::Connect | T::Resolve) => TransportError::ConnectTimeout(text),
        E::Timeout(T::PerWrite | T::SendRequest | T::SendBody) => {
            TransportError::WriteTimeout(text)
        }
        E::Timeout(_) => TransportError::ReadTimeout(text),
        E::HostNotFound | E::ConnectionFailed => TransportError::Connect(text),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => TransportError::Tls(text),
        E::Io(io) => classify_io(&io, text),
        E::BadUri(_) | E::Http(_) => TransportError::Request(text),
        _ => TransportError::Protocol(text),
    }
}

fn classify_io(error: &io::Error, text: String) -> TransportError {
    use io::ErrorKind as K;
    // rustls reports handshake failures as I/O errors wrapping its own.
    let tls = error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    if tls {
        return TransportError::Tls(text);
    }
    match error.kind() {
        K::ConnectionRefused | K::AddrNotAvailable | K::NotConnected => {
            TransportError::Connect(text)
        }
        K::TimedOut | K::WouldBlock => TransportError::ReadTimeout(text),
        _ => TransportError::Protocol(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// Serves `answers` (raw bytes) one per request on one listener; returns the URL and the
    /// requests it read (request line and headers).
    fn serve(answers: Vec<Vec<u8>>) -> (String, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            'connections: for stream in listener.incoming() {
                let stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer: TcpStream = stream;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            continue 'connections;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    head.push_str(&String::from_utf8_lossy(&body));
                    seen.push(head);
                    match answers.next() {
                        Some(answer) => {
                            writer.write_all(&answer).unwrap();
                            if answer.starts_with(b"HTTP/1.1 200 CLOSE") {
                                continue 'connections;
                            }
                        }
                        None => return seen,
                    }
                    if answers.len() == 0 {
                        return seen;
                    }
                }
            }
            seen
        });
        (url, handle)
    }

    fn transport() -> Transport {
        Transport::new(Verify::WebPki, 4).unwrap()
    }

    fn header(exchange: &Exchange, name: &str) -> Option<String> {
        exchange
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn keep_alive_requests_with_bodies_and_chunked_answers() {
        let (url, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                .to_vec(),
        ]);
        let t = transport();
        let headers = vec![
            ("User-Agent".to_owned(), b"headwater-test".to_vec()),
            ("Host".to_owned(), b"ignored".to_vec()),
        ];
        let first = t
            .send(
                "GET",
                &format!("{url}/a?x=1"),
                &headers,
                vec![],
                Timeouts::default(),
                u64::MAX,
            )
            .unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(first.body, b"hello");
        assert_eq!(header(&first, "x-a").as_deref(), Some("1"));
        let second = t
            .send(
                "POST",
                &format!("{url}/b"),
                &[],
                b"{\"k\":1}".to_vec(),
                Timeouts::default(),
                u64::MAX,
            )
            .unwrap();
        assert_eq!(second.status, 404);
        assert_eq!(second.body, b"abcde");
        let seen = server.join().unwrap();
        assert!(
            seen[0].starts_with("GET /a?x=1 HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0]
            .to_ascii_lowercase()
            .contains("user-agent: headwater-test"));
        assert!(!seen[0].contains("ignored"));
        assert!(!seen[0].to_ascii_lowercase().contains("accept-encoding"));
        assert!(seen[1].starts_with("POST /b HTTP/1.1\r\n"));
        assert!(seen[1].ends_with("{\"k\":1}"));
    }

    #[test]
    fn a_body_cut_short_is_a_protocol_error() {
        let (url, server) = serve(vec![
            b"HTTP/1.1 200 CLOSE\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
            b"unused".to_vec(),
        ]);
        let error = transport()
            .send("GET", &url, &[], vec![], Timeouts::default(), u64::MAX)
            .unwrap_err();
        assert!(matches!(error, TransportError::Protocol(_)), "{error:?}");
        drop(server);
    }

    #[test]
    fn refused_connections_and_timeouts_are_told_apart() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = transport()
            .send(
                "GET",
                &format!("http://127.0.0.1:{port}/"),
                &[],
                vec![],
                Timeouts::default(),
                u64::MAX,
            )
            .unwrap_err();
        assert!(matches!(error, TransportError::Connect(_)), "{error:?}");
        // A server that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let timeouts = Timeouts {
            read: Some(Duration::from_millis(50)),
            ..Timeouts::default()
        };
        let error = transport()
            .send("GET", &url, &[], vec![], timeouts, u64::MAX)
            .unwrap_err();
        assert!(matches!(error, TransportError::ReadTimeout(_)), "{error:?}");
    }

    /// Accepts one connection, reads the request head, then runs `answer` on the stream
    /// until it returns or a write fails (the client hung up).
    fn hostile(
        answer: impl FnOnce(&mut TcpStream) -> io::Result<()> + Send + 'static,
    ) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = answer(&mut stream);
        });
        (url, handle)
    }

    #[test]
    fn a_declared_length_over_the_limit_fails_before_the_body() {
        let (url, server) = hostile(|stream| {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")?;
            // A trickle that would take for ever: the client must not wait for it.
            for _ in 0..50 {
                stream.write_all(b"x")?;
                thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        let error = transport()
            .send("GET", &url, &[], vec![], Timeouts::default(), 1 << 20)
            .unwrap_err();
        assert_eq!(
            error,
            TransportError::TooLarge {
                message: "the answer declares a body of 10000000000 bytes, more than the limit \
                          of 1048576 bytes"
                    .into(),
                declared: Some(10_000_000_000),
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn an_endless_chunked_body_stops_at_the_limit() {
        let (url, server) = hostile(|stream| {
            stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            let chunk = [b'a'; 4096];
            // Bounded, so the server thread always ends: 64 MiB if nobody stops reading.
            for _ in 0..16_384 {
                stream.write_all(b"1000\r\n")?;
                stream.write_all(&chunk)?;
                stream.write_all(b"\r\n")?;
            }
            Ok(())
        });
        let error = transport()
            .send("GET", &url, &[], vec![], Timeouts::default(), 100_000)
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::TooLarge { declared: None, message }
                if message == "the body is longer than the limit of 100000 bytes"),
            "{error:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn the_total_timeout_holds_against_a_trickle() {
        // Every byte comes well within the per-read timeout; only the total can stop it.
        let trickle = |head: bool| {
            move |stream: &mut TcpStream| -> io::Result<()> {
                if !head {
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")?;
                } else {
                    stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
                }
                for _ in 0..1000 {
                    stream.write_all(if head { b"X-Slow: 1\r\n" } else { b"x" })?;
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
        };
        for head in [true, false] {
            let (url, server) = hostile(trickle(head));
            let timeouts = Timeouts {
                read: Some(Duration::from_secs(5)),
                total: Some(Duration::from_millis(300)),
                ..Timeouts::default()
            };
            let error = transport()
                .send("GET", &url, &[], vec![], timeouts, u64::MAX)
                .unwrap_err();
            assert!(
                matches!(error, TransportError::TotalTimeout(_)),
                "{head}: {error:?}"
            );
            server.join().unwrap();
        }
    }

    #[test]
    fn tls_to_a_plain_http_server_is_a_tls_error() {
        // A plain HTTP server answers the TLS hello with an HTTP error page.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let error = transport()
            .send("GET", &url, &[], vec![], Timeouts::default(), u64::MAX)
            .unwrap_err();
        assert!(matches!(error, TransportError::Tls(_)), "{error:?}");
        server.join().unwrap();
    }

    #[test]
    fn bad_input_is_reported() {
        let error = Transport::new(Verify::Pem(b"not pem".to_vec()), 1).unwrap_err();
        assert!(
            error.to_string().contains("holds no certificate"),
            "{error}"
        );
        let error = transport()
            .send(
                "GET",
                "http://exa mple.com/",
                &[],
                vec![],
                Timeouts::default(),
                u64::MAX,
            )
            .unwrap_err();
        assert!(matches!(error, TransportError::Request(_)), "{error:?}");
    }
}
