//! Integration tests of the `midge_passwd` binary: its flags, messages, exit
//! codes and file handling against `mosquitto_passwd` 2.0, and interop both
//! ways (files it writes verify with `PasswordFile` and are accepted by a real
//! Mosquitto broker; files `mosquitto_passwd` writes verify with
//! `PasswordFile`). Tests that need Mosquitto fail when it is not
//! installed (CI installs it).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use midge::auth::password::{HashKind, PasswordFile};

const BIN: &str = env!("CARGO_BIN_EXE_midge_passwd");
const TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("midge-passwd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        // The broker may drop privileges to user "mosquitto" and must still
        // be able to reach the password file.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Names in the directory (to check no temp file is left behind).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a child by its PID when dropped, so a failing test leaves nothing running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` with a deadline; kills it (by PID) if it overruns.
fn wait_bounded(child: Child) -> Output {
    let mut guard = KillOnDrop(child);
    let start = Instant::now();
    loop {
        match guard.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            _ => panic!("process did not finish within {TIMEOUT:?}"),
        }
    }
    let mut out = Output {
        status: guard.0.wait().expect("wait"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut s) = guard.0.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut out.stdout);
    }
    if let Some(mut s) = guard.0.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut out.stderr);
    }
    out
}

/// Runs a program with `args`, feeding `stdin` (closed when `None`).
/// Output is small, so reading it after exit cannot deadlock on a full pipe.
fn run_prog(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            let _ = input.write_all(bytes);
        }
    }
    wait_bounded(child)
}

fn run(args: &[&str]) -> Output {
    run_prog(BIN, args, None)
}

fn run_stdin(args: &[&str], stdin: &[u8]) -> Output {
    run_prog(BIN, args, Some(stdin))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read password file")
}

fn load(path: &Path) -> PasswordFile {
    let (file, logs) = PasswordFile::load(path).expect("load password file");
    assert!(logs.is_empty(), "unexpected parse logs: {logs:?}");
    file
}

/// Whether `name` is an executable in PATH (or the usual sbin directories).
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn need(names: &[&str], test: &str) -> Option<Vec<PathBuf>> {
    let found: Option<Vec<PathBuf>> = names.iter().map(|n| installed(n)).collect();
    if found.is_none() {
        panic!("{test}: needs {} installed'+CI+'", names.join(", "));
    }
    found
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn user_of(line: &str) -> &str {
    line.split(':').next().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Flags and file handling
// ---------------------------------------------------------------------------

#[test]
fn create_batch_writes_default_pbkdf2_entry() {
    let dir = TempDir::new("create");
    let pw = dir.path("pw");
    let out = run(&["-c", "-b", s(&pw), "alice", "s3cret"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let text = read(&pw);
    assert!(text.starts_with("alice:$7$101$"), "{text}");
    assert!(text.ends_with('\n'));
    assert_eq!(lines(&text).len(), 1);
    // 12-byte salt (16 chars) and 64-byte hash (88 chars), like mosquitto_passwd 2.0.
    let parts: Vec<&str> = text.trim_end().split('$').collect();
    assert_eq!(parts.len(), 5);
    assert_eq!(parts[3].len(), 16);
    assert_eq!(parts[4].len(), 88);

    let file = load(&pw);
    assert!(file.verify("alice", b"s3cret"));
    assert!(!file.verify("alice", b"s3cret!"));
    assert!(!file.verify("bob", b"s3cret"));

    // -c overwrites an existing file.
    let out = run(&["-c", "-b", s(&pw), "bob", "other"]);
    assert_eq!(code(&out), 0);
    let file = load(&pw);
    assert_eq!(file.len(), 1);
    assert!(file.verify("bob", b"other"));
    assert!(!file.contains("alice"));
    assert_eq!(dir.names(), vec!["pw".to_owned()], "temp file left behind");
}

#[test]
fn hash_type_and_iterations_flags() {
    let dir = TempDir::new("flags");
    let pw = dir.path("pw");
    assert_eq!(
        code(&run(&["-H", "sha512", "-c", "-b", s(&pw), "bob", "b"])),
        0
    );
    assert_eq!(code(&run(&["-I", "1000", "-b", s(&pw), "carol", "c"])), 0);
    assert_eq!(
        code(&run(&["-H", "sha512-pbkdf2", "-b", s(&pw), "dave", "d"])),
        0
    );
    // -I is ignored by $6$ (as in Mosquitto).
    assert_eq!(
        code(&run(&[
            "-I",
            "5",
            "-H",
            "sha512",
            "-b",
            s(&pw),
            "erin",
            "e"
        ])),
        0
    );
    let text = read(&pw);
    let l = lines(&text);
    assert!(l[0].starts_with("bob:$6$"), "{}", l[0]);
    assert!(l[1].starts_with("carol:$7$1000$"), "{}", l[1]);
    assert!(l[2].starts_with("dave:$7$101$"), "{}", l[2]);
    assert!(l[3].starts_with("erin:$6$"), "{}", l[3]);
    let file = load(&pw);
    assert_eq!(file.kind_of("bob"), Some(HashKind::Sha512));
    assert_eq!(
        file.kind_of("carol"),
        Some(HashKind::Pbkdf2Sha512 { iterations: 1000 })
    );
    for (user, pass) in [("bob", "b"), ("carol", "c"), ("dave", "d"), ("erin", "e")] {
        assert!(file.verify(user, pass.as_bytes()), "{user}");
    }
}

#[test]
fn update_replaces_line_in_place_and_keeps_the_rest() {
    let dir = TempDir::new("update");
    let pw = dir.path("pw");
    assert_eq!(code(&run(&["-c", "-b", s(&pw), "alice", "a"])), 0);
    assert_eq!(code(&run(&["-b", s(&pw), "bob", "b"])), 0);
    assert_eq!(code(&run(&["-b", s(&pw), "carol", "c"])), 0);
    // A comment and a blank line in the middle must survive the rewrite.
    let before = read(&pw);
    let l = lines(&before);
    let with_comments = format!("# users\n{}\n\n{}\n{}\n", l[0], l[1], l[2]);
    std::fs::write(&pw, &with_comments).expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let out = run(&["-b", s(&pw), "bob", "new-bob"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = read(&pw);
    let old: Vec<&str> = with_comments.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    assert_eq!(new.len(), old.len());
    assert_eq!(new[0], "# users");
    assert_eq!(new[1], old[1], "alice's line changed");
    assert_eq!(new[2], "");
    assert!(new[3].starts_with("bob:$7$101$") && new[3] != old[3]);
    assert_eq!(new[4], old[4], "carol's line changed");
    let file = load(&pw);
    assert!(file.verify("bob", b"new-bob"));
    assert!(!file.verify("bob", b"b"));
    assert!(file.verify("alice", b"a") && file.verify("carol", b"c"));
    // Mode kept across the temp-file-and-rename, nothing left behind.
    let mode = std::fs::metadata(&pw).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(dir.names(), vec!["pw".to_owned()]);
}

#[test]
fn new_user_appended_even_after_a_last_line_without_newline() {
    let dir = TempDir::new("append");
    let pw = dir.path("pw");
    assert_eq!(code(&run(&["-c", "-b", s(&pw), "alice", "a"])), 0);
    let text = read(&pw);
    std::fs::write(&pw, text.trim_end()).expect("strip newline");
    assert_eq!(code(&run(&["-b", s(&pw), "bob", "b"])), 0);
    let text = read(&pw);
    let l = lines(&text);
    assert_eq!(l.len(), 2, "{text}");
    assert_eq!(user_of(l[0]), "alice");
    assert_eq!(user_of(l[1]), "bob");
    let file = load(&pw);
    assert!(file.verify("alice", b"a") && file.verify("bob", b"b"));
}

#[test]
fn delete_user() {
    let dir = TempDir::new("delete");
    let pw = dir.path("pw");
    assert_eq!(code(&run(&["-c", "-b", s(&pw), "alice", "a"])), 0);
    assert_eq!(code(&run(&["-b", s(&pw), "bob", "b"])), 0);
    assert_eq!(code(&run(&["-b", s(&pw), "carol", "c"])), 0);
    let out = run(&["-D", s(&pw), "bob"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let file = load(&pw);
    assert_eq!(file.len(), 2);
    assert!(!file.contains("bob"));
    assert!(file.verify("alice", b"a") && file.verify("carol", b"c"));

    let before = read(&pw);
    let out = run(&["-D", s(&pw), "nobody"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "Warning: User nobody not found in password file.\n"
    );
    assert_eq!(read(&pw), before, "file changed by a failed delete");
    assert_eq!(dir.names(), vec!["pw".to_owned()]);
}

#[test]
fn convert_plain_text_file() {
    let dir = TempDir::new("convert");
    let pw = dir.path("pw");
    // An entry that is already hashed is left alone (Mosquitto would hash the hash).
    assert_eq!(
        code(&run(&["-c", "-b", s(&dir.path("h")), "hashed", "h"])),
        0
    );
    let hashed_line = read(&dir.path("h"));
    std::fs::remove_file(dir.path("h")).expect("rm");
    let plain = format!("# plain\nalice:alpha\n bob : beta gamma \r\n{hashed_line}carol:c:ignored");
    std::fs::write(&pw, &plain).expect("write");
    let out = run(&["-U", s(&pw)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("hashed"), "{}", stderr(&out));
    let text = read(&pw);
    assert!(!text.contains("alpha") && !text.contains("beta"), "{text}");
    assert!(text.starts_with("# plain\n"));
    assert!(text.contains(hashed_line.trim_end()));
    let file = load(&pw);
    assert_eq!(file.len(), 4);
    assert!(file.verify("alice", b"alpha"));
    assert!(file.verify("bob", b"beta gamma"));
    assert!(file.verify("carol", b"c"));
    assert!(file.verify("hashed", b"h"));
    assert_eq!(
        file.kind_of("alice"),
        Some(HashKind::Pbkdf2Sha512 { iterations: 101 })
    );

    // -H and -I apply to the conversion.
    std::fs::write(&pw, "x:1\n").expect("write");
    assert_eq!(code(&run(&["-H", "sha512", "-U", s(&pw)])), 0);
    assert_eq!(load(&pw).kind_of("x"), Some(HashKind::Sha512));
    std::fs::write(&pw, "x:1\n").expect("write");
    assert_eq!(code(&run(&["-I", "7", "-U", s(&pw)])), 0);
    assert_eq!(
        load(&pw).kind_of("x"),
        Some(HashKind::Pbkdf2Sha512 { iterations: 7 })
    );
    assert!(load(&pw).verify("x", b"1"));
}

#[test]
fn corrupt_line_stops_without_touching_the_file() {
    let dir = TempDir::new("corrupt");
    let pw = dir.path("pw");
    let original = "a:b\nnot a valid line\nc:d\n";
    for args in [
        vec!["-b", s(&pw), "x", "y"],
        vec!["-U", s(&pw)],
        vec!["-D", s(&pw), "a"],
    ] {
        std::fs::write(&pw, original).expect("write");
        let out = run(&args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(stderr(&out), "Error: Corrupt password file at line 2.\n");
        assert_eq!(read(&pw), original, "{args:?}");
    }
    for bad in ["a:\n", "  :x\n"] {
        std::fs::write(&pw, bad).expect("write");
        let out = run(&["-b", s(&pw), "x", "y"]);
        assert_eq!(code(&out), 1, "{bad:?}");
        assert_eq!(stderr(&out), "Error: Corrupt password file at line 1.\n");
    }
    assert_eq!(dir.names(), vec!["pw".to_owned()]);
}

#[test]
fn missing_file_without_create() {
    let dir = TempDir::new("missing");
    let pw = dir.path("nofile");
    for args in [
        vec!["-b", s(&pw), "u", "p"],
        vec!["-D", s(&pw), "u"],
        vec!["-U", s(&pw)],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 1);
        assert_eq!(
            stderr(&out),
            format!(
                "Error: Unable to open password file {}. No such file or directory.\n",
                pw.display()
            )
        );
        assert!(!pw.exists());
    }
    // Interactive update: the error comes before any prompt.
    let out = run_stdin(&[s(&pw), "u"], b"p\np\n");
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());

    let out = run(&["-c", "-b", "/nonexistent-dir/pw", "u", "p"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "Error: Unable to open file /nonexistent-dir/pw for writing. No such file or directory.\n"
    );
}

#[test]
fn bad_usernames_refused() {
    let dir = TempDir::new("names");
    let pw = dir.path("pw");
    for args in [
        vec!["-c", "-b", s(&pw), "a:b", "p"],
        vec!["-b", s(&pw), "a:b", "p"],
        vec!["-c", s(&pw), "a:b"],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(
            stderr(&out),
            "Error: Username must not contain the ':' character.\n"
        );
        assert!(out.stdout.is_empty(), "prompted before refusing");
    }
    let out = run(&["-c", "-b", s(&pw), "tab\there", "p"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "Error: Username must not contain control characters.\n"
    );
    let long = "u".repeat(65536);
    let out = run(&["-c", "-b", s(&pw), &long, "p"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "Error: Username must be less than 65536 characters long.\n"
    );
    let out = run(&["-c", "-b", s(&pw), "", "p"]);
    assert_eq!(code(&out), 1);
    assert!(!pw.exists());
    // Non-ASCII UTF-8 is fine (Mosquitto only refuses control characters).
    assert_eq!(code(&run(&["-c", "-b", s(&pw), "héllo", "p"])), 0);
    assert!(load(&pw).verify("héllo", b"p"));
}

#[test]
fn long_password_refused() {
    let dir = TempDir::new("longpw");
    let pw = dir.path("pw");
    let long = "p".repeat(65536);
    let out = run(&["-c", "-b", s(&pw), "u", &long]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "Error: Password must be less than 65536 characters long.\n"
    );
    assert!(!pw.exists());
}

#[test]
fn interactive_reads_two_lines_from_a_pipe() {
    let dir = TempDir::new("interactive");
    let pw = dir.path("pw");
    let out = run_stdin(&["-c", s(&pw), "alice"], b"pa ss\npa ss\n");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "Password: \nReenter password: \n");
    assert!(out.stderr.is_empty());
    assert!(load(&pw).verify("alice", b"pa ss"));

    // Update an existing file; CRLF endings are stripped, no final newline is fine.
    let out = run_stdin(&[s(&pw), "bob"], b"bee\r\nbee");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let file = load(&pw);
    assert!(file.verify("bob", b"bee"));
    assert!(file.verify("alice", b"pa ss"));
}

#[test]
fn interactive_mismatch_and_empty() {
    let dir = TempDir::new("mismatch");
    let pw = dir.path("pw");
    let out = run_stdin(&["-c", s(&pw), "alice"], b"one\ntwo\n");
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "Password: \nReenter password: \n");
    assert_eq!(stderr(&out), "Error: Passwords do not match.\n");
    assert!(!pw.exists(), "file created despite mismatch");

    assert_eq!(code(&run(&["-c", "-b", s(&pw), "alice", "a"])), 0);
    let before = read(&pw);
    let out = run_stdin(&[s(&pw), "alice"], b"one\ntwo\n");
    assert_eq!(code(&out), 2);
    assert_eq!(read(&pw), before, "file changed despite mismatch");

    for (input, prompts) in [
        (&b""[..], "Password: "),
        (&b"\n"[..], "Password: "),
        (&b"one\n"[..], "Password: \nReenter password: "),
        (&b"one\n\n"[..], "Password: \nReenter password: "),
    ] {
        let out = run_stdin(&[s(&pw), "alice"], input);
        assert_eq!(code(&out), 1, "{input:?}");
        assert_eq!(stdout(&out), prompts, "{input:?}");
        assert_eq!(stderr(&out), "Error: Empty password.\n", "{input:?}");
        assert_eq!(read(&pw), before);
    }
    assert_eq!(dir.names(), vec!["pw".to_owned()]);
}

#[test]
fn usage_and_argument_errors() {
    let out = run(&[]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("Usage: midge_passwd"),
        "{}",
        stdout(&out)
    );
    for args in [
        vec!["f"],
        vec!["f", "u", "p"],
        vec!["-b", "f", "u"],
        vec!["-x", "f", "u"],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let cases: [(&[&str], &str); 12] = [
        (
            &["-c", "-D", "f", "u"],
            "Error: -c and -D cannot be used together.\n",
        ),
        (
            &["-c", "-U", "f"],
            "Error: -c and -U cannot be used together.\n",
        ),
        (
            &["-D", "-U", "f"],
            "Error: -D and -U cannot be used together.\n",
        ),
        (
            &["-b", "-D", "f", "u"],
            "Error: -b and -D cannot be used together.\n",
        ),
        (
            &["-c", "f"],
            "Error: -c argument given but password file or username missing.\n",
        ),
        (
            &["-c", "-b", "f", "u"],
            "Error: -c argument given but password file, username, or password missing.\n",
        ),
        (
            &["-D", "f"],
            "Error: -D argument given but password file or username missing.\n",
        ),
        (
            &["-U"],
            "Error: -U argument given but password file missing.\n",
        ),
        (
            &["-H"],
            "Error: -H argument given but not enough other arguments.\n",
        ),
        (
            &["-H", "md5", "-b", "f", "u", "p"],
            "Error: Unknown hash type 'md5'\n",
        ),
        (
            &["-I"],
            "Error: -I argument given but not enough other arguments.\n",
        ),
        (
            &["-I", "abc", "-b", "f", "u", "p"],
            "Error: Number of iterations must be > 0.\n",
        ),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(stderr(&out), message, "{args:?}");
    }
    assert_eq!(code(&run(&["-I", "0", "-b", "f", "u", "p"])), 1);
    assert_eq!(code(&run(&["-I", "-5", "-b", "f", "u", "p"])), 1);
}

#[test]
fn symlinked_file_is_updated_through_the_link() {
    let dir = TempDir::new("symlink");
    let real = dir.path("real");
    let link = dir.path("link");
    assert_eq!(code(&run(&["-c", "-b", s(&real), "alice", "a"])), 0);
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    assert_eq!(code(&run(&["-b", s(&link), "bob", "b"])), 0);
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    let file = load(&real);
    assert!(file.verify("alice", b"a") && file.verify("bob", b"b"));
}

// ---------------------------------------------------------------------------
// Interop with Mosquitto
// ---------------------------------------------------------------------------

#[test]
fn mosquitto_passwd_files_verify_with_password_file() {
    let Some(bins) = need(&["mosquitto_passwd"], "mosquitto_passwd_files_verify") else {
        return;
    };
    let mp = bins[0].to_str().expect("path");
    let dir = TempDir::new("mpw");
    let pw = dir.path("pw");
    assert_eq!(
        code(&run_prog(
            mp,
            &["-c", "-b", s(&pw), "alice", "alice-pw"],
            None
        )),
        0
    );
    assert_eq!(
        code(&run_prog(
            mp,
            &["-H", "sha512", "-b", s(&pw), "bob", "bob pw"],
            None
        )),
        0
    );
    assert_eq!(
        code(&run_prog(
            mp,
            &["-I", "1000", "-b", s(&pw), "carol", "c:pw"],
            None
        )),
        0
    );
    let file = load(&pw);
    assert!(file.verify("alice", b"alice-pw"));
    assert!(file.verify("bob", b"bob pw"));
    assert!(file.verify("carol", b"c:pw"));
    assert!(!file.verify("alice", b"bob pw"));
    assert_eq!(
        file.kind_of("carol"),
        Some(HashKind::Pbkdf2Sha512 { iterations: 1000 })
    );

    // midge_passwd edits a file mosquitto_passwd wrote, keeping its lines.
    let before = read(&pw);
    assert_eq!(code(&run(&["-b", s(&pw), "bob", "new"])), 0);
    let after = read(&pw);
    assert_eq!(lines(&after)[0], lines(&before)[0]);
    assert_eq!(lines(&after)[2], lines(&before)[2]);
    assert!(load(&pw).verify("bob", b"new"));

    // A plain-text file converted by mosquitto_passwd -U verifies too.
    let plain = dir.path("plain");
    std::fs::write(&plain, "dave:dave-pw\nerin:erin pw\n").expect("write");
    assert_eq!(code(&run_prog(mp, &["-U", s(&plain)], None)), 0);
    let file = load(&plain);
    assert!(file.verify("dave", b"dave-pw"));
    assert!(file.verify("erin", b"erin pw"));

    // And midge_passwd's lines have exactly mosquitto_passwd's shape.
    let ours = dir.path("ours");
    assert_eq!(code(&run(&["-c", "-b", s(&ours), "alice", "alice-pw"])), 0);
    let theirs = lines(&before)[0].to_owned();
    let mine = read(&ours);
    let shape = |l: &str| l.split('$').map(str::len).collect::<Vec<_>>();
    assert_eq!(shape(mine.trim_end()), shape(&theirs));
}

/// A Mosquitto broker on a free loopback port with `password_file`.
struct Broker {
    port: u16,
    _child: KillOnDrop,
    log: PathBuf,
}

impl Broker {
    fn start(mosquitto: &Path, dir: &TempDir, password_file: &Path) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // The broker may run as user "mosquitto": let it read the file.
        std::fs::set_permissions(password_file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let conf = dir.path("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nlog_dest stderr\n",
                password_file.display()
            ),
        )
        .expect("write conf");
        let log = dir.path("broker.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn mosquitto");
        let mut child = KillOnDrop(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "mosquitto exited early ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            port,
            _child: child,
            log,
        }
    }

    /// Whether `mosquitto_pub` can connect and publish as `user`.
    fn accepts(&self, pub_bin: &Path, user: &str, password: &str) -> bool {
        let port = self.port.to_string();
        let out = run_prog(
            pub_bin.to_str().expect("path"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-u",
                user,
                "-P",
                password,
                "-t",
                "midge/test",
                "-m",
                "x",
            ],
            None,
        );
        status_ok(out.status)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn status_ok(status: ExitStatus) -> bool {
    status.success()
}

#[test]
fn mosquitto_broker_accepts_midge_passwd_files() {
    let Some(bins) = need(
        &["mosquitto", "mosquitto_pub"],
        "mosquitto_broker_accepts_midge_passwd_files",
    ) else {
        return;
    };
    let (mosquitto, mpub) = (&bins[0], &bins[1]);
    let dir = TempDir::new("broker");
    let pw = dir.path("pw");
    assert_eq!(code(&run(&["-c", "-b", s(&pw), "alice", "alice-pw"])), 0);
    assert_eq!(
        code(&run(&["-H", "sha512", "-b", s(&pw), "bob", "bob pw"])),
        0
    );
    assert_eq!(
        code(&run(&["-I", "1000", "-b", s(&pw), "carol", "c:pw"])),
        0
    );
    assert_eq!(
        code(&run_stdin(&[s(&pw), "dave"], b"dave-pw\ndave-pw\n")),
        0
    );

    let broker = Broker::start(mosquitto, &dir, &pw);
    assert!(
        broker.accepts(mpub, "alice", "alice-pw"),
        "{}",
        broker.log()
    );
    assert!(broker.accepts(mpub, "bob", "bob pw"), "{}", broker.log());
    assert!(broker.accepts(mpub, "carol", "c:pw"), "{}", broker.log());
    assert!(broker.accepts(mpub, "dave", "dave-pw"), "{}", broker.log());
    assert!(!broker.accepts(mpub, "alice", "wrong"));
    assert!(!broker.accepts(mpub, "bob", "alice-pw"));
    assert!(!broker.accepts(mpub, "mallory", "alice-pw"));
    let log = broker.log();
    assert!(!log.contains("removing entry"), "{log}");
}

#[test]
fn mosquitto_broker_accepts_midge_passwd_conversion() {
    let Some(bins) = need(
        &["mosquitto", "mosquitto_pub"],
        "mosquitto_broker_accepts_midge_passwd_conversion",
    ) else {
        return;
    };
    let (mosquitto, mpub) = (&bins[0], &bins[1]);
    let dir = TempDir::new("broker-u");
    let pw = dir.path("pw");
    std::fs::write(&pw, "# converted\nalice:alice-pw\nbob: bob pw \n").expect("write");
    assert_eq!(code(&run(&["-U", s(&pw)])), 0);
    assert_eq!(
        code(&run(&["-H", "sha512", "-b", s(&pw), "carol", "carol-pw"])),
        0
    );

    let broker = Broker::start(mosquitto, &dir, &pw);
    assert!(
        broker.accepts(mpub, "alice", "alice-pw"),
        "{}",
        broker.log()
    );
    assert!(broker.accepts(mpub, "bob", "bob pw"), "{}", broker.log());
    assert!(
        broker.accepts(mpub, "carol", "carol-pw"),
        "{}",
        broker.log()
    );
    assert!(!broker.accepts(mpub, "alice", "alice-pW"));
    assert!(!broker.accepts(mpub, "bob", " bob pw "));
    let log = broker.log();
    assert!(!log.contains("removing entry"), "{log}");
}
