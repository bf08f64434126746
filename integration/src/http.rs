//! A raw HTTP/1.1 client: it sends the request target byte for byte, so a
//! test can send `/api/trino/../datahub` that URL libraries would clean up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body the client reads.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(target: &str) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn method(mut self, method: &str) -> Request {
        self.method = method.into();
        self
    }

    pub fn header(self, name: &str, value: &str) -> Request {
        self.header_bytes(name, value.as_bytes())
    }

    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Request {
        self.headers.push((name.into(), value.to_vec()));
        self
    }

    /// Sends on a new connection, closed after the answer.
    pub fn send(&self, addr: SocketAddr) -> Result<Response, String> {
        let stream = connect(addr)?;
        let mut reader = BufReader::new(stream);
        self.write_to(reader.get_mut(), true)?;
        read_response(&mut reader, true)
    }

    fn write_to(&self, stream: &mut TcpStream, close: bool) -> Result<(), String> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            out.extend_from_slice(b"host: api.example.com\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        stream.write_all(&out).map_err(|e| format!("write: {e}"))
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(stream)
}

fn read_response(reader: &mut BufReader<TcpStream>, to_eof: bool) -> Result<Response, String> {
    let (status_line, headers) = read_head(reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let body = read_body(reader, &headers, to_eof)?;
    Ok(Response { status, headers, body })
}

/// One keep-alive connection, opened again when the server closed it
/// (a load loop sends many requests without a handshake each).
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connects: u64,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            conn: None,
            connects: 0,
        }
    }

    /// Sends on the open connection; a connection the server closed
    /// (write or read fails before any answer) is opened again once.
    pub fn send(&mut self, request: &Request) -> Result<Response, String> {
        match self.try_send(request) {
            Ok(response) => Ok(response),
            Err(_) => {
                self.conn = None;
                self.try_send(request)
            }
        }
    }

    fn try_send(&mut self, request: &Request) -> Result<Response, String> {
        let reader = match self.conn.take() {
            Some(reader) => self.conn.insert(reader),
            None => {
                self.connects += 1;
                self.conn.insert(BufReader::new(connect(self.addr)?))
            }
        };
        request.write_to(reader.get_mut(), false)?;
        let response = read_response(reader, false)?;
        if response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        Ok(response)
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a start line and headers; header names are lower-cased.
pub fn read_head(reader: &mut impl BufRead) -> Result<(String, Vec<(String, String)>), String> {
    let mut start = String::new();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| format!("read: {e}"))?;
        total += n;
        if n == 0 || total > 64 * 1024 {
            return Err("connection closed or head too large".into());
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if start.is_empty() {
            start = line;
        } else if line.is_empty() {
            return Ok((start, headers));
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// Reads a body by content-length, chunked encoding, or (responses) to EOF.
pub fn read_body(reader: &mut impl BufRead, headers: &[(String, String)], to_eof: bool) -> Result<Vec<u8>, String> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return read_chunked(reader);
    }
    let mut body = Vec::new();
    match header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) if len <= MAX_BODY => {
            body.resize(len, 0);
            reader.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
        }
        Some(len) => return Err(format!("body of {len} bytes is over the limit")),
        None if to_eof => {
            reader
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
                .map_err(|e| format!("body: {e}"))?;
        }
        None => {}
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).map_err(|e| format!("chunk: {e}"))?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| format!("chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            let mut rest = String::new();
            while reader.read_line(&mut rest).map_err(|e| e.to_string())? > 2 {
                rest.clear();
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err("chunked body over the limit".into());
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        reader
            .read_exact(body.get_mut(start..).unwrap_or_default())
            .map_err(|e| format!("chunk: {e}"))?;
        body.truncate(start + size);
    }
}
