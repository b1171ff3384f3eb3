//! `mpgate`: thin entry point. Parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mpgate::cli::Cli::parse();
    mpgate::cli::run(cli)
}
