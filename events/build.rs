//! The PostgreSQL migrations are embedded from `schema/` at compile time: rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../schema");
}
