//! What the real binary does with hostile clients and operator mistakes (issue 15): slow and
//! huge request headers, too many connections, a PEM file with several CA certificates,
//! revocation sources that name the wrong anchors.

use super::BIN;
use broker_testkit::{Configured, Processes, Setup};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A broker process with `extra` appended to its broker.toml (the kit's), its log in a file.
pub struct Broker {
    p: Processes,
    pub port: u16,
}

impl Broker {
    pub fn start(extra: &str) -> Broker {
        let p = Setup::new().toml(extra).process(BIN);
        Broker { port: p.port(0), p }
    }

    pub fn log(&self) -> String {
        self.p.log(0)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

/// Read until the server closes the connection (or resets it); what it sent, and how long
/// that took.
fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        assert!(
            t.elapsed() < Duration::from_secs(9),
            "the server kept the connection open"
        );
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

#[test]
fn slow_or_huge_headers_and_too_many_connections_are_cut_off() {
    let b = Broker::start(
        "[limits]\nmax_connections = 6\nheader_read_timeout = 2\nrequest_timeout = 2\nmax_header_bytes = 8192\n",
    );
    // A connection that sends nothing is closed after the header timeout.
    let mut idle = b.connect();
    let (_, took) = read_until_closed(&mut idle);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Slowloris: a header line every 300 ms never completes the request: closed at the
    // timeout, however steadily it trickles.
    let mut slow = b.connect();
    let t = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    while t.elapsed() < Duration::from_secs(4) {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, _) = read_until_closed(&mut slow);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // Headers over the bound, sent whole: 431.
    let mut big = b.connect();
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    big.write_all(header.as_bytes()).unwrap();
    let (resp, _) = read_until_closed(&mut big);
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    // A header that never ends: the connection is closed once it fills its bounded buffer,
    // long before the timeout — one such connection holds at most 16 KiB of the broker.
    let mut endless = b.connect();
    let _ = endless.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ");
    let _ = endless.write_all(&vec![b'a'; 64 * 1024]);
    let (_, took) = read_until_closed(&mut endless);
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // A body that never arrives whole (a trickle that stops, or goes on forever): 408 at the
    // request timeout, and the connection closes.
    let mut body = b.connect();
    body.write_all(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
    )
    .unwrap();
    let (resp, took) = read_until_closed(&mut body);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("request_timeout"), "{resp}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A normal request still works.
    let mut ok = b.connect();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_closed(&mut ok);
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok"),
        "{resp}"
    );

    // Six connections hold every slot: a seventh waits (in the backlog) until one closes —
    // here at the header timeout — and the log says why.
    let holders: Vec<TcpStream> = (0..6).map(|_| b.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut seventh = b.connect();
    let t = Instant::now();
    seventh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_closed(&mut seventh);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "served before a slot was free: {:?}",
        t.elapsed()
    );
    drop(holders);
    let log = b.log();
    assert!(
        log.contains("connection limit reached: new connections wait until one closes (limits.max_connections)")
            && log.contains("max_connections=6"),
        "{log}"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two self-signed CA certificates (openssl) in `dir`: a.pem, b.pem.
fn two_cas(dir: &Path) {
    for n in ["a", "b"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{n}.key"),
                "-out",
                &format!("{n}.pem"),
                "-days",
                "30",
                "-subj",
                "/C=JP/O=JPKI-TEST/OU=JPKI for user authentication",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
}

/// The kit's files for a broker trusting only the CA certificate(s) in `pem`.
fn trusting(pem: &Path) -> Configured {
    Setup::new()
        .toml(&format!(
            "demo = false\ndanger_allow_http_issuer = true\n[[trust_anchors]]\nkind = \"user_auth\"\nfile = {:?}\nlabel = \"test-auth\"\n",
            pem.display().to_string()
        ))
        .configured()
}

/// A PEM trust-anchor file with several certificates is refused at start (it was silently cut
/// to the first); `broker policy check` names revocation sources for anchors that are not
/// configured and anchors without a source.
#[test]
fn trust_anchor_files_and_revocation_sources_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    two_cas(dir.path());
    let both = format!(
        "{}{}",
        std::fs::read_to_string(dir.path().join("a.pem")).unwrap(),
        std::fs::read_to_string(dir.path().join("b.pem")).unwrap()
    );
    std::fs::write(dir.path().join("both.pem"), both).unwrap();
    let both = trusting(&dir.path().join("both.pem"));
    for cmd in [&["serve"][..], &["policy", "check"][..]] {
        let o = both.cli(BIN, cmd);
        assert!(!o.status.success(), "{cmd:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "trust anchor {}: the file holds 2 certificates; give each CA certificate its own [[trust_anchors]] entry (and label)",
                dir.path().join("both.pem").display()
            )),
            "{cmd:?}: {err}"
        );
    }
    // One certificate per file: starts. The shipped policy's sources name the demo anchors,
    // which are not configured here, and the test anchor has none: policy check says both.
    let o = trusting(&dir.path().join("a.pem")).cli(BIN, &["policy", "check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("warning: trust anchor `test-auth` has no revocation source ([[revocation.issuers]] anchor = \"test-auth\"): logins and signatures under this CA fail closed"),
        "{out}"
    );
    assert!(
        out.contains("warning: revocation sources name anchor `demo-auth-ca`, which is not a configured trust anchor (test-auth): they are never used"),
        "{out}"
    );
}
