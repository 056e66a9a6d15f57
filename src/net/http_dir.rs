//! net::http_dir: the small static-file HTTP server behind the `http_dir`
//! directive of a websockets listener, so a browser can load the page that
//! then opens the MQTT WebSocket on the same port.
//!
//! Owns: answering a plain (non-upgrade) HTTP GET/HEAD request with a file
//! under `http_dir`, a redirect for a directory without its trailing slash,
//! or the right refusal; mapping request targets to files without ever
//! leaving the directory (no `..`, symlinks resolved and checked).
//!
//! Must not: parse HTTP (that is `protocol::websocket::handshake`), touch
//! sockets, or serve anything outside `http_dir`. Reading those files is the
//! only I/O here, which is why this lives in `net` and not in `protocol`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::protocol::websocket::handshake::{http_error, Request};
use crate::protocol::websocket::WsError;

/// Largest file `http_dir` serves; larger ones get 500 (the whole response is
/// built in memory, and these are meant to be small web pages).
pub const MAX_HTTP_FILE: u64 = 8 * 1024 * 1024;

/// A plain HTTP request: serve it from `dir`, or 404 without one. Either way
/// the connection ends: `Closed` once answered, `BadRequest` when the
/// request target was malformed.
pub fn answer(dir: Option<&Path>, req: &Request<'_>, wire: &mut Vec<u8>) -> WsError {
    let Some(dir) = dir else {
        http_error(wire, 404, "Not Found", "");
        return WsError::Closed;
    };
    let head_only = match req.method {
        b"GET" => false,
        b"HEAD" => true,
        _ => {
            http_error(wire, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
            return WsError::Closed;
        }
    };
    match resolve_file(dir, req.target) {
        Ok(Found::File(path)) => serve_file(&path, head_only, wire),
        Ok(Found::Redirect(location)) => {
            wire.extend_from_slice(b"HTTP/1.1 302 Found\r\nLocation: ");
            wire.extend_from_slice(location.as_bytes());
            wire.extend_from_slice(
                b"\r\nContent-Length: 0\r\nConnection: close\r\nServer: midge\r\n\r\n",
            );
        }
        Err(HttpRefusal::BadPath) => {
            http_error(wire, 400, "Bad Request", "");
            return WsError::BadRequest("malformed HTTP request target".into());
        }
        Err(HttpRefusal::Forbidden) => http_error(wire, 403, "Forbidden", ""),
        Err(HttpRefusal::NotFound) => http_error(wire, 404, "Not Found", ""),
    }
    WsError::Closed
}

enum Found {
    File(PathBuf),
    /// A directory asked for without its trailing slash: where to go.
    Redirect(String),
}

#[derive(Debug, PartialEq, Eq)]
enum HttpRefusal {
    BadPath,
    Forbidden,
    NotFound,
}

/// Map a request target to a file under `dir`, refusing anything that
/// leaves it: `..` segments are refused outright, and the canonical path
/// (symlinks resolved) must still lie under the canonical `dir`.
fn resolve_file(dir: &Path, target: &[u8]) -> Result<Found, HttpRefusal> {
    let path_end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let raw = target.get(..path_end).unwrap_or(&[]);
    if !raw.starts_with(b"/") {
        return Err(HttpRefusal::BadPath);
    }
    let decoded = percent_decode(raw).ok_or(HttpRefusal::BadPath)?;
    if decoded.contains(&0) {
        return Err(HttpRefusal::BadPath);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| HttpRefusal::BadPath)?;
    let mut path = dir.to_path_buf();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(HttpRefusal::Forbidden),
            s => path.push(s),
        }
    }
    let root = fs::canonicalize(dir).map_err(|_| HttpRefusal::NotFound)?;
    let within = |p: &Path| -> Result<PathBuf, HttpRefusal> {
        let canon = fs::canonicalize(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => HttpRefusal::Forbidden,
            _ => HttpRefusal::NotFound,
        })?;
        if canon.starts_with(&root) {
            Ok(canon)
        } else {
            Err(HttpRefusal::Forbidden)
        }
    };
    let canon = within(&path)?;
    if canon.is_dir() {
        if !decoded.ends_with('/') {
            // Relative links inside an index page need the trailing slash.
            // `raw` has no control bytes or spaces (checked in parse).
            let loc = String::from_utf8_lossy(raw);
            return Ok(Found::Redirect(format!("{loc}/")));
        }
        let index = within(&canon.join("index.html"))?;
        return if index.is_file() {
            Ok(Found::File(index))
        } else {
            Err(HttpRefusal::NotFound)
        };
    }
    // "/file/" names a directory that is not there.
    if canon.is_file() && !decoded.ends_with('/') {
        Ok(Found::File(canon))
    } else {
        Err(HttpRefusal::NotFound)
    }
}

/// Decode `%XX` escapes; None on a malformed escape.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// Answer with the file's contents (or only its headers for HEAD).
fn serve_file(path: &Path, head_only: bool, wire: &mut Vec<u8>) {
    let mut body = Vec::new();
    let read = fs::File::open(path).and_then(|f| {
        if head_only {
            f.metadata().map(|m| m.len())
        } else {
            f.take(MAX_HTTP_FILE + 1)
                .read_to_end(&mut body)
                .map(|n| n as u64)
        }
    });
    let len = match read {
        Ok(len) if len <= MAX_HTTP_FILE => len,
        Ok(_) => {
            log::warn!(
                "http_dir: {} is larger than {} bytes, not served",
                path.display(),
                MAX_HTTP_FILE
            );
            return http_error(wire, 500, "Internal Server Error", "");
        }
        Err(e) => {
            log::debug!("http_dir: cannot read {}: {e}", path.display());
            return http_error(wire, 403, "Forbidden", "");
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: midge\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        content_type(path)
    );
    wire.reserve(head.len() + body.len());
    wire.extend_from_slice(head.as_bytes());
    wire.extend_from_slice(&body);
}

/// Content type by file extension; the usual files of a browser MQTT page.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}
