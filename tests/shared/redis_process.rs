//! One real Redis (Debian's `redis-server`) for one test: on a free loopback port, with no
//! persistence and its files in a temporary directory, stopped (SIGKILL) when dropped. A
//! start takes a few milliseconds.
//!
//! Included by path by the tests that need it (`#[path = "…/tests/shared/redis_process.rs"]`).

#![allow(dead_code)] // each test binary uses what it needs

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Redis {
    pub fn start() -> Result<Redis> {
        let dir = tempfile::tempdir()?;
        // The port is free now; another process taking it before Redis does fails the start.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = spawn(port, &dir)?;
        let mut redis = Redis {
            child,
            port,
            _dir: dir,
        };
        redis.wait_listening()?;
        Ok(redis)
    }

    /// Kills Redis and starts it again on the same port, empty (it keeps nothing on disk):
    /// what clients see of a Redis restarted without persistence.
    pub fn restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn(self.port, &self._dir)?;
        self.wait_listening()
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited: {status}");
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not listen on port {} within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

fn spawn(port: u16, dir: &TempDir) -> Result<Child> {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--loglevel", "warning"])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("run redis-server (Debian package redis-server)")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
