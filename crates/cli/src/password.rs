//! Where the repository password comes from: `--password-file` / `ZAIBEI_PASSWORD_FILE`,
//! `ZAIBEI_PASSWORD`, or a prompt on the terminal (without echo).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Reads the first line of a password file (without the line ending).
pub fn from_file(path: &Path) -> Result<Vec<u8>> {
    let data =
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(line.to_vec())
}

/// The password of an existing repository.
pub fn get(file: Option<&Path>, prompt: &str) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Some(p) = std::env::var_os("ZAIBEI_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        if p.is_empty() {
            bail!("ZAIBEI_PASSWORD is empty");
        }
        return Ok(p.as_bytes().to_vec());
    }
    ask(prompt)
}

/// A new password: from the same sources, or asked twice on the terminal.
pub fn get_new(file: Option<&Path>, prompt: &str) -> Result<Vec<u8>> {
    if file.is_some() || std::env::var_os("ZAIBEI_PASSWORD").is_some() {
        return get(file, prompt);
    }
    let first = ask(prompt)?;
    let second = ask("enter the password again: ")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}

/// Asks on the terminal without echo.
pub fn ask(prompt: &str) -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "no password given: use --password-file, ZAIBEI_PASSWORD_FILE or ZAIBEI_PASSWORD, or run on a terminal"
        );
    }
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let fd = stdin.lock();
    let old = rustix::termios::tcgetattr(&fd).context("reading terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)
        .context("turning off echo")?;
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &old);
    eprintln!();
    read.context("reading password")?;
    let pw = line.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    if pw.is_empty() {
        bail!("empty password");
    }
    Ok(pw)
}
