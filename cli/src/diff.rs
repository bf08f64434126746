//! `tollgate diff`: not done yet.

pub fn run() -> Result<(), String> {
    Err("tollgate diff: not done yet".to_string())
}
