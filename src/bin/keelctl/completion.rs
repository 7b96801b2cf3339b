//! `completion bash|zsh|fish|powershell`: a shell completion script for keelctl's commands
//! and flags (etcdctl 3.6's command; etcdctl 3.5 has none).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::CliError;
use crate::usage::ROOT_NAME;

/// `completion <shell>`.
#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish or powershell (checked before clap sees it).
    pub shell: Vec<String>,
}

/// Writes the script for the shell to stdout.
pub fn run(args: &CompletionArgs) -> Result<(), CliError> {
    let shell = match args.shell.first().map(String::as_str) {
        Some("bash") => Shell::Bash,
        Some("zsh") => Shell::Zsh,
        Some("fish") => Shell::Fish,
        Some("powershell") => Shell::PowerShell,
        other => {
            return Err(CliError::error(format!(
                "invalid argument {:?} for \"{ROOT_NAME} completion\"",
                other.unwrap_or_default()
            )))
        }
    };
    let mut command = crate::Cli::command();
    clap_complete::generate(shell, &mut command, ROOT_NAME, &mut std::io::stdout());
    Ok(())
}
