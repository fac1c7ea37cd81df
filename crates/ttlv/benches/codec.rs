//! Placeholder: the codec benchmark is being written.
fn main() {}
