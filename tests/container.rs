//! The container image (Containerfile, scripts/build-image.sh), black box:
//! built with buildah for amd64, arm64 and arm/v7 into one manifest list,
//! then checked against what eclipse-mosquitto users rely on: the image's
//! configuration (user, command, volumes, ports), its files (layout, owners,
//! default config, static binaries of the right architecture that run, the
//! ARM ones under qemu-user), and, with podman, a real start: MQTT on 1883
//! and WebSockets on 9001 through published free host ports, a retained
//! message kept in the /mosquitto/data volume across a restart, SIGTERM
//! ending in exit status 0, and the default configuration answering inside
//! the container only.
//!
//! Needs buildah, podman, runc and qemu-user-static (CI installs them in
//! `.ci/run`); a missing tool fails the tests, saying what to install. The
//! image is built once per test run under its own tag; images, containers
//! and volumes the tests made are removed when the last test using them ends.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A command that must be installed: the tests fail without it.
fn require(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is needed for the container tests (Debian: apt-get install {package})"
    );
}

/// Runs a command to completion within `limit`; panics unless it succeeds.
fn ok(program: &str, args: &[&str], limit: Duration) -> String {
    let f = run(Path::new(program), args, limit);
    match f.status {
        Some(s) if s.success() => f.stdout,
        Some(s) => panic!(
            "{program} {} exited with {s}:\n{}",
            args.join(" "),
            f.output()
        ),
        None => panic!("{program} {} still running after {limit:?}", args.join(" ")),
    }
}

fn quiet(program: &str, args: &[&str]) {
    let _ = run(Path::new(program), args, Duration::from_secs(60));
}

fn all_image_ids() -> HashSet<String> {
    ok(
        "buildah",
        &["images", "--all", "--no-trunc", "--format", "{{.ID}}"],
        Duration::from_secs(60),
    )
    .lines()
    .map(|l| l.trim().trim_start_matches("sha256:").to_string())
    .filter(|l| !l.is_empty())
    .collect()
}

// ---------------------------------------------------------------------------------------------
// The image, built once and shared; removed when the last test holding it ends
// ---------------------------------------------------------------------------------------------

struct Built {
    tag: String,
    /// The OCI archive build-image.sh wrote (--archive), in its own temp dir.
    archive: PathBuf,
    /// Images that did not exist before the build: removed at the end.
    created: Vec<String>,
    users: usize,
}

static IMAGE: Mutex<Option<Built>> = Mutex::new(None);

/// The tag of the manifest list, valid while this guard lives.
struct Image {
    tag: String,
    archive: PathBuf,
}

impl Image {
    fn get() -> Image {
        require("buildah", "buildah");
        require("podman", "podman");
        require("runc", "runc");
        let mut slot = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let tag = format!("localhost/midge-test:{}", std::process::id());
            let archive = temp_dir("container-archive").join("midge.oci.tar");
            let before = all_image_ids();
            // The release cross builds take minutes on a small machine (all of
            // it is cargo; buildah needs a second or two).
            let f = run(
                &repo().join("scripts/build-image.sh"),
                &["--tag", &tag, "--archive", &archive.to_string_lossy()],
                Duration::from_secs(40 * 60),
            );
            let created: Vec<String> = all_image_ids().difference(&before).cloned().collect();
            if !f.status.is_some_and(|s| s.success()) {
                // Leave nothing behind from a half-made build.
                quiet("buildah", &["manifest", "rm", &tag]);
                for id in &created {
                    quiet("buildah", &["rmi", "--force", id]);
                }
                if let Some(dir) = archive.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
                panic!("scripts/build-image.sh --tag {tag} failed:\n{}", f.output());
            }
            *slot = Some(Built {
                tag,
                archive,
                created,
                users: 0,
            });
        }
        let built = slot.as_mut().expect("built above");
        built.users += 1;
        Image {
            tag: built.tag.clone(),
            archive: built.archive.clone(),
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let mut slot = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
        let last = match slot.as_mut() {
            Some(b) => {
                b.users -= 1;
                b.users == 0
            }
            None => false,
        };
        if last {
            if let Some(b) = slot.take() {
                quiet("buildah", &["manifest", "rm", &b.tag]);
                for id in &b.created {
                    quiet("buildah", &["rmi", "--force", id]);
                }
                if let Some(dir) = b.archive.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

/// One platform's image in the manifest list.
struct PlatformImage {
    platform: String,
    digest: String,
}

fn platforms(tag: &str) -> Vec<PlatformImage> {
    let text = ok(
        "buildah",
        &["manifest", "inspect", tag],
        Duration::from_secs(60),
    );
    let list: serde_json::Value = serde_json::from_str(&text).expect("manifest list JSON");
    list["manifests"]
        .as_array()
        .expect("manifests[]")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(v) = p["variant"].as_str() {
                platform = format!("{platform}/{v}");
            }
            PlatformImage {
                platform,
                digest: m["digest"].as_str().expect("digest").to_string(),
            }
        })
        .collect()
}

/// The image ID whose manifest has this digest.
fn image_id(digest: &str) -> String {
    let text = ok(
        "buildah",
        &[
            "images",
            "--all",
            "--no-trunc",
            "--format",
            "{{.Digest}} {{.ID}}",
        ],
        Duration::from_secs(60),
    );
    text.lines()
        .find_map(|l| {
            let id = l.strip_prefix(digest)?.trim();
            Some(id.trim_start_matches("sha256:").to_string())
        })
        .unwrap_or_else(|| panic!("no local image for {digest}:\n{text}"))
}

fn inspect(image: &str) -> serde_json::Value {
    let text = ok(
        "podman",
        &["image", "inspect", image],
        Duration::from_secs(60),
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("image inspect JSON");
    v[0].clone()
}

/// The image's file system, unpacked: (directory, `tar -tv` listing with numeric owners).
fn export(image: &str) -> (PathBuf, String) {
    let dir = temp_dir("container-export");
    let name = format!("midge-test-export-{}", std::process::id());
    let name = format!("{name}-{}", dir.file_name().unwrap().to_string_lossy());
    // Created, never started: any architecture will do.
    ok(
        "podman",
        &["create", "--name", &name, image, "/usr/sbin/midge"],
        Duration::from_secs(60),
    );
    let tar = dir.join("rootfs.tar");
    let exported = run(
        Path::new("podman"),
        &["export", "-o", &tar.to_string_lossy(), &name],
        Duration::from_secs(120),
    );
    quiet("podman", &["rm", "--force", "--volumes", &name]);
    assert!(
        exported.status.is_some_and(|s| s.success()),
        "podman export: {}",
        exported.output()
    );
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let tar_s = tar.to_string_lossy().to_string();
    let listing = ok(
        "tar",
        &["-tvf", &tar_s, "--numeric-owner"],
        Duration::from_secs(60),
    );
    ok(
        "tar",
        &[
            "-xf",
            &tar_s,
            "-C",
            &root.to_string_lossy(),
            "--no-same-owner",
        ],
        Duration::from_secs(60),
    );
    (root, listing)
}

/// The listing line of `path` (as tar shows it: relative, directories with a slash).
fn entry<'a>(listing: &'a str, path: &str) -> &'a str {
    listing
        .lines()
        .find(|l| {
            let name = l.split_whitespace().nth(5).unwrap_or("");
            name == path || name.trim_end_matches('/') == path
        })
        .unwrap_or_else(|| panic!("{path} is not in the image:\n{listing}"))
}

/// (ELF machine, 64-bit, has an interpreter i.e. is dynamically linked).
fn elf_facts(bytes: &[u8]) -> (u16, bool, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    let is64 = bytes[4] == 2;
    assert_eq!(bytes[5], 1, "little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(0x20) as usize,
            u16_at(0x36) as usize,
            u16_at(0x38) as usize,
        )
    } else {
        (
            u32_at(0x1C) as usize,
            u16_at(0x2A) as usize,
            u16_at(0x2C) as usize,
        )
    };
    const PT_INTERP: u32 = 3;
    let dynamic = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_INTERP);
    (machine, is64, dynamic)
}

// ---------------------------------------------------------------------------------------------
// Running containers
// ---------------------------------------------------------------------------------------------

/// A container removed (with its anonymous volumes) on drop.
struct Container {
    name: String,
}

/// `podman run` options every start here needs. runc, because crun refuses
/// the hybrid cgroup setup of some hosts (this one included); explicit
/// limits, because podman's defaults for root (1048576 open files) exceed
/// the hard limits such a host gives its root.
const RUN_OPTS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

impl Container {
    fn run(image: &str, opts: &[&str], cmd: &[&str]) -> Container {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("midge-test-{}-{n}", std::process::id());
        let mut args: Vec<&str> = vec!["run", "--detach", "--name", &name];
        args.extend_from_slice(RUN_OPTS);
        args.extend_from_slice(opts);
        args.push(image);
        args.extend_from_slice(cmd);
        let c = Container { name: name.clone() };
        ok("podman", &args, Duration::from_secs(120));
        c
    }

    fn logs(&self) -> String {
        run(
            Path::new("podman"),
            &["logs", &self.name],
            Duration::from_secs(30),
        )
        .output()
    }

    /// Waits until the broker says it is running.
    fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self.logs();
            if logs.contains("running") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the broker in {} did not start within 30 s; its log:\n{logs}",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `podman stop` (SIGTERM, then SIGKILL after 10 s); returns the exit code.
    fn stop(&self) -> i64 {
        ok(
            "podman",
            &["stop", "--time", "10", &self.name],
            Duration::from_secs(60),
        );
        let state = ok(
            "podman",
            &["inspect", "--format", "{{.State.ExitCode}}", &self.name],
            Duration::from_secs(30),
        );
        state.trim().parse().expect("exit code")
    }

    fn start(&self) {
        ok("podman", &["start", &self.name], Duration::from_secs(120));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        quiet("podman", &["rm", "--force", "--volumes", &self.name]);
    }
}

/// Connects to a published port; podman's forwarding may lag the broker by a moment.
fn connected(port: u16, id: &str) -> RawClient {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = std::panic::catch_unwind(|| RawClient::connected(port, id));
        match attempt {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => std::panic::resume_unwind(e),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A minimal MQTT-over-WebSocket client: the upgrade, masked binary frames out,
/// MQTT packets reassembled from the frames that come back.
struct WsClient {
    stream: TcpStream,
    frames: Vec<u8>,
    mqtt: Vec<u8>,
}

impl WsClient {
    fn open(port: u16) -> WsClient {
        let mut stream =
            TcpStream::connect(loopback(port)).expect("connect to the websockets port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(
                b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            )
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).expect("upgrade answer");
            assert!(
                n == 1,
                "closed during the upgrade: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        WsClient {
            stream,
            frames: Vec::new(),
            mqtt: Vec::new(),
        }
    }

    fn send(&mut self, mqtt: &[u8]) {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x82];
        match mqtt.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(mqtt.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next MQTT packet (header byte, body).
    fn packet(&mut self) -> (u8, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        loop {
            // A whole MQTT packet in the reassembled stream?
            if self.mqtt.len() >= 2 {
                let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
                let mut complete = false;
                while i < self.mqtt.len() && i <= 4 {
                    let b = self.mqtt[i];
                    len += usize::from(b & 0x7f) * mult;
                    mult *= 128;
                    i += 1;
                    if b & 0x80 == 0 {
                        complete = true;
                        break;
                    }
                }
                if complete && self.mqtt.len() >= i + len {
                    let header = self.mqtt[0];
                    let body = self.mqtt[i..i + len].to_vec();
                    self.mqtt.drain(..i + len);
                    return (header, body);
                }
            }
            // A whole WebSocket frame (server frames are unmasked)?
            if self.frames.len() >= 2 {
                let (len, start) = match self.frames[1] & 0x7f {
                    126 if self.frames.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.frames[2], self.frames[3]])),
                        4,
                    ),
                    127 => panic!("unexpectedly large frame"),
                    126 => (usize::MAX, 0),
                    n => (usize::from(n), 2),
                };
                if len != usize::MAX && self.frames.len() >= start + len {
                    let opcode = self.frames[0] & 0x0f;
                    let payload: Vec<u8> = self.frames[start..start + len].to_vec();
                    self.frames.drain(..start + len);
                    assert!(
                        opcode == 0 || opcode == 2,
                        "unexpected frame opcode {opcode}"
                    );
                    self.mqtt.extend_from_slice(&payload);
                    continue;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no MQTT packet over WebSocket within {WAIT:?}"
            );
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the WebSocket"),
                Ok(n) => self.frames.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn manifest_list_holds_static_binaries_for_amd64_arm64_and_armv7() {
    let image = Image::get();
    let list = platforms(&image.tag);
    let mut names: Vec<&str> = list.iter().map(|p| p.platform.as_str()).collect();
    names.sort();
    assert_eq!(names, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);

    for p in &list {
        let id = image_id(&p.digest);
        let config = inspect(&id);
        let (arch, machine, is64) = match p.platform.as_str() {
            "linux/amd64" => ("amd64", 62, true),
            "linux/arm64" => ("arm64", 183, true),
            _ => ("arm", 40, false),
        };
        assert_eq!(config["Architecture"], arch, "{}", p.platform);
        assert_eq!(config["Os"], "linux", "{}", p.platform);

        let (root, _) = export(&id);
        for bin in [
            "usr/sbin/midge",
            "usr/bin/midge_pub",
            "usr/bin/midge_sub",
            "usr/bin/midge_rr",
            "usr/bin/midge_passwd",
        ] {
            let bytes = std::fs::read(root.join(bin)).unwrap();
            let (m, b64, dynamic) = elf_facts(&bytes);
            assert_eq!(
                (m, b64),
                (machine, is64),
                "{bin} in the {} image",
                p.platform
            );
            assert!(
                !dynamic,
                "{bin} in the {} image is dynamically linked",
                p.platform
            );
        }

        // And they run: the broker accepts the image's own default config, and
        // a client answers --version (ARM ones under qemu-user, with the CPU of
        // the oldest board each image is for).
        let emulator: &[&str] = match p.platform.as_str() {
            "linux/amd64" => &[],
            "linux/arm64" => &["qemu-aarch64-static", "-cpu", "cortex-a53"],
            _ => &["qemu-arm-static", "-cpu", "cortex-a7"],
        };
        if let Some(qemu) = emulator.first() {
            require(qemu, "qemu-user-static");
        }
        let conf = root.join("mosquitto/config/mosquitto.conf");
        let midge = root.join("usr/sbin/midge");
        let midge_pub = root.join("usr/bin/midge_pub");
        for (exe, args, expect) in [
            (
                &midge,
                vec!["-c", conf.to_str().unwrap(), "--test-config"],
                "Configuration file is valid.",
            ),
            (&midge_pub, vec!["--version"], "midge_pub version"),
        ] {
            let mut argv: Vec<&str> = emulator.to_vec();
            argv.push(exe.to_str().unwrap());
            argv.extend(args);
            let f = run(Path::new(argv[0]), &argv[1..], Duration::from_secs(60));
            assert!(
                f.output().contains(expect),
                "{} in the {} image: {}",
                argv.join(" "),
                p.platform,
                f.output()
            );
        }
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }
}

#[test]
fn image_config_matches_eclipse_mosquitto() {
    let image = Image::get();
    let c = inspect(&image.tag);
    let cfg = &c["Config"];
    // eclipse-mosquitto's uid and gid, and never root.
    assert_eq!(cfg["User"], "1883:1883");
    assert_eq!(
        cfg["Cmd"],
        serde_json::json!(["/usr/sbin/midge", "-c", "/mosquitto/config/mosquitto.conf"])
    );
    // No entry point: `docker run <image> mosquitto -c ...` runs that command.
    assert!(
        cfg["Entrypoint"].is_null() || cfg["Entrypoint"] == serde_json::json!([]),
        "{}",
        cfg["Entrypoint"]
    );
    let mut volumes: Vec<&String> = cfg["Volumes"]
        .as_object()
        .expect("Volumes")
        .keys()
        .collect();
    volumes.sort();
    assert_eq!(volumes, ["/mosquitto/data", "/mosquitto/log"]);
    let mut ports: Vec<&String> = cfg["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .collect();
    ports.sort();
    assert_eq!(ports, ["1883/tcp", "9001/tcp"]);
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"PATH=/usr/sbin:/usr/bin"), "{env:?}");
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn layout_and_default_config_match_eclipse_mosquitto() {
    let image = Image::get();
    let (root, listing) = export(&image.tag);

    // /mosquitto and everything in it belongs to mosquitto (1883:1883), as after
    // eclipse-mosquitto's `chown -R mosquitto:mosquitto /mosquitto`.
    for dir in [
        "mosquitto",
        "mosquitto/config",
        "mosquitto/data",
        "mosquitto/log",
    ] {
        let e = entry(&listing, dir);
        assert!(e.starts_with("drwxr-xr-x 1883/1883 "), "{e}");
    }
    let e = entry(&listing, "mosquitto/config/mosquitto.conf");
    assert!(e.starts_with("-rw-r--r-- 1883/1883 "), "{e}");
    for bin in [
        "usr/sbin/midge",
        "usr/bin/midge_pub",
        "usr/bin/midge_passwd",
    ] {
        let e = entry(&listing, bin);
        assert!(e.starts_with("-rwxr-xr-x 0/0 "), "{e}");
    }
    // eclipse-mosquitto's command names, for `docker exec ... mosquitto_sub` and
    // `docker run <image> mosquitto -c /mosquitto-no-auth.conf`.
    for (link, target) in [
        ("usr/sbin/mosquitto", "midge"),
        ("usr/bin/mosquitto_pub", "midge_pub"),
        ("usr/bin/mosquitto_sub", "midge_sub"),
        ("usr/bin/mosquitto_rr", "midge_rr"),
        ("usr/bin/mosquitto_passwd", "midge_passwd"),
    ] {
        let e = entry(&listing, link);
        assert!(
            e.starts_with('l') && e.ends_with(&format!(" -> {target}")),
            "{e}"
        );
    }

    // The default config is the one in the repository, and sets nothing: the
    // broker listens on the container's loopback only, as eclipse-mosquitto's.
    let conf = std::fs::read_to_string(root.join("mosquitto/config/mosquitto.conf")).unwrap();
    let ours = std::fs::read_to_string(repo().join("conf/container/mosquitto.conf")).unwrap();
    assert_eq!(conf, ours);
    let directives: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(directives.is_empty(), "{directives:?}");
    let no_auth = std::fs::read_to_string(root.join("mosquitto-no-auth.conf")).unwrap();
    let no_auth: Vec<&str> = no_auth
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(no_auth, ["listener 1883", "allow_anonymous true"]);

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("mosquitto:x:1883:1883:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("mosquitto:x:1883:")),
        "{group}"
    );
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
}

#[test]
fn container_serves_mqtt_and_websockets_and_keeps_data_in_its_volume() {
    let image = Image::get();
    // The configuration conf/compose.yaml uses, mounted as it mounts it.
    let conf = repo().join("conf/compose.conf");
    let (mqtt_port, ws_port) = (free_port(), free_port());
    let publish_mqtt = format!("127.0.0.1:{mqtt_port}:1883");
    let publish_ws = format!("127.0.0.1:{ws_port}:9001");
    let mount = format!("{}:/mosquitto/config/mosquitto.conf:ro", conf.display());
    // The eclipse-mosquitto command line, through the `mosquitto` name.
    let c = Container::run(
        &image.tag,
        &["-p", &publish_mqtt, "-p", &publish_ws, "-v", &mount],
        &["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"],
    );
    c.wait_running();

    // WebSocket subscriber on 9001, TCP publisher on 1883, and back.
    let mut ws = WsClient::open(ws_port);
    ws.send(&Connect::new("ws-sub").encode());
    let (h, body) = ws.packet();
    assert_eq!(
        (h >> 4, body.as_slice()),
        (CONNACK, &[0u8, 0][..]),
        "CONNACK"
    );
    ws.send(&subscribe_packet(1, &[("container/#", 1)]));
    let (h, body) = ws.packet();
    assert_eq!(
        (h >> 4, body.as_slice()),
        (SUBACK, &[0u8, 1, 1][..]),
        "SUBACK"
    );

    let mut tcp = connected(mqtt_port, "tcp-pub");
    tcp.publish("container/up", b"over 1883", 1, false);
    let (h, body) = ws.packet();
    assert_eq!(h >> 4, PUBLISH, "PUBLISH over WebSocket");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    assert_eq!(&body[2..2 + topic_len], b"container/up");
    assert_eq!(&body[2 + topic_len + 2..], b"over 1883");

    tcp.subscribe(&[("ws/#", 0)]);
    ws.send(&publish_packet("ws/down", b"over 9001", 0, false, false, 0));
    let p = tcp.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("ws/down", &b"over 9001"[..])
    );

    // Retained, with persistence in the /mosquitto/data volume (written as uid 1883).
    tcp.publish("container/kept", b"across a restart", 1, true);
    drop(tcp);
    drop(ws);
    assert_eq!(c.stop(), 0, "exit status after SIGTERM; log:\n{}", c.logs());
    c.start();
    c.wait_running();
    let mut sub = connected(mqtt_port, "after-restart");
    sub.subscribe(&[("container/kept", 1)]);
    let p = sub.expect_publish(WAIT);
    assert_eq!(p.payload, b"across a restart", "log:\n{}", c.logs());
    assert!(p.retain);
    drop(sub);
    assert_eq!(c.stop(), 0, "exit status after SIGTERM; log:\n{}", c.logs());
}

#[test]
fn compose_file_names_this_image_and_eclipse_mosquittos_paths() {
    let compose = std::fs::read_to_string(repo().join("conf/compose.yaml")).unwrap();
    let image_line = format!("image: localhost/midge:{}", env!("CARGO_PKG_VERSION"));
    for needed in [
        image_line.as_str(),
        "\"1883:1883\"",
        "\"9001:9001\"",
        "./compose.conf:/mosquitto/config/mosquitto.conf:ro",
        ":/mosquitto/data",
        ":/mosquitto/log",
    ] {
        assert!(
            compose.contains(needed),
            "conf/compose.yaml lacks {needed:?}"
        );
    }
}

#[test]
fn default_config_answers_inside_the_container_only() {
    let image = Image::get();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:1883");
    let c = Container::run(&image.tag, &["-p", &publish], &[]);
    c.wait_running();
    let logs = c.logs();
    assert!(logs.contains("/mosquitto/config/mosquitto.conf"), "{logs}");

    // From outside (the published port): nothing answers.
    let outside = TcpStream::connect_timeout(&loopback(port), WAIT).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(&Connect::new("outside").encode())?;
        let mut buf = [0u8; 4];
        s.read(&mut buf)
    });
    assert!(
        !matches!(outside, Ok(n) if n > 0),
        "a client outside the container got an answer"
    );

    // Inside, on loopback, anonymous clients are welcome (Mosquitto 2 without
    // a listener), and mosquitto_pub is there under its own name.
    ok(
        "podman",
        &[
            "exec",
            &c.name,
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-t",
            "inside",
            "-m",
            "hello",
            "-q",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(c.stop(), 0, "exit status after SIGTERM; log:\n{}", c.logs());
}

#[test]
fn oci_archive_is_a_layout_with_all_three_platforms() {
    let image = Image::get();
    let dir = temp_dir("container-oci");
    ok(
        "tar",
        &[
            "-xf",
            &image.archive.to_string_lossy(),
            "-C",
            &dir.to_string_lossy(),
        ],
        Duration::from_secs(60),
    );
    let layout = std::fs::read_to_string(dir.join("oci-layout")).expect("oci-layout");
    assert!(layout.contains("\"imageLayoutVersion\""), "{layout}");
    let blob = |digest: &str| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::read(dir.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
    };
    let json = |bytes: Vec<u8>| -> serde_json::Value {
        serde_json::from_slice(&bytes).expect("JSON blob")
    };
    let index: serde_json::Value = json(std::fs::read(dir.join("index.json")).expect("index.json"));
    let top = &index["manifests"][0];
    assert_eq!(
        top["annotations"]["org.opencontainers.image.ref.name"],
        image.tag.as_str()
    );
    let list = json(blob(top["digest"].as_str().expect("digest")));
    let mut seen = Vec::new();
    for m in list["manifests"].as_array().expect("manifests[]") {
        let p = &m["platform"];
        seen.push(format!(
            "{}/{}{}",
            p["os"].as_str().unwrap_or("?"),
            p["architecture"].as_str().unwrap_or("?"),
            p["variant"]
                .as_str()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ));
        let manifest = json(blob(m["digest"].as_str().expect("digest")));
        let config = json(blob(manifest["config"]["digest"].as_str().expect("config")));
        assert_eq!(config["architecture"], p["architecture"]);
        assert_eq!(config["config"]["User"], "1883:1883");
        for layer in manifest["layers"].as_array().expect("layers[]") {
            let bytes = blob(layer["digest"].as_str().expect("layer digest"));
            assert_eq!(Some(bytes.len() as u64), layer["size"].as_u64());
        }
    }
    seen.sort();
    assert_eq!(seen, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);
    let _ = std::fs::remove_dir_all(dir);
}
