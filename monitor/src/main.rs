//! The `dockwatch` binary: parses the command line and hands over to
//! [`dockwatch::cli`]. Exit codes: 0 ok, 1 findings, 2 usage or configuration
//! error.

use std::process::ExitCode;

fn main() -> ExitCode {
    dockwatch::cli::main()
}
