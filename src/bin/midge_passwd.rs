//! midge_passwd: a drop-in for `mosquitto_passwd` 2.0.
//!
//! Owns: the command line (same flags, messages and exit codes as
//! `mosquitto_passwd` 2.0.11), the password prompt (echo off through
//! `midge::client::echo_off`) and rewriting a password file safely (temp
//! file in the same directory, fsync, rename). Hashing and the file format live in
//! `midge::auth::password`, shared with the broker.
//!
//! Must not: print a password or hash to the terminal, leave the terminal
//! with echo off, or leave a half-written password file behind.
//!
//! Deliberate differences from `mosquitto_passwd` 2.0.11, all where it loses
//! data or does something no one could want:
//! - Comment and blank lines are kept when a file is updated (Mosquitto calls
//!   them corrupt and, in update mode, silently drops every line after them).
//!   Other corrupt lines stop the tool with Mosquitto's message and the file
//!   is left untouched.
//! - `-U` leaves entries that are already valid hashes alone (Mosquitto hashes
//!   the hash, locking the user out) and honours `-I` (Mosquitto ignores it).
//! - A new entry after a last line without a newline starts on its own line.
//! - An empty username is refused; `-U` on an empty file succeeds.
//! - Terminal input keeps line editing (only echo is turned off), and
//!   Ctrl-C restores the terminal then dies by the signal instead of exiting 0.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use midge::auth::password::{self, HashKind};
use midge::client::echo_off::EchoOff;
use ring::rand::SecureRandom;

/// Mosquitto refuses usernames and passwords longer than this.
const MAX_LEN: usize = 65535;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = run(&args);
    // Every guard (terminal state, temp files) has been dropped by now.
    std::process::exit(code);
}

/// Writes to stderr without panicking when stderr is closed.
fn error(message: &str) {
    let _ = writeln!(io::stderr(), "{message}");
}

/// Writes to stdout without panicking when stdout is closed.
fn out(text: &str) {
    let mut stdout = io::stdout();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn print_usage() {
    out("midge_passwd is a tool for managing password files for midge and mosquitto.\n\n\
Usage: midge_passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username\n       \
midge_passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password\n       \
midge_passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] -U passwordfile\n \
-b : run in batch mode to allow passing passwords on the command line.\n \
-c : create a new password file. This will overwrite existing files.\n \
-D : delete the username rather than adding/updating its password.\n \
-H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.\n      \
Mosquitto 1.6 and earlier defaulted to sha512.\n \
-I : number of sha512-pbkdf2 iterations (default 101, as mosquitto_passwd 2.0).\n \
-U : update a plain text password file to use hashed passwords.\n      \
Entries that are already hashed are left unchanged.\n\n\
The files it writes work with midge and with Mosquitto 2.0.\n\n");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Sha512,
    Pbkdf2,
}

/// What the command line asked for, after Mosquitto's checks.
struct Request {
    kind: HashKind,
    batch: bool,
    create: bool,
    delete: bool,
    convert: bool,
    file: OsString,
    username: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
}

/// C `atoi`: optional blanks, an optional sign, then digits up to the first
/// non-digit; no digits gives 0. Saturates instead of overflowing.
fn atoi(text: &[u8]) -> i64 {
    let mut rest = text;
    while let Some((first, tail)) = rest.split_first() {
        if matches!(first, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            rest = tail;
        } else {
            break;
        }
    }
    let mut negative = false;
    if let Some((first, tail)) = rest.split_first() {
        if *first == b'-' || *first == b'+' {
            negative = *first == b'-';
            rest = tail;
        }
    }
    let mut value: i64 = 0;
    for &b in rest.iter().take_while(|b| b.is_ascii_digit()) {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative {
        -value
    } else {
        value
    }
}

/// Parses arguments exactly as `mosquitto_passwd` 2.0 does: options first,
/// the first non-option ends them. `Err` carries the exit code after the
/// message has been printed.
fn parse_args(args: &[OsString]) -> Result<Request, i32> {
    if args.is_empty() {
        print_usage();
        return Err(1);
    }
    let mut scheme = Scheme::Pbkdf2;
    let mut iterations = password::DEFAULT_ITERATIONS;
    let (mut batch, mut create, mut delete, mut convert) = (false, false, false, false);
    let mut idx = 0;
    while let Some(arg) = args.get(idx) {
        match arg.as_bytes() {
            b"-H" => {
                let Some(value) = args.get(idx + 1) else {
                    error("Error: -H argument given but not enough other arguments.");
                    return Err(1);
                };
                scheme = match value.as_bytes() {
                    b"sha512" => Scheme::Sha512,
                    b"sha512-pbkdf2" => Scheme::Pbkdf2,
                    other => {
                        error(&format!(
                            "Error: Unknown hash type '{}'",
                            String::from_utf8_lossy(other)
                        ));
                        return Err(1);
                    }
                };
                idx += 1;
            }
            b"-b" => batch = true,
            b"-c" => create = true,
            b"-D" => delete = true,
            b"-I" => {
                let Some(value) = args.get(idx + 1) else {
                    error("Error: -I argument given but not enough other arguments.");
                    return Err(1);
                };
                let n = atoi(value.as_bytes());
                if n < 1 {
                    error("Error: Number of iterations must be > 0.");
                    return Err(1);
                }
                iterations = match u32::try_from(n) {
                    Ok(n) if n <= password::MAX_ITERATIONS => n,
                    _ => {
                        error(&format!(
                            "Error: Number of iterations must be at most {}.",
                            password::MAX_ITERATIONS
                        ));
                        return Err(1);
                    }
                };
                idx += 1;
            }
            b"-U" => convert = true,
            _ => break,
        }
        idx += 1;
    }

    if create && delete {
        error("Error: -c and -D cannot be used together.");
        return Err(1);
    }
    if create && convert {
        error("Error: -c and -U cannot be used together.");
        return Err(1);
    }
    if delete && convert {
        error("Error: -D and -U cannot be used together.");
        return Err(1);
    }
    if delete && batch {
        error("Error: -b and -D cannot be used together.");
        return Err(1);
    }

    let rest = args.get(idx..).unwrap_or(&[]);
    let bytes = |i: usize| rest.get(i).map(|a| a.as_bytes().to_vec());
    let (file, username, password) = if create {
        if batch {
            if rest.len() < 3 {
                error("Error: -c argument given but password file, username, or password missing.");
                return Err(1);
            }
            (rest.first(), bytes(1), bytes(2))
        } else {
            if rest.len() < 2 {
                error("Error: -c argument given but password file or username missing.");
                return Err(1);
            }
            (rest.first(), bytes(1), None)
        }
    } else if delete {
        if rest.len() < 2 {
            error("Error: -D argument given but password file or username missing.");
            return Err(1);
        }
        (rest.first(), bytes(1), None)
    } else if convert {
        if rest.len() != 1 {
            error("Error: -U argument given but password file missing.");
            return Err(1);
        }
        (rest.first(), None, None)
    } else if batch && rest.len() == 3 {
        (rest.first(), bytes(1), bytes(2))
    } else if !batch && rest.len() == 2 {
        (rest.first(), bytes(1), None)
    } else {
        print_usage();
        return Err(1);
    };
    let Some(file) = file.cloned() else {
        print_usage();
        return Err(1);
    };

    if let Some(name) = &username {
        if name.len() > MAX_LEN {
            error("Error: Username must be less than 65536 characters long.");
            return Err(1);
        }
        if name.iter().any(|&b| b < 0x20 || b == 0x7f) {
            error("Error: Username must not contain control characters.");
            return Err(1);
        }
        if name.contains(&b':') {
            error("Error: Username must not contain the ':' character.");
            return Err(1);
        }
        if name.is_empty() {
            // mosquitto_passwd writes ":hash", which no reader can use.
            error("Error: Username must not be empty.");
            return Err(1);
        }
    }
    if password.as_ref().is_some_and(|p| p.len() > MAX_LEN) {
        error("Error: Password must be less than 65536 characters long.");
        return Err(1);
    }

    let kind = match scheme {
        Scheme::Sha512 => HashKind::Sha512,
        Scheme::Pbkdf2 => HashKind::Pbkdf2Sha512 { iterations },
    };
    Ok(Request {
        kind,
        batch,
        create,
        delete,
        convert,
        file,
        username,
        password,
    })
}

fn run(args: &[OsString]) -> i32 {
    let request = match parse_args(args) {
        Ok(request) => request,
        Err(code) => return code,
    };
    // Like Mosquitto's realpath(): follow symlinks so the real file is
    // replaced, and fall back to the name as given when it does not exist.
    let given = PathBuf::from(&request.file);
    let path = match fs::canonicalize(&given) {
        Ok(path) => path,
        Err(err) if err.kind() == io::ErrorKind::NotFound => given,
        Err(err) => {
            error(&format!(
                "Error reading password file: {}",
                password::os_error_text(&err)
            ));
            return 1;
        }
    };
    let result = if request.create {
        create_file(&request, &path)
    } else {
        update_file(&request, &path)
    };
    match result {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// The full `user:hash\n` line for a new entry.
fn entry_line(username: &[u8], password: &[u8], kind: HashKind) -> Result<Vec<u8>, i32> {
    let hash = password::new_hash(password, kind).map_err(|_| {
        error("Error: Unable to hash password.");
        1
    })?;
    let mut line = Vec::with_capacity(username.len() + hash.len() + 2);
    line.extend_from_slice(username);
    line.push(b':');
    line.extend_from_slice(hash.as_bytes());
    line.push(b'\n');
    Ok(line)
}

/// The password from `-b`, or from the prompt.
fn password_for(request: &Request) -> Result<Vec<u8>, i32> {
    match (&request.password, request.batch) {
        (Some(password), true) => Ok(password.clone()),
        _ => get_password(),
    }
}

fn create_file(request: &Request, path: &Path) -> Result<(), i32> {
    let username = request.username.as_deref().unwrap_or_default();
    let password = password_for(request)?;
    let line = entry_line(username, &password, request.kind)?;
    write_replacing(path, &line).map_err(|err| {
        error(&format!(
            "Error: Unable to open file {} for writing. {}.",
            path.display(),
            password::os_error_text(err.io())
        ));
        1
    })
}

fn update_file(request: &Request, path: &Path) -> Result<(), i32> {
    // Opening for writing too, like Mosquitto's "r+": a file we may not
    // change is refused here rather than replaced by the rename later.
    let original = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .and_then(|mut file| {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map(|_| bytes)
        })
        .map_err(|err| {
            error(&format!(
                "Error: Unable to open password file {}. {}.",
                path.display(),
                password::os_error_text(&err)
            ));
            1
        })?;

    let action = if request.delete {
        Action::Delete(request.username.as_deref().unwrap_or_default())
    } else if request.convert {
        Action::Convert(request.kind)
    } else {
        let username = request.username.as_deref().unwrap_or_default();
        let password = password_for(request)?;
        Action::Set(username, entry_line(username, &password, request.kind)?)
    };
    let rewritten = rewrite(&original, &action)?;
    write_replacing(path, &rewritten).map_err(|err| {
        match err {
            WriteError::Temp(err) => error(&format!(
                "Error: Unable to open temporary file. {}.",
                password::os_error_text(&err)
            )),
            WriteError::Write(err) => error(&format!(
                "Error occurred updating password file {}. {}.",
                path.display(),
                password::os_error_text(&err)
            )),
        }
        1
    })
}

enum Action<'a> {
    /// Replace (or append) this user's line with the prepared line.
    Set(&'a [u8], Vec<u8>),
    Delete(&'a [u8]),
    Convert(HashKind),
}

/// Appends `line`, first ending the previous line if the file's last line
/// had no newline (Mosquitto would glue the two together).
fn push_entry(out: &mut Vec<u8>, line: &[u8]) {
    if out.last().is_some_and(|&b| b != b'\n') {
        out.push(b'\n');
    }
    out.extend_from_slice(line);
}

/// Produces the new file contents. Lines other than the one being changed
/// are copied byte for byte.
fn rewrite(original: &[u8], action: &Action<'_>) -> Result<Vec<u8>, i32> {
    let mut out = Vec::with_capacity(original.len() + 256);
    let mut found = false;
    for (index, line) in original.split_inclusive(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if content.first() == Some(&b'#') || password::trim_blanks(content).is_empty() {
            out.extend_from_slice(line);
            continue;
        }
        let (username, field) = match password::split_entry(content) {
            Some((user, Some(field))) if !user.is_empty() && !field.is_empty() => (user, field),
            _ => {
                error(&format!("Error: Corrupt password file at line {line_no}."));
                return Err(1);
            }
        };
        match action {
            Action::Set(target, new_line) => {
                if username == *target {
                    found = true;
                    push_entry(&mut out, new_line);
                } else {
                    out.extend_from_slice(line);
                }
            }
            Action::Delete(target) => {
                if username == *target {
                    found = true;
                } else {
                    out.extend_from_slice(line);
                }
            }
            Action::Convert(kind) => {
                let hashed = std::str::from_utf8(field)
                    .ok()
                    .and_then(password::hash_kind)
                    .is_some();
                if hashed {
                    error(&format!(
                        "Warning: User {} at line {line_no} already has a hashed password, left unchanged.",
                        String::from_utf8_lossy(username)
                    ));
                    out.extend_from_slice(line);
                } else {
                    push_entry(&mut out, &entry_line(username, field, *kind)?);
                }
            }
        }
    }
    match action {
        Action::Set(_, new_line) if !found => push_entry(&mut out, new_line),
        Action::Delete(target) if !found => {
            error(&format!(
                "Warning: User {} not found in password file.",
                String::from_utf8_lossy(target)
            ));
            return Err(1);
        }
        _ => {}
    }
    Ok(out)
}

enum WriteError {
    /// The temporary file could not be created.
    Temp(io::Error),
    /// Writing, syncing or renaming failed (the original is untouched).
    Write(io::Error),
}

impl WriteError {
    fn io(&self) -> &io::Error {
        match self {
            WriteError::Temp(err) | WriteError::Write(err) => err,
        }
    }
}

/// Replaces `path` with `contents` atomically: a temp file in the same
/// directory is written, synced, given the old file's mode and owner, then
/// renamed over it. A reader (the broker on SIGHUP) sees the old or the new
/// file, never half of one.
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let existing = fs::metadata(path).ok();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name().ok_or_else(|| {
        WriteError::Temp(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    // A new file gets the usual 0666 & ~umask, as mosquitto_passwd's fopen
    // gives it; a replacement starts private and gets the old mode below.
    let mode = if existing.is_some() { 0o600 } else { 0o666 };
    let (temp_path, mut file) =
        create_temp(&dir, base.as_bytes(), mode).map_err(WriteError::Temp)?;
    let result = fill_and_rename(&mut file, &temp_path, path, contents, existing.as_ref());
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
    } else if let Ok(dir) = File::open(&dir) {
        // Make the rename itself durable; not all filesystems allow it.
        let _ = dir.sync_all();
    }
    result.map_err(WriteError::Write)
}

fn fill_and_rename(
    file: &mut File,
    temp_path: &Path,
    path: &Path,
    contents: &[u8],
    existing: Option<&fs::Metadata>,
) -> io::Result<()> {
    file.write_all(contents)?;
    if let Some(old) = existing {
        file.set_permissions(old.permissions())?;
        let mine = file.metadata()?;
        if mine.uid() != old.uid() || mine.gid() != old.gid() {
            if let Err(err) = std::os::unix::fs::fchown(&*file, Some(old.uid()), Some(old.gid())) {
                // Only root may give a file away; the broker may then lose
                // read access, so say so.
                error(&format!(
                    "Warning: Unable to keep the owner of {} ({}:{}): {}.",
                    path.display(),
                    old.uid(),
                    old.gid(),
                    password::os_error_text(&err)
                ));
            }
        }
    }
    file.sync_all()?;
    fs::rename(temp_path, path)
}

/// Creates `.<name>.tmp-<random>` next to the target, refusing to reuse an
/// existing name (so a planted symlink cannot redirect the write).
fn create_temp(dir: &Path, base: &[u8], mode: u32) -> io::Result<(PathBuf, File)> {
    let rng = ring::rand::SystemRandom::new();
    let mut last = io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name");
    for _ in 0..16 {
        let mut random = [0u8; 6];
        rng.fill(&mut random)
            .map_err(|_| io::Error::other("no randomness available"))?;
        let mut name = b".".to_vec();
        name.extend_from_slice(base);
        name.extend_from_slice(b".tmp-");
        for byte in random {
            name.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        let temp_path = dir.join(OsString::from_vec(name));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// Prompts twice like `mosquitto_passwd`: the prompts go to stdout, each
/// answer is followed by a newline (echo is off, so the user's Enter shows
/// nothing). Empty or missing input is exit code 1, a mismatch 2.
fn get_password() -> Result<Vec<u8>, i32> {
    let _quiet = EchoOff::new();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    out("Password: ");
    let first = read_password_line(&mut input)?;
    out("\n");
    out("Reenter password: ");
    let second = read_password_line(&mut input)?;
    out("\n");
    if first != second {
        error("Error: Passwords do not match.");
        return Err(2);
    }
    Ok(first)
}

/// Reads one line as raw bytes (a pipe is read as-is, like fgets), without
/// its line ending.
fn read_password_line(input: &mut impl BufRead) -> Result<Vec<u8>, i32> {
    let mut line = Vec::new();
    // +2 leaves room for "\r\n" after a password of the maximum length.
    let limit = (MAX_LEN + 2) as u64;
    if input.take(limit).read_until(b'\n', &mut line).is_err() {
        line.clear();
    }
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    if line.is_empty() {
        error("Error: Empty password.");
        return Err(1);
    }
    if line.len() > MAX_LEN {
        error("Error: Password must be less than 65536 characters long.");
        return Err(1);
    }
    Ok(line)
}
