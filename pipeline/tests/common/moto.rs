//! A real S3-compatible server for tests: the PyPI `moto` package in server mode, from the
//! project's `.venv` (`make` installs it), on 127.0.0.1 at a free port; killed on drop.
//!
//! Buckets and objects are created with plain unsigned HTTP requests (moto accepts them
//! unless it enforces authentication), so a test needs no S3 client of its own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The access key the tests sign with (moto accepts any unless told otherwise).
pub const ACCESS_KEY: &str = "AKIATESTELECTRA0001";
/// The secret the tests sign with; no error may contain it.
pub const SECRET_KEY: &str = "electra-test-secret-do-not-log-8f3a1c";

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// The port on 127.0.0.1.
    pub port: u16,
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MotoServer {
    /// Starts a server that accepts any credentials.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra environment variables (`INITIAL_NO_AUTH_ACTION_COUNT=0`
    /// makes it check credentials), and waits until it answers.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(python());
        command
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start moto from {} ({e}): run `make` to install it",
                python().display()
            )
        });
        let mut server = Self { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("moto exited with {status} before listening (is `moto[server]` installed in .venv?)");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one unsigned request with extra header lines (each ending in `\r\n`); returns
    /// the status code and the body.
    pub fn request(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let status = std::str::from_utf8(&response[9..12])
            .unwrap()
            .parse()
            .unwrap();
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        (status, response[body_at..].to_vec())
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"), "", b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Writes `bytes` as `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let (status, body) = self.request("PUT", &format!("/{bucket}/{key}"), "", bytes);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Writes `bytes` as `bucket/key`, readable by anyone over plain HTTP.
    pub fn put_public(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let acl = "x-amz-acl: public-read\r\n";
        let (status, body) = self.request("PUT", &format!("/{bucket}/{key}"), acl, bytes);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Kills the server now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The process's environment is shared: tests that point the S3 variables at their own
/// server hold this lock while they read.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

/// Points the standard AWS variables at `server` with the given credentials, for as long
/// as the returned guard lives.
pub fn use_server(server: &MotoServer, access_key: &str, secret: &str) -> MutexGuard<'static, ()> {
    let guard = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    for key in ["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ALLOW_HTTP"] {
        std::env::remove_var(key);
    }
    std::env::set_var("AWS_ENDPOINT_URL", server.endpoint());
    std::env::set_var("AWS_ACCESS_KEY_ID", access_key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
    std::env::set_var("AWS_REGION", "us-east-1");
    guard
}
