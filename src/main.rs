//! The `mall` binary: parses the command line and hands it to the library; holds no logic.

fn main() -> std::process::ExitCode {
    mall::cli::main()
}
