//! `dgrid-worker generate man|completions`: the man page and shell
//! completions, made from the same clap definition as the parser so they
//! cannot drift from it. Hidden: `scripts/package` runs it at build time and
//! the packages ship the output.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};

#[derive(Debug, Subcommand)]
pub enum What {
    /// roff man page for section 8 on stdout.
    Man,
    /// Completion scripts for bash, zsh and fish, written into DIR.
    Completions {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

pub fn main(what: What) -> ExitCode {
    match run(what) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dgrid-worker generate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(what: What) -> std::io::Result<()> {
    let cmd = super::Cli::command();
    match what {
        What::Man => {
            // Section 8: a system daemon, run by root's service manager.
            let man = clap_mangen::Man::new(cmd)
                .section("8")
                .manual("System Administration");
            let mut out = Vec::new();
            // Section by section rather than render(): its SUBCOMMANDS list
            // points at dgrid-worker-<sub>(8) pages that are not shipped;
            // here each subcommand gets its own section in this one page.
            man.render_title(&mut out)?;
            man.render_name_section(&mut out)?;
            man.render_synopsis_section(&mut out)?;
            man.render_description_section(&mut out)?;
            man.render_options_section(&mut out)?;
            // One page documents the subcommands too, so that
            // `man dgrid-worker` tells how to run and check a node.
            for sub in super::Cli::command().get_subcommands() {
                if sub.is_hide_set() {
                    continue;
                }
                out.extend_from_slice(
                    format!(".SH \"SUBCOMMAND: {}\"\n", sub.get_name().to_uppercase()).as_bytes(),
                );
                let page = clap_mangen::Man::new(sub.clone());
                page.render_description_section(&mut out)?;
                page.render_options_section(&mut out)?;
            }
            out.extend_from_slice(FILES_SECTION.as_bytes());
            out.extend_from_slice(configuration_section().as_bytes());
            std::io::Write::write_all(&mut std::io::stdout(), &out)
        }
        What::Completions { dir } => {
            use clap_complete::Shell;
            std::fs::create_dir_all(&dir)?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(
                    shell,
                    &mut super::Cli::command(),
                    "dgrid-worker",
                    &dir,
                )?;
            }
            Ok(())
        }
    }
}

/// worker.toml's keys with their defaults, from the code's own table
/// (`config::defaults`): the page cannot disagree with the worker.
fn configuration_section() -> String {
    let mut s = String::from(
        ".SH CONFIGURATION\nKeys of /etc/dgrid/worker.toml with their defaults \
         (README, Configuration, says what each does):\n",
    );
    for (key, value) in crate::config::defaults::documented() {
        // roff: a leading dot or quote would be a request; neither occurs
        // in a key, and values are escaped for backslashes.
        s.push_str(&format!(
            ".TP\n\\fB{key}\\fR\n{}\n",
            value.replace('\\', "\\e")
        ));
    }
    s
}

/// What an operator looks for beyond the options: where things are.
const FILES_SECTION: &str = r#".SH FILES
.TP
\fI/etc/dgrid/worker.toml\fR
The configuration. Unknown keys are errors. Environment variables
(NODE_ID, DGRID_REPO_URL, GIT_TOKEN, PULL_INTERVAL, LOG_LEVEL,
DGRID_STATE_DIR, DGRID_ENGINE, DGRID_IMAGE, DGRID_TOKEN_FILE, DGRID_GIT_USERNAME, DGRID_CA_FILE,
DGRID_SSH_KEY_FILE, DGRID_KNOWN_HOSTS, DGRID_TRUST_MODE) override it.
.TP
\fI/etc/dgrid/git-token\fR
The git token, passed to the service with LoadCredential= and read from
$CREDENTIALS_DIRECTORY/git-token. Never put it in the configuration's URL.
A token with a line break or other control character is refused.
.TP
\fI$CREDENTIALS_DIRECTORY/ssh-key\fR
An SSH deploy key, if the unit is given one (LoadCredential=ssh-key:FILE);
used unless [git] ssh_key_file names another. Host keys are checked
strictly, against [git] known_hosts when set.
.TP
\fI/etc/dgrid/node-key\fR, \fI/etc/dgrid/node-key.pub\fR
This node's key pair, made at install (root's, 0600) and kept on upgrade.
It signs the node's results; the unit passes it as the credential
node-key. Send the .pub file to the grid's owner (\fBdgrid-worker trust
add-node\fR). [trust] roots names the owner's root public keys, e.g.
\fI/etc/dgrid/trust-roots\fR.
.TP
\fI/etc/dgrid/containers.conf\fR
podman settings of the service (CONTAINERS_CONF in the unit).
.TP
\fI/usr/libexec/dgrid-worker/podman\fR
podman as the service's user, e.g. \fBpodman load < image.tar\fR to give the
service the image its tasks run in (there is no registry to pull from).
.TP
\fI/var/lib/dgrid-worker\fR
State: the working clone and the outbox of results not yet pushed, the
trust policy held (trust/policy.json) and the signed tasks run
(trust/ran); also the home of the dgrid-worker user and its rootless
podman storage. \fIlock\fR there is held by the running worker (it holds
its pid): a second worker on the same state directory exits with 78.
.SH EXIT STATUS
0 on success; 78 on a configuration error, or when another worker holds
the state directory (the service is then not restarted); 1 on other
failures.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBpodman\fR(1)
"#;
