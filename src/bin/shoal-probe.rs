//! `shoal-probe`: the container health check. An HTTP/1.1 GET of one path on a local
//! shoal's REST port, with std only (the runtime image has no curl); exit status 0 when
//! the answer is `200`, 1 otherwise, with the reason on stderr.
//!
//! ```text
//! shoal-probe [PATH] [PORT]
//! shoal-probe --tcp [PORT]
//! ```
//!
//! PATH defaults to `/readyz`; PORT to `QDRANT__SERVICE__HTTP_PORT`, else 6333. The probe
//! always calls 127.0.0.1: it checks the node of its own container, whatever
//! `service.host` is bound to (0.0.0.0 or 127.0.0.1 both answer there). It speaks plain
//! HTTP only: with `service.enable_tls` use `--tcp`, which only checks that the port
//! accepts a connection (the REST server listens once the node has started).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_PATH: &str = "/readyz";
const DEFAULT_PORT: u16 = 6333;
const TIMEOUT: Duration = Duration::from_secs(3);
/// Enough of the answer to hold its status line.
const HEAD_BYTES: usize = 512;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let tcp_only = args.next_if(|arg| arg == "--tcp").is_some();
    let path = if tcp_only {
        String::new()
    } else {
        args.next().unwrap_or_else(|| DEFAULT_PATH.to_string())
    };
    let port = match args
        .next()
        .or_else(|| std::env::var("QDRANT__SERVICE__HTTP_PORT").ok())
    {
        None => DEFAULT_PORT,
        Some(text) => match text.parse() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("shoal-probe: `{text}` is not a port number");
                return ExitCode::from(2);
            }
        },
    };
    let outcome = if tcp_only {
        connect(port).map(drop)
    } else {
        probe(port, &path)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            let what = if tcp_only { "connect to" } else { "GET" };
            eprintln!("shoal-probe: {what} http://127.0.0.1:{port}{path}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// A connection to the local port, with the probe's timeouts.
fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// One request; `Ok` only for a `200` status line.
fn probe(port: u16, path: &str) -> Result<(), String> {
    let mut stream = connect(port)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let head = read_head(&mut stream).map_err(|e| e.to_string())?;
    let status_line = head.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(_) => Err(format!("answered `{status_line}`")),
        None => Err("no HTTP status line in the answer".to_string()),
    }
}

/// Reads until the first line is complete, the peer closes, or `HEAD_BYTES` are in.
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut buf = [0u8; HEAD_BYTES];
    while head.len() < HEAD_BYTES && !head.contains(&b'\n') {
        let n = stream.read(&mut buf[..HEAD_BYTES - head.len()])?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
