//! messages: the exact texts and numbers libmosquitto 2.0 reports, so the
//! tools print what scripts written for mosquitto_pub/sub/rr expect.
//!
//! Owns: libmosquitto's error numbers (`MOSQ_ERR_*`, which are also the
//! tools' exit codes), `mosquitto_strerror`, `mosquitto_connack_string`
//! (3.1.x CONNACK codes) and `mosquitto_reason_string` (v5 reason codes).
//!
//! Must not: decide anything; it only names things.

/// libmosquitto error numbers used as exit codes.
pub mod err {
    pub const SUCCESS: i32 = 0;
    pub const NOMEM: i32 = 1;
    pub const PROTOCOL: i32 = 2;
    pub const INVAL: i32 = 3;
    pub const NO_CONN: i32 = 4;
    pub const CONN_REFUSED: i32 = 5;
    pub const NOT_FOUND: i32 = 6;
    pub const CONN_LOST: i32 = 7;
    pub const TLS: i32 = 8;
    pub const PAYLOAD_SIZE: i32 = 9;
    pub const NOT_SUPPORTED: i32 = 10;
    pub const AUTH: i32 = 11;
    pub const ACL_DENIED: i32 = 12;
    pub const UNKNOWN: i32 = 13;
    pub const ERRNO: i32 = 14;
    pub const EAI: i32 = 15;
    pub const PROXY: i32 = 16;
    pub const MALFORMED_UTF8: i32 = 18;
    pub const KEEPALIVE: i32 = 19;
    pub const LOOKUP: i32 = 20;
    pub const MALFORMED_PACKET: i32 = 21;
    pub const DUPLICATE_PROPERTY: i32 = 22;
    pub const TLS_HANDSHAKE: i32 = 23;
    pub const QOS_NOT_SUPPORTED: i32 = 24;
    pub const OVERSIZE_PACKET: i32 = 25;
    pub const OCSP: i32 = 26;
    pub const TIMEOUT: i32 = 27;
}

/// `mosquitto_strerror`. `MOSQ_ERR_ERRNO` has no fixed text (it is
/// `strerror(errno)`); callers print the OS error themselves.
pub fn strerror(code: i32) -> &'static str {
    match code {
        err::SUCCESS => "No error.",
        err::NOMEM => "Out of memory.",
        err::PROTOCOL => "A network protocol error occurred when communicating with the broker.",
        err::INVAL => "Invalid function arguments provided.",
        err::NO_CONN => "The client is not currently connected.",
        err::CONN_REFUSED => "The connection was refused.",
        err::NOT_FOUND => "Message not found (internal error).",
        err::CONN_LOST => "The connection was lost.",
        err::TLS => "A TLS error occurred.",
        err::PAYLOAD_SIZE => "Payload too large.",
        err::NOT_SUPPORTED => "This feature is not supported.",
        err::AUTH => "Authorisation failed.",
        err::ACL_DENIED => "Access denied by ACL.",
        err::UNKNOWN => "Unknown error.",
        err::EAI => "Lookup error.",
        err::PROXY => "Proxy error.",
        err::MALFORMED_UTF8 => "Malformed UTF-8",
        err::KEEPALIVE => "Keepalive ping timeout.",
        err::LOOKUP => "DNS lookup error.",
        err::DUPLICATE_PROPERTY => "Duplicate property in property list",
        err::TLS_HANDSHAKE => "TLS handshake failed.",
        err::QOS_NOT_SUPPORTED => "Requested QoS not supported on server.",
        err::OVERSIZE_PACKET => "Packet larger than supported by the server.",
        err::OCSP => "OCSP error.",
        _ => "Unknown error.",
    }
}

/// `mosquitto_connack_string`: 3.1.x CONNACK return codes.
pub fn connack_string(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted.",
        1 => "Connection Refused: unacceptable protocol version.",
        2 => "Connection Refused: identifier rejected.",
        3 => "Connection Refused: broker unavailable.",
        4 => "Connection Refused: bad user name or password.",
        5 => "Connection Refused: not authorised.",
        _ => "Connection Refused: unknown reason.",
    }
}

/// `mosquitto_reason_string`: v5 reason codes (the protocol room's table
/// uses libmosquitto's wording).
pub fn reason_string(code: u8) -> &'static str {
    crate::protocol::reason::reason_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_used_by_the_tools() {
        assert_eq!(connack_string(5), "Connection Refused: not authorised.");
        assert_eq!(connack_string(9), "Connection Refused: unknown reason.");
        assert_eq!(reason_string(0x87), "Not authorized");
        assert_eq!(reason_string(3), "Unknown reason");
        assert_eq!(strerror(err::CONN_REFUSED), "The connection was refused.");
        assert_eq!(strerror(err::TIMEOUT), "Unknown error.");
    }
}
