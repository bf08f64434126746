//! The two proxy-wasm ABI calls Tollgate makes without the SDK. The
//! request header map as the host's buffer, which `HeaderMap::from_wire`
//! reads without a copy per pair; and a local reply with a gRPC status,
//! which the SDK's `send_http_response` always leaves to Envoy. The SDK's `get_map_bytes` makes a `String` and
//! a `Vec` of every header (about 2.5 µs of the fused filter's 12 µs per
//! request, `cargo xtask bench`). Reviewed: the import is the SDK's own
//! declaration with plain integers (no enum a host could fill with an
//! unknown value), and the buffer is taken over exactly as the SDK does.
#![allow(unsafe_code)]

/// `MapType::HttpRequestHeaders` in the proxy-wasm ABI (0.2.1).
const HTTP_REQUEST_HEADERS: u32 = 0;
/// `Status::Ok`.
const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// A local reply whose `grpc-status` (for a gRPC request) is `grpc_status`
/// instead of Envoy's mapping from `status`; `Err` with the host's status.
pub fn send_local_response(status: u32, grpc_status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let map = tollgate_core::header_map::HeaderMap::from_pairs(headers.iter().copied()).to_wire();
    let grpc = i32::try_from(grpc_status).unwrap_or(-1);
    // SAFETY: every pointer is to a live local buffer of the size given,
    // only read by the host during the call; the same call the SDK makes
    // with -1 as the gRPC status.
    let result = unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            grpc,
        )
    };
    match result {
        OK => Ok(()),
        status => Err(status),
    }
}

/// The request headers' serialized map, owned; `Err` with the host's status.
pub fn request_header_map() -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are valid, aligned locals for the call.
    let status = unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    if status != OK {
        return Err(status);
    }
    if data.is_null() || size == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the host filled a buffer it got from this module's
    // `proxy_on_memory_allocate(size)` (the SDK's: a boxed `[u8]` of exactly
    // `size` bytes from the global allocator), wrote `size` bytes into it
    // and handed its ownership over; nothing else holds the pointer. The SDK
    // takes these buffers over the same way (`Vec::from_raw_parts(data,
    // size, size)` in its hostcalls).
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}
