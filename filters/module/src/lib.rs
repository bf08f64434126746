//! tollgate.wasm: one module holding every filter. Plugins from the same
//! module and VM config share one VM per worker; each plugin's root context
//! picks its filter by `root_id` (Istio's `pluginName`), read from the host.

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Bytes, ContextType, LogLevel};
use tollgate_host::Host;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Commit, `-dirty`, profile: `1a2b3c4d5e6f-dirty/release` (build.rs).
const BUILD: &str = env!("TOLLGATE_BUILD");

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ModuleRoot::default()) });
}}

/// The filter for a root id, or `None` for an id this module does not hold.
fn filter_for(root_id: &str) -> Option<Box<dyn RootContext>> {
    let root = tollgate_stages::root_for(root_id)?;
    Some(Box::new(tollgate_envoy::Root(root)))
}

#[derive(Default)]
struct ModuleRoot {
    inner: Option<Box<dyn RootContext>>,
}

impl ModuleRoot {
    /// Picks the filter on first use; `false` when the root id is unknown.
    fn select(&mut self) -> bool {
        if self.inner.is_some() {
            return true;
        }
        let root_id = tollgate_envoy::Envoy.root_id();
        self.inner = filter_for(&root_id);
        if self.inner.is_none() {
            error!(
                "tollgate {VERSION}: unknown root_id '{root_id}'; this module holds {:?}",
                tollgate_stages::root_ids()
            );
        }
        self.inner.is_some()
    }
}

impl Context for ModuleRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_grpc_call_response(token, status, size);
        }
    }

    fn on_done(&mut self) -> bool {
        self.inner.as_mut().is_none_or(|inner| inner.on_done())
    }
}

impl RootContext for ModuleRoot {
    fn on_vm_start(&mut self, size: usize) -> bool {
        tollgate_envoy::use_host_log_level();
        if !self.select() {
            return false;
        }
        info!("tollgate {VERSION} ({BUILD}) starting");
        self.inner.as_mut().is_some_and(|inner| inner.on_vm_start(size))
    }

    fn on_configure(&mut self, size: usize) -> bool {
        self.select() && self.inner.as_mut().is_some_and(|inner| inner.on_configure(size))
    }

    fn on_tick(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_tick();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_queue_ready(queue_id);
        }
    }

    fn on_log(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_log();
        }
    }

    fn get_vm_configuration(&self) -> Option<Bytes> {
        self.inner.as_ref().and_then(|inner| inner.get_vm_configuration())
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.inner.as_ref() {
            Some(inner) => inner.create_http_context(context_id),
            // Only reachable if the host ignored a failed start: fail closed.
            None => Some(Box::new(Unconfigured)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> proxy_wasm::types::Action {
        tollgate_host::reply::unconfigured(&tollgate_envoy::Envoy, 0);
        proxy_wasm::types::Action::Pause
    }
}

#[cfg(test)]
#[path = "../build_stamp.rs"]
mod build_stamp;
#[cfg(test)]
mod tests;
