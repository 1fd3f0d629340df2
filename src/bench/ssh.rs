//! Control over SSH through the system OpenSSH client, as Jepsen's control node does: every
//! remote step is one `ssh` command run by the controller, and a failure names the host and the
//! step, with ssh's own complaint classified (refused, authentication, unreachable, timeout).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::hosts::Host;

/// Longest a remote step may take (an upload of the binary over a slow link included).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest an SSH connection may take to establish.
pub const CONNECT_TIMEOUT_S: u32 = 10;
/// Most bytes of a step's output kept (results are small; logs are fetched by `tail`).
pub const OUTPUT_BYTES_MAX: usize = 64 << 20;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes Ctrl-C (SIGINT) and SIGTERM set a flag that every wait of a multi-host run checks,
/// so that the run stops and still cleans up what it started.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

/// Whether Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How the controller reaches one host.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// The host's inventory name (for errors).
    pub host: String,
    destination: String,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    options: Vec<String>,
}

impl Ssh {
    /// The SSH settings of `host`.
    pub fn to(host: &Host) -> Ssh {
        Ssh {
            host: host.name.clone(),
            destination: host.ssh.clone(),
            port: host.ssh_port,
            identity_file: host.identity_file.clone(),
            options: host.ssh_options.clone(),
        }
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        // No prompts: a controller that waits for a password would hang the run.
        cmd.arg("-o").arg("BatchMode=yes");
        cmd.arg("-o")
            .arg(format!("ConnectTimeout={CONNECT_TIMEOUT_S}"));
        cmd.arg("-o").arg("ServerAliveInterval=5");
        if let Some(port) = self.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(identity) = &self.identity_file {
            cmd.arg("-i")
                .arg(identity)
                .arg("-o")
                .arg("IdentitiesOnly=yes");
        }
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        cmd.arg(&self.destination).arg("--").arg(script);
        cmd
    }

    /// Runs `script` with the remote user's shell; returns its standard output.
    pub fn run(&self, step: &str, script: &str) -> Result<String, String> {
        self.run_with_input(step, script, None)
    }

    /// Like [`Ssh::run`], with `input` (a local file) as the script's standard input.
    pub fn run_with_input(
        &self,
        step: &str,
        script: &str,
        input: Option<&Path>,
    ) -> Result<String, String> {
        let mut cmd = self.command(script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        match input {
            Some(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    self.failed(step, format!("cannot open {}: {e}", path.display()))
                })?;
                cmd.stdin(file);
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            self.failed(
                step,
                format!("cannot run ssh: {e} (is OpenSSH's client installed?)"),
            )
        })?;
        // Readers on their own threads, so that a chatty step cannot fill a pipe and stall.
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        let until = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if interrupted() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.failed(step, "interrupted (Ctrl-C)".into()));
                }
                Ok(None) if Instant::now() > until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.failed(step, format!("no answer within {STEP_TIMEOUT:?}")));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(self.failed(step, format!("waiting for ssh: {e}"))),
            }
        };
        let out = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(out);
        }
        let reason = match status.code() {
            Some(255) => classify_ssh_error(&err),
            Some(code) => format!("exited with status {code}: {}", last_lines(&err, 5)),
            None => "killed by a signal".to_string(),
        };
        Err(self.failed(step, reason))
    }

    fn failed(&self, step: &str, reason: String) -> String {
        format!("host `{}`, step `{step}`: {reason}", self.host)
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut pipe)
            .take(OUTPUT_BYTES_MAX as u64)
            .read_to_end(&mut bytes);
        // Drain the rest so that the remote side is not blocked on a full pipe.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// ssh's exit status 255 means ssh itself failed; say how in words.
fn classify_ssh_error(stderr: &str) -> String {
    let detail = last_lines(stderr, 2);
    let kind = if stderr.contains("Connection refused") {
        "ssh refused (no sshd listening on that port?)"
    } else if stderr.contains("Permission denied") {
        "ssh authentication failed (key not accepted)"
    } else if stderr.contains("Could not resolve hostname") {
        "ssh destination does not resolve"
    } else if stderr.contains("timed out") {
        "ssh connection timed out (host unreachable?)"
    } else if stderr.contains("No route to host") || stderr.contains("Network is unreachable") {
        "host unreachable"
    } else if stderr.contains("Host key verification failed") {
        "host key verification failed (add it to known_hosts, or set StrictHostKeyChecking in ssh_options)"
    } else if stderr.contains("closed by remote host") || stderr.contains("Connection reset") {
        "ssh connection closed by the host"
    } else {
        "ssh failed"
    };
    format!("{kind}: {detail}")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "(no message)".into()
    } else {
        tail
    }
}

/// Quotes `text` for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_failures_are_named() {
        let refused = "ssh: connect to host 127.0.0.12 port 16022: Connection refused\n";
        assert!(classify_ssh_error(refused).starts_with("ssh refused"));
        let auth = "root@127.0.0.12: Permission denied (publickey).\n";
        assert!(classify_ssh_error(auth).starts_with("ssh authentication failed"));
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
