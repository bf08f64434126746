//! gRPC over h2c: the messages of one unary method, an upstream answering
//! it with what it received (the gRPC twin of the echo upstream), and a
//! client calling it with tonic's generic client and a prost codec. The
//! messages are hand-written `prost::Message` structs, so no protoc.

use crate::{current_thread, pairs, TIMEOUT};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use std::net::SocketAddr;
use tokio::net::TcpStream;
/// What a call ends with when it fails: tonic's status and its codes.
pub use tonic::{Code, Status};

/// The one method: `tollgate.test.Echo/Call`.
pub const CALL: &str = "/tollgate.test.Echo/Call";
/// Largest request message the upstream reads.
const MAX_MESSAGE: usize = 1 << 20;
/// gRPC's length-prefixed message: a compressed flag and a 4-byte length.
const PREFIX: usize = 5;

#[derive(Clone, PartialEq, Message)]
pub struct CallRequest {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// What the upstream received: the message, the `:path`, and every header.
#[derive(Clone, PartialEq, Message)]
pub struct CallReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(string, tag = "2")]
    pub path: String,
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Header>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

impl CallReply {
    /// Every value of a header the upstream received.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.value.clone())
            .collect()
    }
}

/// A gRPC server on h2c answering `CALL`; any other method gets
/// `UNIMPLEMENTED`, a bad message `INVALID_ARGUMENT`. Stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    /// Binds `bind` (`host:0` for a free port) and serves on one worker thread.
    pub fn start_on(bind: &str) -> std::io::Result<Upstream> {
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .enable_time()
            .build()?;
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp));
            }
        });
        Ok(Upstream {
            addr,
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Ends the accept loop and every connection's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(tcp: TcpStream) {
    let Ok(mut connection) = h2::server::handshake(tcp).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        tokio::spawn(answer(request, respond));
    }
}

/// gRPC status codes the upstream sends.
const OK: &str = "0";
const INVALID_ARGUMENT: &str = "3";
const UNIMPLEMENTED: &str = "12";

async fn answer(request: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let (parts, mut body) = request.into_parts();
    let received = read_body(&mut body).await;
    if parts.uri.path() != CALL {
        trailers_only(&mut respond, UNIMPLEMENTED, "no such method");
        return;
    }
    let Some(call) = received
        .as_deref()
        .and_then(unframe)
        .and_then(|m| CallRequest::decode(m).ok())
    else {
        trailers_only(&mut respond, INVALID_ARGUMENT, "not one CallRequest");
        return;
    };
    let reply = CallReply {
        message: call.message,
        path: parts
            .uri
            .path_and_query()
            .map(PathAndQuery::to_string)
            .unwrap_or_default(),
        headers: pairs(&parts.headers)
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
    };
    let Ok(mut stream) = respond.send_response(grpc_head(), false) else {
        return;
    };
    let _ = stream.send_data(frame(&reply.encode_to_vec()), false);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(OK));
    let _ = stream.send_trailers(trailers);
}

fn grpc_head() -> http::Response<()> {
    let mut head = http::Response::new(());
    head.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    head
}

fn trailers_only(respond: &mut SendResponse<Bytes>, status: &'static str, message: &'static str) {
    let mut head = grpc_head();
    head.headers_mut()
        .insert("grpc-status", HeaderValue::from_static(status));
    head.headers_mut()
        .insert("grpc-message", HeaderValue::from_static(message));
    let _ = respond.send_response(head, true);
}

/// The request body, or `None` past `MAX_MESSAGE` or on a stream error.
async fn read_body(body: &mut RecvStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
        if all.len() > MAX_MESSAGE + PREFIX {
            return None;
        }
    }
    Some(all)
}

/// The one uncompressed message of a unary request.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (flag, rest) = body.split_first()?;
    let length: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let message = rest.get(4..)?;
    (*flag == 0 && usize::try_from(u32::from_be_bytes(length)).ok()? == message.len()).then_some(message)
}

/// A message as a gRPC body: the 5-byte prefix, then its bytes.
pub fn framed(message: &impl Message) -> Bytes {
    frame(&message.encode_to_vec())
}

fn frame(message: &[u8]) -> Bytes {
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(PREFIX + message.len());
    out.push(0);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// Calls `path` (normally `CALL`) at `addr` over h2c with tonic, sending
/// `metadata` as request headers. `Err`: no call was made (connect, timeout);
/// `Ok(Err(status))`: the gRPC answer was an error status (the server's, or
/// Envoy's for a local reply).
pub fn call(
    addr: SocketAddr,
    path: &str,
    metadata: &[(&str, &str)],
    message: &str,
) -> Result<Result<CallReply, Status>, String> {
    current_thread()?.block_on(async {
        tokio::time::timeout(TIMEOUT, call_on(addr, path, metadata, message))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
    })
}

async fn call_on(
    addr: SocketAddr,
    path: &str,
    metadata: &[(&str, &str)],
    message: &str,
) -> Result<Result<CallReply, Status>, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("channel not ready: {e}"))?;
    let mut request = tonic::Request::new(CallRequest {
        message: message.to_string(),
    });
    for (name, value) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
        let value = tonic::metadata::MetadataValue::try_from(*value).map_err(|e| format!("{name}: {e}"))?;
        request.metadata_mut().append(key, value);
    }
    let path = PathAndQuery::try_from(path).map_err(|e| format!("path {path:?}: {e}"))?;
    let codec = tonic_prost::ProstCodec::<CallRequest, CallReply>::default();
    Ok(grpc.unary(request, path, codec).await.map(tonic::Response::into_inner))
}
