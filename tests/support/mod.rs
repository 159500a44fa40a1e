//! Test support: real shoal processes on loopback ports with their own temp dirs.
//!
//! Every wait is bounded; a node that does not come up fails the test with its log.

#![allow(dead_code)]

pub mod cluster;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a node may take to answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestNode {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub http_port: u16,
    pub grpc_port: u16,
    pub p2p_port: u16,
    extra_env: Vec<(String, String)>,
    /// Variables taken out of the node's environment, defaults included
    /// (see [`TestNode::unset_env`]).
    removed_env: Vec<String>,
    /// Command-line arguments for the next start (see [`TestNode::set_args`]).
    args: Vec<String>,
    http: reqwest::blocking::Client,
}

/// A port on 127.0.0.1 that is free now, below Linux's ephemeral range (32768 and up), so
/// that no outgoing connection (of this test or another) takes it between this check and
/// the node binding it: a port the kernel picks for `:0` is one it may also hand to the
/// next outgoing connection. Each port is handed out once per test process, from a start
/// that differs between processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "ran out of test ports");
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TestNode {
    pub fn start() -> TestNode {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> TestNode {
        let mut node = Self::unstarted(env);
        node.spawn();
        node
    }

    /// A node started with extra command-line arguments (e.g. `--snapshot PATH:NAME`).
    pub fn start_with_args(args: &[&str]) -> TestNode {
        let mut node = Self::unstarted(&[]);
        node.set_args(args);
        node.spawn();
        node
    }

    /// Dirs and ports chosen, process not started yet.
    pub fn unstarted(env: &[(&str, &str)]) -> TestNode {
        let _ = rustls::crypto::ring::default_provider().install_default();
        TestNode {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            http_port: free_port(),
            grpc_port: free_port(),
            p2p_port: free_port(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            removed_env: Vec::new(),
            args: Vec::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    /// Sets `key` for every later (re)start, over the defaults.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.removed_env.retain(|k| k != key);
        self.extra_env.retain(|(k, _)| k != key);
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    /// Leaves `key` out of the environment of every later (re)start, even one of the
    /// defaults (e.g. `QDRANT__SERVICE__GRPC_PORT`, so that a config file decides).
    pub fn unset_env(&mut self, key: &str) {
        self.extra_env.retain(|(k, _)| k != key);
        self.removed_env.push(key.to_string());
    }

    /// Arguments used by every later (re)start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Stops the node (SIGTERM) and starts it again with `args`; waits until ready.
    pub fn restart_with_args(&mut self, args: &[&str]) {
        self.stop();
        self.set_args(args);
        self.spawn();
    }

    /// Starts the node with `args` expecting it to exit by itself (within `timeout`);
    /// returns the exit code and what it wrote to stderr during this run. The node
    /// stays stopped.
    pub fn run_expecting_exit(
        &mut self,
        args: &[&str],
        timeout: Duration,
    ) -> (Option<i32>, String) {
        self.stop();
        self.set_args(args);
        let before = self.log().len();
        let mut child = self.command().spawn().expect("spawn shoal");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shoal did not exit within {timeout:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        (
            status.code(),
            log.get(before..).unwrap_or_default().to_string(),
        )
    }

    /// Starts the node in the background with `args` and returns at once (no ready
    /// wait): for tests that kill it while it starts.
    pub fn spawn_no_wait(&mut self, args: &[&str]) {
        self.stop();
        self.set_args(args);
        self.child = Some(self.command().spawn().expect("spawn shoal"));
    }

    /// Waits (bounded) until a node started with [`Self::spawn_no_wait`] is ready.
    pub fn wait_until_ready(&mut self) {
        self.wait_ready();
    }

    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A node with its ports and directory chosen but no process yet: set the
    /// arguments (which may name the ports) with [`Self::launch`].
    pub fn prepare(env: &[(&str, &str)]) -> TestNode {
        Self::unstarted(env)
    }

    /// Starts the process with `args` (kept for restarts) and waits until it is ready.
    pub fn launch(&mut self, args: &[String]) {
        self.args = args.to_vec();
        self.spawn();
    }

    /// Runs the process with `args` until it exits (bounded by `timeout`); returns whether
    /// it succeeded and its log.
    pub fn run_to_exit(&mut self, args: &[String], timeout: Duration) -> (bool, String) {
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _) = self.run_expecting_exit(&arg_refs, timeout);
        (code == Some(0), self.log())
    }

    /// Whether the process is running (started and not killed or exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    fn spawn(&mut self) {
        self.child = Some(self.command().spawn().expect("spawn shoal"));
        self.wait_ready();
    }

    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .current_dir(self.dir.path())
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__CLUSTER__P2P__PORT", self.p2p_port.to_string())
            .env(
                "QDRANT__STORAGE__STORAGE_PATH",
                self.dir.path().join("storage"),
            )
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.path().join("snapshots"),
            )
            .env("RUST_LOG", "info")
            .env_remove("QDRANT_URI")
            .env_remove("QDRANT_BOOTSTRAP")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.extra_env {
            command.env(k, v);
        }
        for k in &self.removed_env {
            command.env_remove(k);
        }
        command.args(&self.args);
        command
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("shoal exited early with {status}\n{}", self.log());
                }
            }
            if let Ok(resp) = self
                .http
                .get(self.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
            {
                if resp.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "shoal did not become ready within {START_TIMEOUT:?}\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, answers nothing (to its peers it looks cut off).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the node is running");
        let done = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(done, 0, "sending signal {signal} failed");
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{path}: request failed: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub fn raw(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("request failed");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None)
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(body))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::PATCH, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, None)
    }

    /// `result` of a call that must succeed.
    pub fn ok(&self, (status, body): (u16, Value)) -> Value {
        assert_eq!(status, 200, "unexpected answer: {body}");
        assert_eq!(body["status"], "ok", "{body}");
        assert!(body["time"].is_number(), "{body}");
        body["result"].clone()
    }

    pub fn create_collection(&self, name: &str, body: Value) {
        let result = self.ok(self.put(&format!("/collections/{name}"), &body));
        assert_eq!(result, Value::Bool(true));
    }

    /// Every point of a collection (ids as JSON text), with payload and vector.
    pub fn points(&self, name: &str) -> std::collections::BTreeMap<String, Value> {
        let mut out = std::collections::BTreeMap::new();
        let mut offset = Value::Null;
        for _ in 0..10_000 {
            let mut body =
                serde_json::json!({"limit": 1000, "with_payload": true, "with_vector": true});
            if !offset.is_null() {
                body["offset"] = offset.clone();
            }
            let page = self.ok(self.post(&format!("/collections/{name}/points/scroll"), &body));
            for point in page["points"].as_array().expect("points") {
                let id = point["id"].to_string();
                let previous = out.insert(
                    id.clone(),
                    serde_json::json!({
                        "payload": point["payload"], "vector": point["vector"]
                    }),
                );
                assert!(previous.is_none(), "scroll returned {id} twice");
            }
            offset = page["next_page_offset"].clone();
            if offset.is_null() {
                return out;
            }
        }
        panic!("scroll of {name} did not end");
    }

    /// A multipart upload of `bytes` as the form field `snapshot` (Qdrant's upload routes).
    pub fn upload(&self, path: &str, bytes: Vec<u8>) -> (u16, Value) {
        let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name("upload.snapshot");
        let form = reqwest::blocking::multipart::Form::new().part("snapshot", part);
        let resp = match self.http.post(self.url(path)).multipart(form).send() {
            Ok(resp) => resp,
            // The server may answer (and close) before the whole body is sent.
            Err(err) => return (0, Value::String(format!("upload failed: {err}"))),
        };
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The raw bytes of a GET (snapshot downloads).
    pub fn download(&self, path: &str) -> Vec<u8> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .expect("download failed");
        assert_eq!(resp.status().as_u16(), 200, "download of {path}");
        resp.bytes().expect("download body").to_vec()
    }

    pub fn count(&self, name: &str) -> u64 {
        let result = self.ok(self.post(
            &format!("/collections/{name}/points/count"),
            &serde_json::json!({"exact": true}),
        ));
        result["count"].as_u64().expect("count")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Asserts an error answer: status and a message containing `needle`.
pub fn assert_error(answer: (u16, Value), status: u16, needle: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let message = body["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(
        message.contains(needle),
        "`{message}` does not mention `{needle}`"
    );
    assert!(body["time"].is_number(), "{body}");
}

/// Deterministic pseudo-random vectors (xorshift), so failures reproduce.
pub fn vectors(count: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2000) as f32 / 1000.0 - 1.0
                })
                .collect()
        })
        .collect()
}
