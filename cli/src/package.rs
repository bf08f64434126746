//! `tollgate package`: not done yet.

pub fn run() -> Result<(), String> {
    Err("tollgate package: not done yet".to_string())
}
