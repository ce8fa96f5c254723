//! `corralctl generate <artifact>`: a hidden subcommand that writes corralctl's shell
//! completions or its man page to stdout, from the same clap definition the binary parses
//! with, so the packages (see `packaging/build`) can never ship help that has drifted.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::cli::Cli;

/// What `corralctl generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Artifact {
    /// Completions for bash (`/usr/share/bash-completion/completions/corralctl`).
    Bash,
    /// Completions for zsh (`/usr/share/zsh/vendor-completions/_corralctl`).
    Zsh,
    /// Completions for fish (`/usr/share/fish/vendor_completions.d/corralctl.fish`).
    Fish,
    /// The `corralctl(1)` man page, in roff.
    Man,
}

/// Writes `artifact` to stdout; no bus connection is made.
pub fn run(artifact: Artifact) -> ExitCode {
    let mut out = Vec::new();
    render(artifact, &mut out);
    match std::io::stdout().lock().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("corralctl: cannot write: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Renders `artifact` into `out` (a buffer: a write error there would be a bug).
pub fn render(artifact: Artifact, out: &mut Vec<u8>) {
    let shell = match artifact {
        Artifact::Bash => Shell::Bash,
        Artifact::Zsh => Shell::Zsh,
        Artifact::Fish => Shell::Fish,
        Artifact::Man => {
            clap_mangen::Man::new(Cli::command())
                .section("1")
                .manual("corral manual")
                .render(out)
                .expect("rendering into a Vec cannot fail");
            return;
        }
    };
    let mut command = without_hidden_subcommands(Cli::command());
    clap_complete::generate(shell, &mut command, "corralctl", out);
}

/// `command` less its hidden subcommands (`generate` itself): clap_mangen leaves them
/// out, but clap_complete would offer them on Tab.
fn without_hidden_subcommands(command: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    // clap's names and versions are `'static` (no "string" feature): spell them out.
    let mut trimmed = clap::Command::new("corralctl")
        .version(crate::VERSION)
        .propagate_version(command.is_propagate_version_set())
        .args(command.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = command.get_about() {
        trimmed = trimmed.about(about.clone());
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(artifact: Artifact) -> String {
        let mut out = Vec::new();
        render(artifact, &mut out);
        String::from_utf8(out).expect("generated text is UTF-8")
    }

    #[test]
    fn completions_offer_the_subcommands() {
        for artifact in [Artifact::Bash, Artifact::Zsh, Artifact::Fish] {
            let text = rendered(artifact);
            for verb in ["list", "status", "reload", "monitor"] {
                assert!(text.contains(verb), "{artifact:?} lacks {verb}");
            }
        }
    }

    #[test]
    fn completions_do_not_offer_the_hidden_generate() {
        for artifact in [Artifact::Bash, Artifact::Zsh, Artifact::Fish] {
            assert!(!rendered(artifact).contains("generate"), "{artifact:?}");
        }
    }

    #[test]
    fn man_page_is_section_1_and_hides_generate() {
        let text = rendered(Artifact::Man);
        assert!(text.contains(".TH corralctl 1"), "{text}");
        assert!(text.contains("reload"));
        assert!(
            !text.contains("generate"),
            "the hidden subcommand leaked: {text}"
        );
    }
}
