//! Generates the package's man pages and shell completions from the CLI
//! definition itself, so they cannot drift from `dockwatch --help`.
//! `cargo xtask package` runs it (`cargo run --example package-assets --
//! OUT`) before cargo-deb picks the files up; it is an example rather than
//! part of the binary so the daemon does not carry clap_mangen.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: package-assets OUT_DIR"),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let cmd = dockwatch::cli::Cli::command();
    write_man_pages(&cmd, &man)?;
    for (shell, file) in [
        (Shell::Bash, "dockwatch"),
        (Shell::Zsh, "_dockwatch"),
        (Shell::Fish, "dockwatch.fish"),
    ] {
        let mut f = std::fs::File::create(completions.join(file))?;
        clap_complete::generate(shell, &mut cmd.clone(), "dockwatch", &mut f);
    }
    Ok(())
}

/// `dockwatch.1` and one page per subcommand (`dockwatch-run.1`, ...),
/// the layout git and cargo use.
fn write_man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(cmd.clone(), dir)
}
