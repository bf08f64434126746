//! `tollgate explain`: not done yet.

pub fn run() -> Result<(), String> {
    Err("tollgate explain: not done yet".to_string())
}
