//! The proxy-wasm edge: the only crate of the filters that speaks
//! proxy-wasm. `Envoy` is the `Host` over Envoy's hostcalls; `Root` and
//! `Http` are the root and HTTP contexts over a `tollgate_host` pipeline.

mod host;
mod raw;

pub use host::{use_host_log_level, Envoy};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use tollgate_host::{Flow, Host, Pipeline, PipelineRoot, Shared};

/// A plugin's root context over a pipeline.
pub struct Root(pub PipelineRoot);

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(pipeline) = self.0.pipeline() {
            pipeline.on_http_call_response(&Envoy, token, body_size);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(pipeline) = self.0.pipeline() {
            pipeline.on_grpc_call_response(&Envoy, token, status, size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = Envoy.plugin_config(size);
        self.0.configure(&Envoy, &config)
    }

    fn on_tick(&mut self) {
        if let Some(pipeline) = self.0.pipeline() {
            pipeline.on_tick(&Envoy);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            pipeline: self.0.pipeline(),
            request: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request's HTTP context: it keeps the request context to the end.
pub struct Http {
    context_id: u32,
    pipeline: Option<Rc<Pipeline>>,
    request: Option<Shared>,
}

impl Context for Http {
    /// A call a stage started while running this request (the rate limit
    /// service's answer): the SDK hands it to the context that was active
    /// when the call was dispatched, this one, not the root.
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.on_grpc_call_response(&Envoy, token, status, size);
        }
    }

    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.on_http_call_response(&Envoy, token, body_size);
        }
    }

    /// The stream is gone (its client may have left while it waited).
    fn on_done(&mut self) -> bool {
        if let (Some(pipeline), Some(request)) = (&self.pipeline, &self.request) {
            pipeline.done(request);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Some(pipeline) = &self.pipeline else {
            tollgate_host::reply::unconfigured(&Envoy, self.context_id);
            return Action::Pause;
        };
        let (flow, request) = pipeline.on_request_headers(&Envoy, self.context_id, end_of_stream);
        self.request = Some(request);
        match flow {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }

    /// A form body the pipeline checks is held (`Pause` is Envoy's
    /// StopIterationAndBuffer: the application gets none of it) until its
    /// end, then judged.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(pipeline), Some(request)) = (&self.pipeline, &self.request) else {
            return Action::Continue;
        };
        match pipeline.on_request_body(&Envoy, request, body_size, end_of_stream) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }

    /// An HTTP/2 body may end with trailers, not a last body callback.
    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        let (Some(pipeline), Some(request)) = (&self.pipeline, &self.request) else {
            return Action::Continue;
        };
        match pipeline.on_request_trailers(&Envoy, request) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let (Some(pipeline), Some(request)) = (&self.pipeline, &self.request) {
            pipeline.on_response_headers(&Envoy, request);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        match (&self.pipeline, &self.request) {
            (Some(pipeline), Some(request)) => pipeline.on_log(&Envoy, request),
            (Some(pipeline), None) => pipeline.on_log_unseen(&Envoy, self.context_id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_never_skips_signature_checks() {
        assert!(!Envoy.skips_signatures());
    }
}
