//! Local replies. Every denial of every filter becomes a `Reply` here, so the
//! JSON body, `WWW-Authenticate` and request id are built in one place.

use serde::Serialize;

/// What a filter refuses a request with: fixed status, stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    /// Stable, machine-readable (`tenant_unknown`).
    pub reason: &'static str,
    /// Human-readable; never echoes request input.
    pub message: &'static str,
    /// RFC 6750 `error` for the `WWW-Authenticate` challenge of a 401 or 403.
    pub bearer_error: Option<&'static str>,
}

/// Answer of a filter whose configuration never loaded: fail closed.
pub const UNCONFIGURED: Denial = Denial {
    status: 503,
    reason: "filter_unconfigured",
    message: "filter has no valid configuration",
    bearer_error: None,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `grpc-status` when the request is gRPC: Envoy's mapping from the
    /// HTTP status where `None`. A 429 is 8 (`RESOURCE_EXHAUSTED`), as
    /// Envoy's `rate_limited_as_resource_exhausted` gives, not the 14
    /// (`UNAVAILABLE`) gRPC clients retry at once.
    pub grpc_status: Option<u32>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Adds string fields a stage asked for (a limit's name) to the JSON
    /// body, after the standard ones.
    pub fn add_fields(&mut self, fields: &[(String, String)]) {
        if fields.is_empty() || self.body.last() != Some(&b'}') {
            return;
        }
        self.body.pop();
        for (name, value) in fields {
            self.body.push(b',');
            let _ = serde_json::to_writer(&mut self.body, name);
            self.body.push(b':');
            let _ = serde_json::to_writer(&mut self.body, value);
        }
        self.body.push(b'}');
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    reason: &'a str,
    request_id: &'a str,
}

/// gRPC's status 8.
pub const RESOURCE_EXHAUSTED: u32 = 8;

/// Longest request id echoed back.
const MAX_REQUEST_ID: usize = 128;

impl Denial {
    pub fn reply(&self, request_id: Option<&[u8]>, realm: &str) -> Reply {
        let request_id = request_id
            .filter(|id| id.len() <= MAX_REQUEST_ID && id.iter().all(|b| b.is_ascii_graphic()))
            .and_then(|id| std::str::from_utf8(id).ok())
            .unwrap_or("");
        let body = Body {
            error: self.message,
            reason: self.reason,
            request_id,
        };
        let mut headers = vec![("content-type", "application/json".to_string())];
        if !request_id.is_empty() {
            headers.push(("x-request-id", request_id.to_string()));
        }
        if let Some(challenge) = self.challenge(realm) {
            headers.push(("www-authenticate", challenge));
        }
        Reply {
            status: self.status,
            grpc_status: (self.status == 429).then_some(RESOURCE_EXHAUSTED),
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    /// RFC 6750 section 3: a 401 always challenges; `error` only when the
    /// request carried credentials that were wrong or not enough.
    fn challenge(&self, realm: &str) -> Option<String> {
        match (self.status, self.bearer_error) {
            (401, None) => Some(format!("Bearer realm=\"{realm}\"")),
            (_, Some(error)) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
                self.message
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
