//! Test-only filter: a request carrying the header `x-test-trap` makes the
//! VM trap (wasm `unreachable`), as a bug in a filter would. Every other
//! request passes with `x-test-vm-requests: <n>` added, how many requests
//! this VM has passed (1 on a fresh VM), so a test sees when a new VM took
//! over. Never shipped.

use core::sync::atomic::{AtomicU32, Ordering};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

const MARKER: &str = "x-test-trap";
const VM_HEADER: &str = "x-test-vm-requests";

/// Requests this VM passed: module memory, so a new VM starts at 0.
static PASSED: AtomicU32 = AtomicU32::new(0);

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trap))
    }
}

struct Trap;

impl Context for Trap {}

impl HttpContext for Trap {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Ok(Some(_)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, MARKER) {
            trap();
        }
        let passed = PASSED.fetch_add(1, Ordering::Relaxed).wrapping_add(1).to_string();
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, VM_HEADER, Some(passed.as_bytes()));
        Action::Continue
    }
}

/// The wasm `unreachable` instruction: the VM traps, as on a filter bug.
#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

/// Built natively only by workspace-wide checks; never run there.
#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}
