//! The `mall` binary: parses the command line and hands it to the library; holds no logic.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mall::cli::main()
}
