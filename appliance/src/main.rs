//! The `otgate` binary: parse the command line, set up tracing, run, print one error, exit.
fn main() -> std::process::ExitCode {
    otgate::cli::main()
}
