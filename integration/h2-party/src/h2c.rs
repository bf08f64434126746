//! A small h2c client: HTTP/2 over cleartext TCP with prior knowledge (the
//! client preface first, no `Upgrade`), as sidecars speak to each other. The
//! `h2` crate does the framing, HPACK and flow control; the `:path` is sent
//! as given (`/api/x/../y` stays), `host` becomes `:authority`.

use crate::{current_thread, pairs, TIMEOUT};
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Largest response body read.
const MAX_BODY: usize = 4 << 20;
/// `:authority` when the request has no `host` header.
const DEFAULT_AUTHORITY: &[u8] = b"api.example.com";

/// An answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `None`: the stream ended without a trailers frame (a trailers-only
    /// gRPC answer ends with its one HEADERS frame, so it has none).
    pub trailers: Option<Vec<(String, String)>>,
}

/// Sends one request on a new h2c connection, closed after the answer.
pub fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Answer, String> {
    send_with_trailers(addr, method, target, headers, body, &[])
}

/// As `send`, the body followed by a trailers frame when `trailers` is not
/// empty (the stream then ends on the trailers, not on the last DATA frame).
pub fn send_with_trailers(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    trailers: &[(String, Vec<u8>)],
) -> Result<Answer, String> {
    let request = Outgoing {
        method,
        target,
        headers,
        body,
        trailers,
    };
    current_thread()?.block_on(async {
        tokio::time::timeout(TIMEOUT, exchange(addr, &request))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
    })
}

#[derive(Clone, Copy)]
struct Outgoing<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a [(String, Vec<u8>)],
    body: &'a [u8],
    trailers: &'a [(String, Vec<u8>)],
}

async fn exchange(addr: SocketAddr, outgoing: &Outgoing<'_>) -> Result<Answer, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    // The connection task reads and writes the frames; it is stopped once
    // the answer is in (or the exchange failed).
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = request(client, outgoing).await;
    driver.abort();
    answer
}

async fn request(client: h2::client::SendRequest<Bytes>, outgoing: &Outgoing<'_>) -> Result<Answer, String> {
    let Outgoing {
        method,
        target,
        headers,
        body,
        trailers,
    } = *outgoing;
    let is_host = |name: &str| name.eq_ignore_ascii_case("host");
    let authority = headers
        .iter()
        .find(|(name, _)| is_host(name))
        .map_or(DEFAULT_AUTHORITY, |(_, value)| value.as_slice());
    let uri = Uri::builder()
        .scheme("http")
        .authority(Authority::try_from(authority).map_err(|e| format!("authority: {e}"))?)
        .path_and_query(PathAndQuery::try_from(target).map_err(|e| format!("path {target:?}: {e}"))?)
        .build()
        .map_err(|e| format!("uri: {e}"))?;
    let mut request = http::Request::new(());
    *request.method_mut() = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    for (name, value) in headers.iter().filter(|(name, _)| !is_host(name)) {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name:?}: {e}"))?;
        let value = HeaderValue::from_bytes(value).map_err(|e| format!("value of {name}: {e}"))?;
        request.headers_mut().append(name, value);
    }
    let mut client = client.ready().await.map_err(|e| format!("h2 not ready: {e}"))?;
    let (answer, mut stream) = client
        .send_request(request, body.is_empty() && trailers.is_empty())
        .map_err(|e| format!("send: {e}"))?;
    if !body.is_empty() {
        stream
            .send_data(Bytes::copy_from_slice(body), trailers.is_empty())
            .map_err(|e| format!("send body: {e}"))?;
    }
    if !trailers.is_empty() {
        let mut map = http::HeaderMap::new();
        for (name, value) in trailers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("trailer {name:?}: {e}"))?;
            let value = HeaderValue::from_bytes(value).map_err(|e| format!("value of {name}: {e}"))?;
            map.append(name, value);
        }
        stream.send_trailers(map).map_err(|e| format!("send trailers: {e}"))?;
    }
    let response = answer.await.map_err(|e| format!("answer: {e}"))?;
    let status = response.status().as_u16();
    let headers = pairs(response.headers());
    let mut recv = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("body over {MAX_BODY} bytes"));
        }
    }
    let trailers = recv
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?
        .map(|t| pairs(&t));
    Ok(Answer {
        status,
        headers,
        body,
        trailers,
    })
}
