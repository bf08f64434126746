//! Test-only filter standing in for the jwt filter: copies the value of the
//! `x-test-verified-tenant` request header into filter state `tollgate.tenant`
//! and removes the header. Never shipped.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(StateSetter) });
}}

const HEADER: &str = "x-test-verified-tenant";

struct StateSetter;

impl Context for StateSetter {}

impl HttpContext for StateSetter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Ok(Some(value)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER) {
            let _ = hostcalls::set_property(vec!["tollgate.tenant"], Some(&value));
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, HEADER, None);
        }
        Action::Continue
    }
}
