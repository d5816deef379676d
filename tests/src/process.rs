//! Ports and processes: every long-running program a test starts (the gateway, its
//! peers, the Kubernetes control plane, the operator) runs under a [`ChildGuard`],
//! and every peer that needs a port of its own gets one here.
//!
//! A [`ChildGuard`] kills its process when dropped. Fixtures kept in statics are never
//! dropped, so the guard also makes the process die with the test binary:
//!
//! - the child gets `PR_SET_PDEATHSIG` (SIGKILL), and is spawned from one thread that
//!   lives as long as the test binary (the signal follows the *thread* that forked, and
//!   libtest runs every test on a thread of its own);
//! - children still running when the test binary exits normally are killed by an
//!   `atexit` handler (this covers programs that change their user, which clears
//!   the death signal, such as `smtp-sink -u postfix`).
//!
//! Ports: the gateway binds port 0 and says which ports it got (see
//! [`crate::gateway`]). Peers that cannot do that are started with
//! [`start_on_free_port`], which picks a port with [`free_port`] and tries another when
//! the port was taken between the pick and the bind.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

/// A child process that is killed (SIGKILL, then reaped) when the guard is dropped, and
/// that dies with the test binary. Derefs to the [`Child`].
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
}

/// Spawning a [`Command`] under a [`ChildGuard`].
pub trait SpawnGuarded {
    /// Spawns the command (its settings are moved out of `self`) so that it dies with
    /// the test binary; the guard kills it when dropped.
    fn spawn_guarded(&mut self) -> io::Result<ChildGuard>;
}

impl SpawnGuarded for Command {
    fn spawn_guarded(&mut self) -> io::Result<ChildGuard> {
        let program = self.get_program().to_owned();
        let mut cmd = std::mem::replace(self, Command::new(program));
        die_with_parent(&mut cmd);
        let child = spawn_from_lasting_thread(cmd)?;
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.id());
        Ok(ChildGuard { child })
    }
}

impl ChildGuard {
    /// SIGKILL and reap (what dropping does).
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.child.id());
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Sets `PR_SET_PDEATHSIG` (SIGKILL) in the child between fork and exec.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, kill); it touches no memory of
    // the parent's that another thread could have locked.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The spawning thread lives as long as the process, but the process may
            // already be exiting: then die now rather than never.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from a thread that never ends, so that the death signal fires when the
/// test binary exits, not when the test that started a shared fixture returns.
fn spawn_from_lasting_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the child-spawner thread");
        kill_leftovers_at_exit();
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?
}

/// Process ids of the guarded children still running.
fn registry() -> &'static Mutex<HashSet<u32>> {
    static PIDS: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(HashSet::new()))
}

#[allow(unsafe_code)]
fn kill_leftovers_at_exit() {
    extern "C" fn kill_leftovers() {
        let pids = match registry().try_lock() {
            Ok(pids) => pids.clone(),
            Err(_) => return,
        };
        for pid in pids.into_iter().filter(|&pid| is_our_child(pid)) {
            // SAFETY: kill(2) of a process that is still our child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
    // SAFETY: registers a plain extern "C" function that only reads a static.
    unsafe {
        libc::atexit(kill_leftovers);
    }
}

/// Whether process `pid` is still a child of this process (a pid can be reused once a
/// child was reaped).
fn is_our_child(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().nth(1)?.parse::<u32>().ok()
        })
        == Some(std::process::id())
}

/// A TCP port on `ip` that nothing listens on right now.
///
/// Taken below Linux's ephemeral range (32768+), so an outgoing connection's source
/// port (or a listener on port 0) cannot take it between this call and the caller's
/// bind; walked from a random start so that concurrent test processes rarely collide
/// and one process never gets a port twice.
pub fn free_port(ip: IpAddr) -> Result<u16> {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU16::new((random_u64() % 12_000) as u16));
    for _ in 0..12_000 {
        let port = 20_000 + next.fetch_add(1, Ordering::Relaxed) % 12_000;
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free TCP port on {ip} in 20000..32000")
}

/// A free port on 127.0.0.1, as a socket address.
pub fn free_local_addr() -> Result<SocketAddr> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(SocketAddr::new(ip, free_port(ip)?))
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Runs `start` with addresses from `pick` until it succeeds, five times at most: a
/// port that was free when picked can be taken before the server binds it. Every
/// server that cannot say which port it bound starts through here.
pub fn retry_on_new_port<T>(
    what: &str,
    mut pick: impl FnMut() -> Result<SocketAddr>,
    mut start: impl FnMut(SocketAddr) -> Result<T>,
) -> Result<T> {
    let mut last_err = None;
    for _ in 0..5 {
        match start(pick()?) {
            Ok(started) => return Ok(started),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow!("{what} did not start")))
}

/// Starts a server on a port picked by `pick`: `spawn` starts it there and `ready`
/// waits until it serves; on failure the child is killed and another port tried
/// ([`retry_on_new_port`]).
pub fn start_on_free_port(
    what: &str,
    pick: impl FnMut() -> Result<SocketAddr>,
    mut spawn: impl FnMut(SocketAddr) -> Result<ChildGuard>,
    mut ready: impl FnMut(&mut ChildGuard, SocketAddr) -> Result<()>,
) -> Result<(ChildGuard, SocketAddr)> {
    retry_on_new_port(what, pick, |addr| {
        let mut child = spawn(addr)?;
        ready(&mut child, addr)?;
        Ok((child, addr))
    })
}

/// Waits until a server `child` started on `addr` is `serving` (polled every `poll`).
/// Fails if it exits first (with what it wrote to `logs`) or after `timeout`.
pub fn wait_serving(
    what: &str,
    child: &mut Child,
    addr: SocketAddr,
    logs: &[&Path],
    timeout: Duration,
    poll: Duration,
    mut serving: impl FnMut() -> bool,
) -> Result<()> {
    let said = || {
        logs.iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} on {addr} exited with {status}: {}", said().trim());
        }
        if serving() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} on {addr} not ready after {timeout:?}: {}",
                said().trim()
            );
        }
        std::thread::sleep(poll);
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e)
                    .with_context(|| format!("nothing listens on {addr} after {timeout:?}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_children_are_killed_on_drop() {
        let mut guard = Command::new("sleep").arg("60").spawn_guarded().unwrap();
        let pid = guard.id();
        assert!(guard.try_wait().unwrap().is_none());
        drop(guard);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
